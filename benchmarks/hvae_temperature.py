"""The hierarchical VAE's samples against the prior's temperature, with and without NVAE's batch-norm
readjustment (Vahdat & Kautz 2020, Sec. 5: training gathers the batch norms' statistics on the posterior path,
sampling runs the prior's; re-estimating them on prior batches before sampling is their cure). One `hvae` trained
MINUTES on Fashion-MNIST, then FID/KID/precision/recall of N samples at each (temperature, bn_readjust) against
the test split. Run by hand (about MINUTES + 1 minute per grid point):

    python benchmarks/hvae_temperature.py --minutes 3 --out runs/hvae_temperature --figures docs/img/hvae_temperature
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import genlab
from genlab.metrics.protocol import evaluate
from genlab.report.images import save_grid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--temperatures", default="0.6,0.7,0.8,0.9,1.0")
    ap.add_argument("--readjust", default="0,50", help="bn_readjust values (prior batches of 256)")
    ap.add_argument("--n", type=int, default=2000, help="samples for the metrics")
    ap.add_argument("--out", type=Path, default=Path("runs/hvae_temperature"))
    ap.add_argument("--figures", type=Path, default=None)
    args = ap.parse_args()
    run = args.out / "run"
    if not (run / "config.json").exists():  # a finished run is reused: the grid can be extended
        data = genlab.load_dataset("fashion-mnist")
        torch.manual_seed(0)
        genlab.train(genlab.create("hvae", data), data, minutes=args.minutes, out=run, seed=0, progress=False)
    m = genlab.load(run)
    rows = []
    for t in map(float, args.temperatures.split(",")):
        for r in map(int, args.readjust.split(",")):
            opts = {"temperature": t, "bn_readjust": r}
            res = evaluate(run, metrics=["fid", "kid", "pr"], n=args.n, sample_opts=opts, write=False)["metrics"]
            rows.append({**opts, **{k: res[k] for k in ("fid", "kid", "precision", "recall")}})
            print(json.dumps(rows[-1]), flush=True)
            (args.out / "result.json").write_text(json.dumps(rows, indent=1))
            if args.figures:
                save_grid(m.sample(64, seed=0, **opts), m.spec, args.figures / f"t{t}_bn{r}.png", nrow=8)
    print("\n| temperature | bn_readjust | FID | KID | precision | recall |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['temperature']} | {r['bn_readjust']} | {r['fid']:.1f} | {r['kid']:.3f} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} |")


if __name__ == "__main__":
    main()
