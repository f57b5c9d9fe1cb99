"""Progressive distillation on Fashion-MNIST (Salimans & Ho 2022): FID per step count, round by round, beside the
teacher's own DDIM at the same step counts (and §26's consistency distillation of the same teacher).

The teacher is a trained pixel ddpm run. The student (`progressive`, start_steps = 2 x the first student's steps)
trains `--round-steps` steps per round at batch --batch; after each round it is scored at the step count that round
reached. --n samples per row against the test split (the protocol's extractor), the same noise for every row. Run by
hand (2 CPU cores: nothing else running); results go to docs/BENCHMARKS.md.

    python benchmarks/progressive_distillation.py --teacher runs/ldm_fm/ddpm --start-steps 16 --round-steps 60 \
        --n 500 --out runs/pd_fm
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
from latent_diffusion import rounded  # benchmarks/ is on the path when run as a script

import genlab
from genlab.io import atomic_write_json
from genlab.metrics.protocol import draw_samples, evaluate_samples


def score(model, n: int, steps: int, **extra) -> dict:
    s = draw_samples(model, n, seed=0, batch_size=250, precision="fp32", sampler="ddim", steps=steps)
    m = evaluate_samples(s.x, "fashion-mnist", ["fid", "kid", "pr"])["metrics"]
    row = {**extra, "steps": steps, "nfe": s.cost.nfe, "samples_per_s": round(n / s.cost.seconds, 2), **rounded(m)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--start-steps", type=int, default=16)
    ap.add_argument("--round-steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--out", type=Path, default=Path("runs/pd_fm"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    result = {"machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
              "command": " ".join(sys.argv), "teacher_rows": [], "student_rows": []}
    teacher = genlab.load(args.teacher)
    steps = []
    k = args.start_steps
    while k >= 1:
        steps.append(k)
        k //= 2
    for st in steps:
        result["teacher_rows"].append(score(teacher, args.n, st, row="teacher"))
        atomic_write_json(args.out / "result.json", result)
    data = genlab.load_dataset("fashion-mnist")
    torch.manual_seed(0)
    student = genlab.create("progressive", data, teacher=str(args.teacher), start_steps=args.start_steps,
                            round_steps=args.round_steps)
    run = args.out / "student"
    trained = 0.0
    for r in range(len(steps) - 1):
        t0 = time.perf_counter()
        genlab.train(student, data, steps=args.round_steps * (r + 1), out=run, resume=r > 0, batch_size=args.batch,
                     progress=False, sample_every=10**9)
        trained += time.perf_counter() - t0
        student = genlab.load(run)
        n_steps = int(student.distilled_steps)
        result["student_rows"].append(score(student, args.n, n_steps, row="progressive", round=r + 1,
                                            training_minutes=round(trained / 60, 2)))
        atomic_write_json(args.out / "result.json", result)
    print(f"wrote {args.out / 'result.json'}")


if __name__ == "__main__":
    main()
