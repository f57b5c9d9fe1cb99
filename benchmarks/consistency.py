"""Consistency models on Fashion-MNIST: distillation (CD) from a trained ddpm teacher and training from scratch (CT),
each for --minutes, sampled with 1, 2 and 4 network evaluations, beside the teacher's DDIM-50 and DPM-Solver++-10.
FID/KID/precision/recall of --n samples against the test split, samples/s. Run by hand (2 CPU cores: nothing else
running); results go to docs/BENCHMARKS.md.

    genlab train ddpm --data fashion-mnist --minutes 10 --out runs/teacher     # or any trained ddpm run
    python benchmarks/consistency.py --teacher runs/teacher --minutes 8 --n 500 --out runs/cm_fm
    python benchmarks/consistency.py --teacher runs/teacher --retime 250   # the teacher's samples/s alone
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch
from latent_diffusion import rounded  # benchmarks/ is on the path when run as a script

import genlab
from genlab.metrics.protocol import draw_samples, evaluate_samples


def score(model, n: int, **opts) -> dict:
    s = draw_samples(model, n, seed=0, batch_size=250, precision="fp32", **opts)
    m = evaluate_samples(s.x, "fashion-mnist", ["fid", "kid", "pr"])["metrics"]
    row = {**opts, "nfe": s.cost.nfe, "samples_per_s": round(n / s.cost.seconds, 2), **rounded(m)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=8)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--out", type=Path, default=Path("runs/cm_fm"))
    ap.add_argument("--retime", type=int, default=0, help="only time the teacher's samplers on this many samples")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.retime:
        teacher = genlab.load(args.teacher)
        for opts in ({"sampler": "ddim", "steps": 50}, {"sampler": "dpm++", "steps": 10}):
            s = draw_samples(teacher, args.retime, seed=0, batch_size=args.retime, precision="fp32", **opts)
            print(json.dumps({**opts, "samples_per_s": round(args.retime / s.cost.seconds, 2)}))
        return
    data = genlab.load_dataset("fashion-mnist")
    rows: dict[str, list | dict] = {}
    teacher = genlab.load(args.teacher)
    rows["teacher"] = [score(teacher, args.n, sampler="ddim", steps=50),
                       score(teacher, args.n, sampler="dpm++", steps=10)]
    for name, opts in (("cd", {"teacher": str(args.teacher)}), ("ct", {})):
        out = args.out / name
        shutil.rmtree(out, ignore_errors=True)
        torch.manual_seed(0)
        model = genlab.create("consistency", data.spec, **opts)
        run = genlab.train(model, data, minutes=args.minutes, batch_size=128, out=out, progress=False,
                           precision="fp32")
        model = genlab.load(out)
        rows[name] = {"steps": run.step, "train_images_per_s": run.history[-1]["images_per_s"],
                      "samples": [score(model, args.n, steps=k) for k in (1, 2, 4)]}
    summary = {"rows": rows, "minutes": args.minutes, "n": args.n, "teacher": str(args.teacher),
               "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
