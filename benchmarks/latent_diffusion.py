"""Diffusion beyond pixels on Fashion-MNIST, at equal wall-clock budgets. Run by hand, one part at a time (2 CPU
cores: never two at once); results go to docs/BENCHMARKS.md.

    python benchmarks/latent_diffusion.py --part ldm --minutes 10 --first-minutes 3 --out runs/ldm_fm
    python benchmarks/latent_diffusion.py --part dit --minutes 10 --out runs/dit_fm

ldm: pixel `ddpm` (U-Net) for --minutes, against a VAE first stage (4 x 7 x 7 codes) for --first-minutes plus an
`ldm` on its codes for the rest of the same budget; the first stage's reconstruction FID (the ceiling of any ldm
on it) beside them.
dit: the default U-Net against a DiT sized to the same multiply-accumulates per image (counted by torch's
FlopCounterMode on one forward pass), each for --minutes.
Every row: FID, KID, precision and recall of --n samples (DDIM, 50 steps) against the test split, sampling
images/s, training images/s; all float32 on the same threads, batch 128.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import genlab
from genlab.metrics.protocol import draw_samples, evaluate_samples

DIT = {"net": "dit", "net.patch": 2, "net.dim": 128, "net.depth": 5}  # ~193M MAC per image; the U-Net ~187M
FIRST_STAGE = {"latent_channels": 4, "channels": (32, 64), "beta": 0.1}


def machine() -> dict:
    return {"threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}


def rounded(metrics: dict) -> dict:
    return {k: v if v is None else round(v, 4) for k, v in metrics.items()}


def macs(model) -> float:
    """Multiply-accumulates of one denoiser evaluation on one example."""
    x, t = torch.randn(1, *model.space.shape), torch.tensor([500])
    with FlopCounterMode(display=False) as f, torch.no_grad():
        model.net(x, t)
    return f.get_total_flops() / 2


def train(kind: str, data, minutes: float, out: Path, **opts):
    shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(0)
    model = genlab.create(kind, data.spec, **opts)
    run = genlab.train(model, data, minutes=minutes, batch_size=128, out=out, progress=False, precision="fp32")
    return model.eval(), run


def row(model, run, n: int, **extra) -> dict:
    s = draw_samples(model, n, seed=0, batch_size=250, sampler="ddim", steps=50, precision="fp32")
    m = evaluate_samples(s.x, "fashion-mnist", ["fid", "kid", "pr"])["metrics"]
    out = {"steps": run.step, "train_images_per_s": round(run.history[-1]["images_per_s"], 1),
           "wall_minutes": round(run.seconds / 60, 2), "params": sum(p.numel() for p in model.net.parameters()),
           "mac_per_image": macs(model), "sample_images_per_s": round(n / s.cost.seconds, 2),
           **rounded(m), **extra}
    print(json.dumps(out), flush=True)
    return out


def part_ldm(args, data) -> dict:
    rows = {}
    model, run = train("ddpm", data, args.minutes, args.out / "ddpm")
    rows["pixel ddpm (U-Net)"] = row(model, run, args.n)
    vae, vrun = train("vae", data, args.first_minutes, args.out / "vae", **FIRST_STAGE)
    test = genlab.load_dataset("fashion-mnist", "test")
    recon = torch.cat([vae.reconstruct(test.x[i:i + 500]) for i in range(0, args.n, 500)])[:args.n]
    rec = evaluate_samples(recon, "fashion-mnist", ["fid", "kid", "pr"])["metrics"]
    rows["first stage: VAE reconstructions of test images"] = {
        "steps": vrun.step, "wall_minutes": round(vrun.seconds / 60, 2), **rounded(rec)}
    model, run = train("ldm", data, args.minutes - vrun.seconds / 60, args.out / "ldm",
                       first_stage=str(args.out / "vae"))
    rows["ldm (DiT on 4x7x7 codes)"] = row(model, run, args.n, first_stage_minutes=round(vrun.seconds / 60, 2),
                                           scale=float(model.latent_scale))
    return rows


def part_dit(args, data) -> dict:
    rows = {}
    model, run = train("ddpm", data, args.minutes, args.out / "unet")
    rows["U-Net (default)"] = row(model, run, args.n)
    model, run = train("ddpm", data, args.minutes, args.out / "dit", **DIT)
    rows["DiT p2, 128 x 5 blocks"] = row(model, run, args.n)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("ldm", "dit"), required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--first-minutes", type=float, default=3, help="ldm: the first stage's share of the budget")
    ap.add_argument("--n", type=int, default=1000, help="samples for FID/KID/PR")
    ap.add_argument("--out", type=Path, default=Path("runs/latent_diffusion"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = genlab.load_dataset("fashion-mnist")
    rows = part_ldm(args, data) if args.part == "ldm" else part_dit(args, data)
    summary = {"part": args.part, "rows": rows, "minutes": args.minutes, "n": args.n, **machine()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.part}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
