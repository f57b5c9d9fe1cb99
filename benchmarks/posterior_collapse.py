"""Posterior collapse, measured: a VAE setting that collapses (large β), and the same setting with KL
annealing and with free bits. Reports active units (Burda et al. 2016: Cov_x(E_q[z_i]) > 0.01) and the KL of
each latent dimension on the test split, with the test ELBO (β = 1) and IWAE bound. Run by hand:

    python benchmarks/posterior_collapse.py --steps 3000 --out runs/collapse
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

import genlab
from genlab.metrics.protocol import likelihood

SETTINGS = {
    "plain, beta=1": {"beta": 1.0},
    "plain, beta=8 (collapses)": {"beta": 8.0},
    "beta=8 + KL annealing": {"beta": 8.0, "kl_warmup_steps": -1},  # -1: half the run
    "beta=8 + free bits 0.5": {"beta": 8.0, "free_bits": 0.5},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("runs/collapse"))
    args = ap.parse_args()
    train, test = genlab.load_dataset(args.data), genlab.load_dataset(args.data, "test")
    rows = []
    for name, opts in SETTINGS.items():
        opts = dict(opts)
        if opts.get("kl_warmup_steps") == -1:
            opts["kl_warmup_steps"] = args.steps // 2
        torch.manual_seed(0)
        model = genlab.create("vae", train.spec, arch="mlp", hidden=(512, 256), latent_dim=args.latent,
                              likelihood="bernoulli", **opts)
        out = args.out / name.split(" (")[0].replace(" ", "").replace(",", "_").replace("+", "_")
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        genlab.train(model, train, steps=args.steps, batch_size=128, lr=1e-3, out=out, progress=False,
                     data={"name": args.data, "opts": {}})
        model.eval()
        diag = model.diagnostics(test.x[:1000], test.y[:1000])
        nll = likelihood(model, test, k=args.k)
        kl = diag["kl_per_dim"]
        iwae = f"test_iwae_k{args.k}_nats"
        rows.append({"setting": name, **opts, "active_units": diag["active_units"], "latent_dim": args.latent,
                     "kl_total": round(sum(kl), 2), "kl_per_dim_sorted": sorted(round(v, 3) for v in kl)[::-1],
                     "dims_kl_over_0.1": sum(v > 0.1 for v in kl), "test_elbo_nats": round(nll["elbo_nats"], 2),
                     iwae: round(nll[f"iwae_k{args.k}_nats"], 2), "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "collapse.json").write_text(json.dumps(rows, indent=2))
    print("\n| setting | active units | dims with KL > 0.1 nat | total KL (nats) | test −ELBO (nats) "
          f"| test −IWAE k={args.k} |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['active_units']}/{r['latent_dim']} | {r['dims_kl_over_0.1']} | {r['kl_total']} | "
              f"{r['test_elbo_nats']} | {r[f'test_iwae_k{args.k}_nats']} |")


if __name__ == "__main__":
    main()
