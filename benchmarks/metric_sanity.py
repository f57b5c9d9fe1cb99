"""Sanity table of the evaluation protocol on Fashion-MNIST: every metric against the test split for 10,000
train images (the floor), the same train images Gaussian-blurred at three strengths and with added noise, a
single class, and pure noise. Degrading train images rather than test images keeps every row unpaired with
the reference (a blurred test image sits next to its own original and flatters precision and recall).
Each metric must rank the degradations in the expected order. Run by hand:

    python benchmarks/metric_sanity.py            # prints a markdown table for docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

import genlab
from genlab.metrics.protocol import evaluate_samples


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, kernel radius 3 sigma, edges replicated."""
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def diagnose_noise(n: int = 10_000) -> None:
    """Why k-NN precision accepts uniform noise: how tight the noise features are, and how the share of them
    inside the real manifold grows with the number of real images (more outliers, more wide balls)."""
    from genlab.metrics.features import extractor_for
    from genlab.metrics.manifold import _count_inside, knn_radii

    ext = extractor_for("fashion-mnist")
    test = genlab.load_dataset("fashion-mnist", "test")
    noise = torch.rand((n, *test.spec.shape), generator=torch.Generator().manual_seed(0)) * 2 - 1
    real, _ = ext.run(test.x)
    fake, _ = ext.run(noise)
    print(f"per-feature std: real {real.std(0).mean():.2f}, uniform noise {fake.std(0).mean():.2f}")
    for m in (1_000, 2_000, 5_000, 10_000):
        r = real[:m].double()
        radii = knn_radii(r, 3)
        inside = _count_inside(fake.double(), r, radii) > 0
        print(f"{m:>6} real images: precision of uniform noise {inside.double().mean():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--json", default="runs/metric_sanity.json")
    ap.add_argument("--diagnose-noise", action="store_true", help="only explain the uniform-noise precision")
    args = ap.parse_args()
    if args.diagnose_noise:
        diagnose_noise(args.n)
        return
    train = genlab.load_dataset("fashion-mnist")
    g = torch.Generator().manual_seed(0)
    n = args.n
    x = train.x[torch.randperm(len(train), generator=g)[:n]]
    sets = {
        "train images (floor)": x,
        "blur sigma=0.5": gaussian_blur(x, 0.5),
        "blur sigma=1": gaussian_blur(x, 1.0),
        "blur sigma=2": gaussian_blur(x, 2.0),
        "noise std=0.2": (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1),
        "one class (T-shirt/top)": train.x[train.y == 0][:n],
        "uniform noise": torch.rand(x.shape, generator=g) * 2 - 1,
    }
    rows = []
    for name, fake in sets.items():
        t0 = time.perf_counter()
        res = evaluate_samples(fake, "fashion-mnist", ["fid", "kid", "pr", "dc", "is"])
        m = res["metrics"]
        rows.append({"set": name, "n": len(fake), **{k: m[k] for k in ("fid", "kid", "precision", "recall",
                                                                          "density", "coverage", "is")},
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=2)
    print("\n| vs the test split | n | FID ↓ | KID ↓ | precision ↑ | recall ↑ | density ↑ | coverage ↑ | IS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['n']:,} | {r['fid']:.2f} | {r['kid']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} "
              f"| {r['density']:.3f} | {r['coverage']:.3f} | {r['is']:.2f} |")


if __name__ == "__main__":
    main()
