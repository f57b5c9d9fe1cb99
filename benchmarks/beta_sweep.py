"""A β sweep on `shapes` (genlab's dSprites-like grid with known factors): disentanglement against reconstruction.

For each β a `vae` (10 latent dimensions, Bernoulli decoder, as β-VAE experiments on dSprites use) trains
--steps steps on the shapes train split; the posterior means of all 6,912 grid images are scored against their
five factors (shape, scale, rotation, x, y) with the β-VAE score, the FactorVAE score, MIG and DCI
(genlab.metrics.disentanglement), beside the reconstruction error (mean BCE per image, in nats, on the test split)
and the active units (KL per dimension > 0.01 nats). PCA to 10 dimensions is the row without a model. Mean ± std
over --seeds. Run by hand (2 CPU cores: nothing else running); results go to docs/BENCHMARKS.md.

    python benchmarks/beta_sweep.py --betas 1,2,4,8,16 --seeds 2 --steps 3000 --out runs/beta_sweep.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

import genlab
from genlab.data import shapes
from genlab.io import atomic_write_json
from genlab.metrics.disentanglement import beta_vae_score, dci, factor_vae_score, mig


def scores(z: np.ndarray, f: np.ndarray) -> dict:
    d = dci(z, f)
    return {"beta_vae": beta_vae_score(z, f), "factor_vae": factor_vae_score(z, f), "mig": mig(z, f),
            "dci_disentanglement": d["disentanglement"], "dci_completeness": d["completeness"],
            "dci_informativeness": d["informativeness"]}


@torch.no_grad()
def vae_row(beta: float, seed: int, steps: int, x_all: torch.Tensor, f: np.ndarray) -> dict:
    data, test = genlab.load_dataset("shapes"), genlab.load_dataset("shapes", "test")
    torch.manual_seed(seed)
    model = genlab.create("vae", data, latent_dim=10, beta=beta, likelihood="bernoulli")
    t0 = time.perf_counter()
    with torch.enable_grad():
        genlab.train(model, data, steps=steps, out=None, batch_size=64, seed=seed, progress=False)
    secs = time.perf_counter() - t0
    model.eval()
    z = torch.cat([model.encode(x_all[i:i + 1000]) for i in range(0, len(x_all), 1000)]).numpy()
    target = (test.x + 1) / 2
    recon = (model.reconstruct(test.x) + 1) / 2
    bce = F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target, reduction="none").flatten(1).sum(1).mean()
    mu, logvar = model.posterior(target, None)
    kl = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).mean(0)
    return {"beta": beta, "seed": seed, "train_s": round(secs, 1), "recon_bce": round(float(bce), 2),
            "active_units": int((kl > 0.01).sum()), **{k: round(v, 4) for k, v in scores(z, f).items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--betas", default="1,2,4,8,16")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=Path("runs/beta_sweep.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    images, f = shapes.grid()
    spec = genlab.load_dataset("shapes").spec
    x_all = spec.to_model(images)
    result = {"machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
              "command": " ".join(sys.argv), "rows": []}
    pca = PCA(10, random_state=0).fit_transform(x_all.flatten(1).numpy())
    result["rows"].append({"beta": "PCA-10", **{k: round(v, 4) for k, v in scores(pca, f).items()}})
    print(json.dumps(result["rows"][-1]), flush=True)
    for seed in range(args.seeds):
        for beta in (float(b) for b in args.betas.split(",")):
            result["rows"].append(vae_row(beta, seed, args.steps, x_all, f))
            print(json.dumps(result["rows"][-1]), flush=True)
            atomic_write_json(args.out, result)
    keys = ["beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness",
            "recon_bce", "active_units"]
    print("\n| β | " + " | ".join(keys) + " |\n|---" * (len(keys) + 1) + "|")
    for beta in dict.fromkeys(r["beta"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["beta"] == beta]
        cell = lambda k, rows=rows: (f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows]):.3f}"
                                     if k in rows[0] else "–")
        print(f"| {beta} | " + " | ".join(cell(k) for k in keys) + " |")


if __name__ == "__main__":
    main()
