"""FID speed, side by side in one run: genlab's evaluation vs torchmetrics' FrechetInceptionDistance with the
same feature extractor (the shipped Fashion-MNIST classifier) on the same 10,000 generated and 10,000 test
images, alternating, 3 rounds. genlab is timed cold (reference features computed) and warm (cached, its normal
second-eval case). Also times `genlab eval` end to end on a run (sampling + features + every metric).

    python benchmarks/eval_speed.py --run runs/bench-vae-fmnist
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from torch import nn

import genlab
from genlab.metrics.features import extractor_for
from genlab.metrics.protocol import draw_samples, evaluate, evaluate_samples


class ForTorchmetrics(nn.Module):
    """genlab's extractor body as a torchmetrics custom feature network."""

    num_features = 128

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.body(x.contiguous(memory_format=torch.channels_last))


def torchmetrics_fid(real: torch.Tensor, fake: torch.Tensor, net: nn.Module, batch: int = 1000) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=ForTorchmetrics(net))
    for i in range(0, len(real), batch):
        fid.update(real[i:i + batch], real=True)
    for i in range(0, len(fake), batch):
        fid.update(fake[i:i + batch], real=False)
    return float(fid.compute())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    model = genlab.load(args.run).to(memory_format=torch.channels_last)
    fake = draw_samples(model, 10_000, seed=0).x
    real = genlab.load_dataset("fashion-mnist", "test").x
    net = extractor_for("fashion-mnist").net
    times = {"genlab cold": [], "genlab warm": [], "torchmetrics": []}
    values = {}
    with torch.no_grad():
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as cache:
                os.environ["GENLAB_CACHE"] = cache
                for label in ("genlab cold", "genlab warm"):
                    t0 = time.perf_counter()
                    values[label] = evaluate_samples(fake, "fashion-mnist", ["fid"])["metrics"]["fid"]
                    times[label].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            values["torchmetrics"] = torchmetrics_fid(real, fake, net)
            times["torchmetrics"].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("| FID of 10,000 samples vs the 10,000 test images | median seconds | FID | ratio vs torchmetrics |")
    print("|---|---|---|---|")
    for k in times:
        print(f"| {k} | {med[k]:.2f} | {values[k]:.4f} | {med['torchmetrics'] / med[k]:.2f}x |")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GENLAB_CACHE"] = cache
        t0 = time.perf_counter()
        res = evaluate(args.run, n=10_000, metrics=["fid", "kid", "pr", "dc", "is"], write=False)
        print(f"\ngenlab eval end to end (10,000 samples drawn, features, FID, KID, P/R, D/C, IS; cold cache): "
              f"{time.perf_counter() - t0:.1f} s, sampling {res['sampling']['samples_per_s']} samples/s")


if __name__ == "__main__":
    main()
