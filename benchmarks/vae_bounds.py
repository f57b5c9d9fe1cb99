"""Richer VAEs against the plain one, on Fashion-MNIST at an equal wall-clock budget: the notes' "Flow + VAE" (a flow
posterior, a learned flow prior, both) and a hierarchical VAE (`hvae`), each beside the same `vae` with a diagonal
Gaussian posterior and an N(0, I) prior. Reported: the test IWAE bound (bits/dim), the ELBO split into KL and
reconstruction, and the samples' FID/KID/precision/recall. Run by hand (about 5 x MINUTES + 8 minutes):

    python benchmarks/vae_bounds.py --minutes 5 --out runs/vae_bounds --figures docs/img/vae_bounds
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

import genlab
from genlab.metrics.protocol import evaluate
from genlab.report.images import save_grid

SETTINGS = {
    "vae": ("vae", {}),
    "vae, flow posterior": ("vae", {"posterior": "flow"}),
    "vae, flow prior": ("vae", {"prior": "flow"}),
    "vae, flow posterior + flow prior": ("vae", {"posterior": "flow", "prior": "flow"}),
    "hvae (2 scales x 2 groups)": ("hvae", {}),
}


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-").replace("--", "-")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    ap.add_argument("--latent", type=int, default=32, help="latent_dim of the vae rows")
    ap.add_argument("--n", type=int, default=2000, help="test images for the bound, and samples for FID")
    ap.add_argument("--k", type=int, default=100, help="importance samples of the IWAE bound")
    ap.add_argument("--out", type=Path, default=Path("runs/vae_bounds"))
    ap.add_argument("--figures", type=Path, default=None)
    args = ap.parse_args()
    data = genlab.load_dataset("fashion-mnist")
    test = genlab.load_dataset("fashion-mnist", "test").x[: args.n]
    bpd = 1 / (data.spec.dims * math.log(2))
    rows = []
    for name in args.settings:
        kind, opts = SETTINGS[name]
        run = args.out / slug(name)
        torch.manual_seed(0)
        model = genlab.create(kind, data, **({"latent_dim": args.latent} if kind == "vae" else {}), **opts)
        genlab.train(model, data, minutes=args.minutes, out=run, seed=0, progress=False)
        m = genlab.load(run)
        torch.manual_seed(0)
        with torch.no_grad():  # the ELBO's two terms on the test images (nats per image), from the loss's own logs
            logs = m(test, torch.zeros(len(test), dtype=torch.long), step=10**9)[1]
        nelbo, kl = float(logs["nelbo"]), float(logs["kl"])
        res = evaluate(run, metrics=["nll", "fid", "kid", "pr"], n=args.n, k=args.k)["metrics"]
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        row = {"model": name, "steps": history[-1]["step"], "params": sum(p.numel() for p in m.parameters()),
               "iwae_bpd": res["nll"][f"iwae_k{args.k}_bpd"], "elbo_bpd": round(nelbo * bpd, 4),
               "kl_nats": round(kl, 1), "recon_nats": round(nelbo - kl, 1),
               **{k: res[k] for k in ("fid", "kid", "precision", "recall")}}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.figures:
            save_grid(m.sample(64, seed=0), m.spec, args.figures / f"{run.name}.png", nrow=8)
        (args.out / "result.json").write_text(json.dumps(rows, indent=1))
    print("\n| model | steps | parameters | test IWAE bound (bits/dim) | -ELBO (bits/dim) | KL (nats) | "
          "reconstruction (nats) | FID | KID | precision | recall |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['steps']} | {r['params']:,} | {r['iwae_bpd']:.4f} | {r['elbo_bpd']:.4f} | "
              f"{r['kl_nats']:.1f} | {r['recon_nats']:.1f} | {r['fid']:.1f} | {r['kid']:.3f} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} |")


if __name__ == "__main__":
    main()
