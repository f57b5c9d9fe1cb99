"""genlab's `glow` beside normflows' Glow (the usual reference implementation; installed for this benchmark only:
pip install normflows) on Fashion-MNIST: the same multi-scale architecture (2 levels of 8 steps: ActNorm,
LU-parameterised 1x1 convolution, channel affine coupling; half the channels factored out between levels; a
standard normal base), sized to the same parameter count, trained for the same wall-clock minutes at batch 128,
Adam lr 1e-3 with 200 warm-up steps and gradient clipping at 1, float32, on the same 2 threads. Reported: training
images/s and the test bits/dim of the uniformly dequantised images (the first --n-test test images), and their
ratios. Differences that remain: normflows' coupling network has a 1x1 conv between its two 3x3 convs (its hidden
width is set so the totals match), a sigmoid scale where genlab uses exp(tanh), and no logit preprocessing.

    python benchmarks/glow_vs_normflows.py --minutes 5 --out runs/glow_vs_normflows
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

import genlab
from genlab.data.dataset import dequantize
from genlab.metrics.protocol import likelihood


def normflows_glow(hidden: int, levels: int = 2, steps: int = 8, shape=(1, 28, 28)):
    """normflows' multi-scale Glow as in its examples (glow.ipynb), unconditional, fixed standard normal bases."""
    import normflows as nf

    C, H, W = shape
    q0, flows, merges = [], [], []
    for i in range(levels):  # i = 0 is the deepest level (normflows lists levels from the latent side)
        flows.append([nf.flows.GlowBlock(C * 2 ** (levels + 1 - i), hidden, split_mode="channel", scale=True)
                      for _ in range(steps)] + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (C * 2 ** (levels - i), H // 2 ** (levels - i), W // 2 ** (levels - i))
        else:
            latent = (C * 2 ** (levels + 1), H // 2 ** levels, W // 2 ** levels)
        q0.append(nf.distributions.DiagGaussian(latent, trainable=False))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


def params(m) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """genlab images in [-1, 1] (256 levels) -> uniformly dequantised values in [0, 1) minus 0.5 (Glow's input)."""
    return (dequantize(x, 256) + 1) / 2 - 0.5


def train_normflows(model, data, minutes: float, batch: int = 128, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 200))
    step, seen, t0 = 0, 0, time.perf_counter()
    model.train()
    while time.perf_counter() - t0 < minutes * 60:
        idx = torch.randint(0, len(data), (batch,), generator=g)
        loss = model.forward_kld(to_unit(data.x[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step, seen = step + 1, seen + batch
    return {"steps": step, "images_per_s": seen / (time.perf_counter() - t0)}


@torch.no_grad()
def normflows_bpd(model, x: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    D = x[0].numel()
    total = sum(float(model.log_prob(to_unit(x[i:i + batch]), None).double().sum()) for i in range(0, len(x), batch))
    return -total / len(x) / (D * math.log(2)) + 8  # density on [0, 1)^D -> 256 bins per unit: + log2(256)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=Path("runs/glow_vs_normflows"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    train_set, test = genlab.load_dataset("fashion-mnist"), genlab.load_dataset("fashion-mnist", "test")
    torch.manual_seed(0)
    ours = genlab.create("glow", train_set.spec)
    target = params(ours)
    hidden = min(range(16, 257), key=lambda h: abs(params(normflows_glow(h)) - target))
    torch.manual_seed(0)
    peer = normflows_glow(hidden)
    rows = {}
    run = genlab.train(ours, train_set, minutes=args.minutes, batch_size=128, lr=1e-3, warmup_steps=200,
                       out=args.out / "genlab", overwrite=True, progress=False, precision="fp32")
    nll = likelihood(ours.eval(), test, n=args.n_test)
    rows["genlab glow"] = {"params": target, "steps": run.step, "images_per_s": run.history[-1]["images_per_s"],
                           "bpd": nll["nll_bpd"]}
    print(json.dumps(rows["genlab glow"]))
    stats = train_normflows(peer, train_set, args.minutes)
    print(json.dumps(stats))
    rows[f"normflows Glow (hidden {hidden})"] = {"params": params(peer), **stats,
                                                 "bpd": normflows_bpd(peer, test.x[:args.n_test])}
    print(json.dumps(rows))
    a, b = rows["genlab glow"], list(rows.values())[1]
    summary = {"rows": rows, "throughput_ratio": a["images_per_s"] / b["images_per_s"],
               "bpd_ratio": b["bpd"] / a["bpd"], "minutes": args.minutes, "n_test": args.n_test,
               "threads": torch.get_num_threads(),
               "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
