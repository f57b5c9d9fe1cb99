"""Where a Glow training step spends its time, and what the channels-last layout changes (docs/BENCHMARKS.md §23):
the coupling networks' convolutions alone (forward + backward, batch 128, at each level's shape), in the standard
and the channels-last layout, for genlab's coupling (3x3 -> 3x3, 128 channels) and normflows' (3x3 -> 1x1 -> 3x3,
69 channels); then one whole training step of genlab's glow in each layout (median of 5 x 10 steps).

    python benchmarks/glow_step_profile.py
"""

from __future__ import annotations

import statistics
import time

import torch

import genlab

CONVS = {  # (c_in, c_out, kernel, side) of one coupling network at the first level (14 x 14) of each
    "genlab (128 ch, 3x3 -> 3x3)": [(2, 128, 3, 14), (128, 4, 3, 14)],
    "normflows (69 ch, 3x3 -> 1x1 -> 3x3)": [(2, 69, 3, 14), (69, 69, 1, 14), (69, 4, 3, 14)],
}


def conv_ms(cin, cout, k, side, channels_last, n=20) -> float:
    conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2)
    x = torch.randn(128, cin, side, side)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    times = []
    for i in range(n + 3):
        t = time.perf_counter()
        conv(x).sum().backward()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def step_ms(channels_last: bool) -> float:
    data = genlab.load_dataset("fashion-mnist")
    torch.manual_seed(0)
    model = genlab.create("glow", data.spec)
    x = data.x[:128]
    model.on_fit_start(x, None)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step():
        loss, _ = model(x, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            step()
        runs.append((time.perf_counter() - t) / 10)
    return 1000 * statistics.median(runs)


def main() -> None:
    torch.set_num_threads(2)
    for name, convs in CONVS.items():
        for cl in (False, True):
            ms = sum(conv_ms(*c, channels_last=cl) for c in convs)
            print(f"{name}, {'channels-last' if cl else 'standard'}: {ms:.1f} ms per coupling network")
    for cl in (False, True):
        print(f"genlab glow training step, {'channels-last' if cl else 'standard'}: {step_ms(cl):.0f} ms")


if __name__ == "__main__":
    main()
