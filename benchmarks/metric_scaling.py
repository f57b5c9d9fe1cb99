"""Time and peak memory of precision/recall + density/coverage as n grows (n real vs n fake feature vectors,
128-d like the protocol's extractors), genlab's blocked distances beside the row-chunked form they replaced
(2048 rows against all columns at once). Each (n, implementation) runs in a fresh process, so its peak
resident memory is its own; the fitted growth exponent is the slope of log(time) against log(n).

    python benchmarks/metric_scaling.py --sizes 5000,10000,20000,50000
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import numpy as np


def rows_impl(real, fake):
    """The form before: 2048 rows against every column at once (memory grows with n)."""
    import torch

    def over(a, b, fn):
        return torch.cat([fn(torch.cdist(a[i:i + 2048], b)) for i in range(0, len(a), 2048)])

    def radii(x, k):
        return over(x, x, lambda d: d.topk(k + 1, dim=1, largest=False).values[:, k])

    def inside(p, c, r):
        return over(p, c, lambda d: (d <= r[None]).sum(1))

    r3, f3, r5 = radii(real, 3), radii(fake, 3), radii(real, 5)
    p = float((inside(fake, real, r3) > 0).double().mean())
    rc = float((inside(real, fake, f3) > 0).double().mean())
    d = float(inside(fake, real, r5).double().sum() / (5 * len(fake)))
    c = float((over(real, fake, lambda dd: dd.min(1).values) <= r5).double().mean())
    return p, rc, d, c


def one(n: int, impl: str, dims: int = 128) -> dict:
    import torch

    from genlab.metrics.manifold import density_coverage, precision_recall

    g = np.random.default_rng(0)
    real = torch.as_tensor(g.standard_normal((n, dims)))
    fake = torch.as_tensor(0.1 + 0.9 * g.standard_normal((n, dims)))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if impl == "blocked":
        values = (*precision_recall(real, fake, k=3), *density_coverage(real, fake, k=5))
    else:
        values = rows_impl(real, fake)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"n": n, "impl": impl, "seconds": seconds, "peak_mib": peak / 1024, "extra_mib": (peak - base) / 1024,
            "values": values}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000,10000,20000,50000")
    ap.add_argument("--impls", default="blocked,rows")
    ap.add_argument("--one", nargs=2, metavar=("N", "IMPL"))
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1])))
        return
    rows = []
    for n in map(int, args.sizes.split(",")):
        for impl in args.impls.split(","):
            out = subprocess.run([sys.executable, __file__, "--one", str(n), impl], capture_output=True, text=True,
                                 check=True)
            r = json.loads(out.stdout)
            rows.append(r)
            print(f"n={n:6d} {impl:8s} {r['seconds']:8.1f} s  peak {r['peak_mib']:7.0f} MiB (+{r['extra_mib']:.0f} "
                  f"for the metrics)  P/R/D/C {', '.join(f'{v:.4f}' for v in r['values'])}", flush=True)
    for impl in args.impls.split(","):
        pts = [(r["n"], r["seconds"]) for r in rows if r["impl"] == impl]
        if len(pts) > 1:
            slope = np.polyfit([math.log(n) for n, _ in pts], [math.log(s) for _, s in pts], 1)[0]
            print(f"{impl}: time grows as n^{slope:.2f}")
    for n in sorted({r["n"] for r in rows}):
        same = {tuple(r["values"]) for r in rows if r["n"] == n}
        print(f"n={n}: the implementations agree exactly: {len(same) == 1}")


if __name__ == "__main__":
    main()
