"""Conv VAE on the full Fashion-MNIST train split: test-split negative ELBO and IWAE bound in bits/dim,
reconstructions, samples and a latent traversal. Run by hand; results go to docs/BENCHMARKS.md.

    python benchmarks/vae_fashion_mnist.py --epochs 6 --out runs/bench-vae-fmnist
    python benchmarks/vae_fashion_mnist.py --epochs 6 --out runs/bench-vae-fmnist-pixel \
        --set sigma_mode=pixel --set beta_nll=0.5
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

import genlab
from genlab.config import parse_overrides
from genlab.metrics.protocol import evaluate
from genlab.report.figures import model_figures
from genlab.report.html import write_report
from genlab.report.images import save_grid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=float, default=6)
    ap.add_argument("--k", type=int, default=100, help="importance samples of the IWAE bound")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-vae-fmnist"))
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--img", type=Path, default=Path("docs/img"))
    args = ap.parse_args()
    cfg = {"latent_dim": 32, "channels": (32, 64), **parse_overrides(args.sets)}
    data = genlab.load_dataset("fashion-mnist")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, **cfg)
    if args.out.exists():
        shutil.rmtree(args.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"vae on fashion-mnist ({len(data)} train images), {params:,} parameters, config {cfg}")
    t0 = time.perf_counter()
    run = genlab.train(model, data, epochs=args.epochs, batch_size=128, lr=2e-3, out=args.out,
                       data={"name": "fashion-mnist", "opts": {}})
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = evaluate(args.out, k=args.k)["metrics"]["nll"]
    eval_s = time.perf_counter() - t0
    model_figures(args.out)
    write_report(args.out)
    tag = args.out.name
    args.img.mkdir(parents=True, exist_ok=True)
    for f in ("reconstructions", "traversal"):
        shutil.copyfile(args.out / "figures" / f"{f}.png", args.img / f"{tag}-{f}.png")
    save_grid(genlab.load(args.out).sample(64, seed=0), data.spec, args.img / f"{tag}-samples.png")
    summary = {"config": cfg, "params": params, "epochs": args.epochs, "steps": run.step,
               "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1),
               "images_per_s": run.history[-1]["images_per_s"], "active_units": run.history[-1].get("active_units"),
               "test": res, "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    (args.out / "benchmark.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
