"""Diffusion on Fashion-MNIST: one trained model sampled with every sampler at several step counts (FID,
precision, recall, samples/s, network evaluations per sample), and a class-conditional model sampled at
several classifier-free guidance weights (classifier accuracy, FID). All rows of a table use the same n and
the same seed. Run by hand:

    python benchmarks/diffusion_fashion.py samplers --run runs/ddpm-fashion --n 128
    python benchmarks/diffusion_fashion.py samplers --run runs/ddpm-fashion --n 2000 --rows ddim:10,plms:10
    python benchmarks/diffusion_fashion.py guidance --run runs/ddpm-fashion-cond --n 1000
(train the runs first, e.g. genlab train ddpm --data fashion-mnist --minutes 15 --out runs/ddpm-fashion)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import genlab
from genlab.metrics.protocol import draw_samples, evaluate_samples
from genlab.report.images import save_grid

SAMPLER_ROWS = (("ddpm", 1000), ("ddim", 100), ("ddim", 50), ("ddim", 20), ("ddim", 10), ("dpm++", 20),
                ("dpm++", 10), ("plms", 20), ("plms", 10))
GUIDANCE = (0.0, 1.0, 2.0, 4.0, 8.0)


def sample_rows(model, n: int, seed: int, rows, figures: Path | None, tag: str, **fixed):
    out = []
    for opts in rows:
        s = draw_samples(model, n, seed=seed, batch_size=250, **opts, **fixed)
        x, labels, secs = s.x, s.labels, s.cost.seconds
        metrics = ["fid", "kid", "pr"] + (["cls_acc"] if labels is not None else [])
        res = evaluate_samples(x, model.spec.name, metrics, labels=labels)["metrics"]
        row = {**opts, "n": n, "samples_per_s": round(n / secs, 2), "nfe_per_sample": s.cost.nfe,
               **{k: round(v, 4) for k, v in res.items()}}
        out.append(row)
        print(json.dumps(row), flush=True)
        if figures:
            name = "_".join(f"{v}" for v in opts.values())
            save_grid(x[:40], model.spec, figures / f"{tag}_{name}.png", nrow=10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("table", choices=["samplers", "guidance"])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guidance-sampler", default="dpm++:20")
    ap.add_argument("--figures", type=Path, default=None)
    ap.add_argument("--rows", default=None, help='samplers: "sampler:steps,..." (default: every row of the table)')
    args = ap.parse_args()
    sampler_rows = SAMPLER_ROWS
    if args.rows:
        sampler_rows = [(r.split(":")[0], int(r.split(":")[1])) for r in args.rows.split(",")]
    torch.manual_seed(0)
    model = genlab.load(args.run)
    model.to(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    if args.table == "samplers":
        rows = sample_rows(model, args.n, args.seed, [{"sampler": s, "steps": k} for s, k in sampler_rows],
                           args.figures, "sampler")
    else:
        s, k = args.guidance_sampler.split(":")
        rows = sample_rows(model, args.n, args.seed, [{"guidance": w} for w in GUIDANCE], args.figures, "guidance",
                           sampler=s, steps=int(k))
    (args.run / f"bench_{args.table}.json").write_text(json.dumps(rows, indent=1))
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
