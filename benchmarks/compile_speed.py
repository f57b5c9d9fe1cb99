"""Does torch.compile pay for a training step on this machine, counting its compile time?

genlab's Trainer step for the U-Net ddpm on Fashion-MNIST (batch 128), eager against `torch.compile` of the model
(its forward and loss; backward through AOTAutograd), in the precision `auto` picks: the compile time (the first
three compiled steps beyond three steady ones), then steady-state images/s of each, alternating. The break-even
is the number of steps after which the compiled run has caught up: compile time / (eager step - compiled step).

    python benchmarks/compile_speed.py --precision auto --out runs/compile_speed.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import genlab
from genlab.precision import resolve
from genlab.training.trainer import TrainConfig, Trainer


def trainer(data, precision: str, batch: int) -> Trainer:
    torch.manual_seed(0)
    model = genlab.create("ddpm", data.spec)
    cfg = TrainConfig(steps=10**6, batch_size=batch, precision=precision, progress=False,
                      **{k: v for k, v in model.train_defaults().items() if k != "batch_size"})
    return Trainer(model, data, cfg, None, {"name": data.spec.name}, resume=False)


def step_seconds(tr: Trainer, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        tr.train_step()
        tr.step += 1
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/compile_speed.json"))
    args = ap.parse_args()
    data = genlab.load_dataset("fashion-mnist")
    precision = resolve(args.precision, "cpu")[0]
    eager, compiled = trainer(data, precision, args.batch), trainer(data, precision, args.batch)
    compiled.net = torch.compile(compiled.model)
    first = 3 * step_seconds(compiled, 3)  # the compiles: the first step, and again once `step` turns dynamic
    step_seconds(eager, 2)  # warm-up
    rounds = [(step_seconds(eager, args.steps), step_seconds(compiled, args.steps)) for _ in range(args.rounds)]
    e = sorted(r[0] for r in rounds)[len(rounds) // 2]
    c = sorted(r[1] for r in rounds)[len(rounds) // 2]
    compile_s = first - 3 * c  # the first three steps beyond what three steady steps take
    gain = e - c
    result = {"precision": precision, "batch": args.batch, "compile_seconds": round(compile_s, 1),
              "eager_images_s": round(args.batch / e, 1), "compiled_images_s": round(args.batch / c, 1),
              "speedup": round(e / c, 3), "break_even_steps": round(compile_s / gain) if gain > 0 else None,
              "rounds_seconds_per_step": rounds, "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rounds_seconds_per_step"}, indent=2))


if __name__ == "__main__":
    main()
