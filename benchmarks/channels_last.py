"""Training throughput with and without channels-last memory layout, alternating in one run: the conv VAE
(default) or the default ddpm U-Net.

    python benchmarks/channels_last.py [--kind ddpm]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import genlab

MODELS = {"vae": {"channels": (32, 64), "latent_dim": 32}, "ddpm": {}}


def images_per_s(kind: str, channels_last: bool, x: torch.Tensor, steps: int = 30) -> float:
    torch.manual_seed(0)
    model = genlab.create(kind, genlab.load_dataset("mnist5k").spec, **MODELS[kind])
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.zeros(len(x), dtype=torch.long)
    for i in range(steps + 5):
        if i == 5:
            t0 = time.perf_counter()
        loss, _ = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * len(x) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=list(MODELS), default="vae")
    args = ap.parse_args()
    x = genlab.load_dataset("mnist5k").x[:128]
    steps = 30 if args.kind == "vae" else 8
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(3):
        for cl in (False, True):
            rates[cl].append(images_per_s(args.kind, cl, x, steps))
    a, b = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"{args.kind} ({MODELS[args.kind] or 'defaults'}) on 28x28, batch 128, {torch.get_num_threads()} threads: "
          f"contiguous {a:.0f} img/s, channels-last {b:.0f} img/s, ratio {b / a:.2f}x")


if __name__ == "__main__":
    main()
