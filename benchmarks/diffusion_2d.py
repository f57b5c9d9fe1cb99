"""Diffusion on 2-D mixtures, the VEEGAN/PacGAN protocol: kind `ddpm` with the MLP denoiser, 2,500 samples
per seed from the `ddpm` sampler (T = 1000 steps) and from `dpm++` (20 steps), modes captured and % high
quality (within 3 std). Run by hand:

    python benchmarks/diffusion_2d.py --data gaussians25 --seeds 5 --steps 8000 --out runs/diffusion_2d
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

import genlab
from genlab.metrics.scores import mode_metrics
from genlab.report.images import save_scatter

SAMPLERS = (("ddpm", 1000), ("dpm++", 20))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="gaussians25")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--out", type=Path, default=Path("runs/diffusion_2d"))
    ap.add_argument("--figure", type=Path, default=None, help="scatter of seed 0's ddpm samples")
    ap.add_argument("--opts", type=json.loads, default={}, help='model options as JSON, e.g. \'{"fourier": 0}\'')
    args = ap.parse_args()
    data = genlab.load_dataset(args.data)
    rows = []
    for seed in range(args.seeds):
        run = args.out / f"{args.data}-seed{seed}"
        shutil.rmtree(run, ignore_errors=True)
        torch.manual_seed(seed)
        model = genlab.create("ddpm", data, **args.opts)
        t0 = time.perf_counter()
        genlab.train(model, data, steps=args.steps, out=run, batch_size=256, seed=seed, progress=False)
        train_s = time.perf_counter() - t0
        model = genlab.load(run)
        for sampler, steps in SAMPLERS:
            t0 = time.perf_counter()
            x = model.sample(args.n, seed=1000 + seed, sampler=sampler, steps=steps)
            secs = time.perf_counter() - t0
            orig = torch.as_tensor(model.spec.to_original(x))
            axis, eucl = (mode_metrics(orig, args.data, criterion=c) for c in ("axis", "euclidean"))
            rows.append({"seed": seed, "sampler": f"{sampler} {steps}", "modes": axis["modes"],
                         "total_modes": axis["total_modes"], "high_quality": axis["high_quality"],
                         "high_quality_euclidean": eucl["high_quality"], "train_s": round(train_s, 1),
                         "samples_per_s": round(args.n / secs, 1)})
            print(json.dumps(rows[-1]), flush=True)
            if seed == 0 and sampler == "ddpm" and args.figure:
                save_scatter(x, model.spec, args.figure, reference=data.x[: args.n],
                             title=f"ddpm on {args.data}, seed 0")
    (args.out / f"{args.data}.json").write_text(json.dumps(rows, indent=1))
    print("\n| sampler | seed | modes | high quality (axis 3σ) | high quality (radius 3σ) |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler']} | {r['seed']} | {r['modes']}/{r['total_modes']} | {100 * r['high_quality']:.1f}% "
              f"| {100 * r['high_quality_euclidean']:.1f}% |")


if __name__ == "__main__":
    main()
