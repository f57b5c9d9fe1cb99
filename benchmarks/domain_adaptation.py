"""Domain-adversarial adaptation (DANN) beside source-only training, same network, seeds and budget.

Shifts, both offline:
- mnist5k -> digits: MNIST's 5,000 images as the labelled source; scikit-learn's 8x8 digits (a different set
  of writers, 17 grey levels), upsampled to 28x28, as the unlabelled target; accuracy on both test splits
  (`genlab adapt mnist5k digits` runs one seed of it);
- two moons -> the same rotated 35 degrees (Ganin et al. 2016's toy, Fig. 2), 600 rows each side.
Mean and std over --seeds. Run by hand (2 CPU cores: nothing else running); results go to docs/BENCHMARKS.md.

    python benchmarks/domain_adaptation.py --seeds 3 --steps 1500 --out runs/domain_adaptation.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_moons

from genlab.apps.domain import DomainAdversarialClassifier, adapt_datasets
from genlab.io import atomic_write_json


def moons(rotation_deg: float, n: int, seed: int):
    x, y = make_moons(n, noise=0.1, random_state=seed)
    a = math.radians(rotation_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (x - x.mean(0)) @ rot.T, y


def moons_row(adapt: float, seed: int, steps: int) -> dict:
    xs, ys = moons(0, 600, 0)
    xt, _ = moons(35, 600, 1)
    xq, yq = moons(35, 1000, 2)
    clf = DomainAdversarialClassifier(adapt=adapt, ramp=500, hidden=64, steps=steps, random_state=seed)
    clf.fit(xs, ys, X_target=xt)
    return {"source_acc": clf.score(xs, ys), "target_acc": clf.score(xq, yq)}


def summary(runs: list[dict], name: str, key: str) -> str:
    v = [r[name][key] for r in runs]
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--out", type=Path, default=Path("runs/domain_adaptation.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    result = {"machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
              "command": " ".join(sys.argv), "steps": args.steps, "mnist5k->digits": [], "moons->rotated": []}
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        r = adapt_datasets("mnist5k", "digits", steps=args.steps, random_state=seed)
        r["seconds"] = round(time.perf_counter() - t0, 1)
        result["mnist5k->digits"].append(r)
        print(json.dumps({k: r[k] for k in ("source-only", "dann", "seconds")}), flush=True)
        result["moons->rotated"].append({name: moons_row(top, seed, 1500) for name, top in
                                         (("source-only", 0.0), ("dann", 1.0))})
        print(json.dumps(result["moons->rotated"][-1]), flush=True)
        atomic_write_json(args.out, result)
    print("\n| shift | training | source test accuracy | target test accuracy |\n|---|---|---|---|")
    for shift in ("mnist5k->digits", "moons->rotated"):
        for name in ("source-only", "dann"):
            runs = result[shift]
            print(f"| {shift} | {name} | {summary(runs, name, 'source_acc')} | {summary(runs, name, 'target_acc')} |")


if __name__ == "__main__":
    main()
