"""Exact likelihoods on Fashion-MNIST, one table: realnvp, glow, pixelcnn, gated-pixelcnn, the VAE's IWAE bound and
the ddpm's variational bound, each trained for the same wall-clock minutes, with parameters, training throughput,
test bits/dim and sampling seconds per image; PixelCNN's cached against naive sampling; PixelCNN on binarised
mnist5k in nats. Run by hand, one part at a time (2 CPU cores: never two at once); results go to
docs/BENCHMARKS.md.

    python benchmarks/likelihood_fashion.py --part table --minutes 5 --out runs/lik_fm
    python benchmarks/likelihood_fashion.py --part bound-terms --out runs/lik_fm   # after the table part
    python benchmarks/likelihood_fashion.py --part sampling --out runs/lik_fm
    python benchmarks/likelihood_fashion.py --part binarised --minutes 10 --out runs/lik_bin
    python benchmarks/likelihood_fashion.py --part vq --minutes 5 --out runs/lik_fm

The vq part trains a vqvae, then a vq-ar prior of each kind on it, for --minutes each, and sets FID/KID of their
samples (and of the VQ-VAE's code-frequency samples) beside the VAE of the table part (same minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import time
from pathlib import Path

import torch

import genlab
from genlab.metrics.protocol import likelihood

KINDS = {  # kind -> (model options, train options)
    "realnvp": ({}, {"lr": 1e-3}),
    "glow": ({}, {"lr": 1e-3}),
    "pixelcnn": ({}, {"lr": 1e-3}),
    "gated-pixelcnn": ({}, {"lr": 1e-3}),
    "vae": ({"latent_dim": 32, "channels": (32, 64), "sigma_mode": "pixel", "beta_nll": 0.5}, {"lr": 2e-3}),
    "ddpm": ({}, {}),  # its own defaults (U-Net, lr 2e-4, EMA); the variational bound with log_prob's default terms
}  # the vq part adds its vq-ar entries


def machine() -> dict:
    return {"threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}


def train(kind: str, data, minutes: float, out: Path, name: str, opts: dict | None = None):
    return train_kind(kind, kind, data, minutes, out, name, opts)


def train_kind(entry: str, kind: str, data, minutes: float, out: Path, name: str = "fashion-mnist",
               opts: dict | None = None):
    """Train `kind` with the options KINDS[entry] gives it for `minutes`; (model in eval mode, run)."""
    cfg, train_opts = KINDS.get(entry, ({}, {"lr": 1e-3}))
    shutil.rmtree(out, ignore_errors=True)
    torch.manual_seed(0)
    model = genlab.create(kind, data.spec, **cfg)
    run = genlab.train(model, data, minutes=minutes, batch_size=128, out=out, progress=False, precision="fp32",
                       data={"name": name, "opts": opts or {}}, **train_opts)
    return model.eval(), run


def sampling_seconds(model, n: int = 64) -> float:
    t0 = time.perf_counter()
    model.generate(n, seed=0, precision="fp32")
    return (time.perf_counter() - t0) / n


def table(args) -> None:
    train_set, test = genlab.load_dataset("fashion-mnist"), genlab.load_dataset("fashion-mnist", "test")
    rows = []
    for kind in args.kinds.split(","):
        model, run = train(kind, train_set, args.minutes, args.out / kind, "fashion-mnist")
        t0 = time.perf_counter()
        nll = likelihood(model, test, k=args.k, n=args.n_test)
        row = {"kind": kind, "params": sum(p.numel() for p in model.parameters()), "steps": run.step,
               "minutes": args.minutes, "images_per_s": run.history[-1].get("images_per_s"),
               "bpd": nll.get("nll_bpd", nll.get(f"iwae_k{args.k}_bpd", nll.get("elbo_bpd"))), "likelihood": nll,
               "eval_s": round(time.perf_counter() - t0, 1), "sample_s_per_image": sampling_seconds(model)}
        rows.append(row)
        print(json.dumps(row))
    (args.out / "table.json").write_text(json.dumps({"rows": rows, "n_test": args.n_test, **machine()}, indent=2))


def bound_terms(args) -> None:
    """The table's ddpm rescored: its variational bound on the same test images with 10 and 50 of the 999
    denoising terms drawn (log_prob's `terms`), two seeds each: the estimate's spread and cost."""
    from genlab.data import chunks

    model = genlab.load(args.out / "ddpm").to(memory_format=torch.channels_last)
    test = genlab.load_dataset("fashion-mnist", "test")
    rows = []
    for terms in (10, 50):
        for seed in (0, 1):
            torch.manual_seed(seed)
            t0, total = time.perf_counter(), 0.0
            for x, _ in chunks(test, 256, args.n_test):
                total += float(model.log_prob(x.contiguous(memory_format=torch.channels_last), terms=terms).sum())
            row = {"terms": terms, "seed": seed, "bpd": -total / args.n_test / (784 * math.log(2)),
                   "seconds": round(time.perf_counter() - t0, 1), "n_test": args.n_test}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "bound_terms.json").write_text(json.dumps({"rows": rows, **machine()}, indent=2))


def sampling(args) -> None:
    """Cached against naive sampling of the same n images with the same seed: the same samples, and the time."""
    data = genlab.load_dataset("fashion-mnist")
    rows = []
    for kind in ("pixelcnn", "gated-pixelcnn"):
        run = args.out / kind
        model = genlab.load(run) if (run / "model.safetensors").is_file() else genlab.create(kind, data.spec).eval()
        times, xs = {}, {}
        for cached in (True, False):
            t0 = time.perf_counter()
            xs[cached] = model.sample(args.n, seed=0, cached=cached, precision="fp32")
            times[cached] = time.perf_counter() - t0
        row = {"kind": kind, "n": args.n, "cached_s": round(times[True], 2), "naive_s": round(times[False], 2),
               "ratio": round(times[False] / times[True], 1), "same_samples": bool(torch.equal(xs[True], xs[False]))}
        t0 = time.perf_counter()
        model.sample(256, seed=0, precision="fp32")
        row["cached_256_s_per_image"] = round((time.perf_counter() - t0) / 256, 4)
        rows.append(row)
        print(json.dumps(row))
    (args.out / "sampling.json").write_text(json.dumps({"rows": rows, **machine()}, indent=2))


def binarised(args) -> None:
    """PixelCNN (Bernoulli output) on mnist5k binarised once with a fixed seed: test NLL in nats."""
    opts = {"binarize": True}
    train_set = genlab.load_dataset("mnist5k", **opts)
    test = genlab.load_dataset("mnist5k", "test", **opts)
    rows = []
    for kind in args.kinds.split(","):
        model, run = train(kind, train_set, args.minutes, args.out / kind, "mnist5k", opts)
        nll = likelihood(model, test)
        row = {"kind": kind, "params": sum(p.numel() for p in model.parameters()), "steps": run.step,
               "minutes": args.minutes, "epochs": round(run.step * 128 / len(train_set), 1),
               "nll_nats": nll["nll_nats"], "nll_bpd": nll["nll_bpd"], "n_test": nll["n"]}
        rows.append(row)
        print(json.dumps(row))
    (args.out / "binarised.json").write_text(json.dumps({"rows": rows, **machine()}, indent=2))


def vq(args) -> None:
    """VQ-VAE codebook use and reconstructions; FID/KID and prior NLL of vq-ar samples beside the VAE's."""
    from genlab.metrics.protocol import evaluate

    train_set, test = genlab.load_dataset("fashion-mnist"), genlab.load_dataset("fashion-mnist", "test")
    x = test.x[:args.n_test]
    vqvae, run = train("vqvae", train_set, args.minutes, args.out / "vqvae", "fashion-mnist")
    codes = vqvae.encode(x)
    used = torch.bincount(codes.flatten(), minlength=vqvae.K)
    p = used.float() / used.sum()
    rows = [{"kind": "vqvae (codes by frequency)", "params": sum(q.numel() for q in vqvae.parameters()),
             "steps": run.step,
             "recon_mse": float((vqvae.reconstruct(x) - x).pow(2).mean()),
             "perplexity": float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())), "dead_codes": int((used == 0).sum()),
             "codebook": vqvae.K, "grid": list(vqvae.grid)}]
    runs = {"vqvae (codes by frequency)": args.out / "vqvae"}
    for prior in ("transformer", "pixelcnn"):
        KINDS[f"vq-ar-{prior}"] = ({"vqvae": str(args.out / "vqvae"), "prior": prior}, {"lr": 1e-3})
        model, run = train_kind(f"vq-ar-{prior}", "vq-ar", train_set, args.minutes, args.out / f"vq-ar-{prior}")
        nll, T = float(model.prior_nll(x).mean()), math.prod(vqvae.grid)
        rows.append({"kind": f"vq-ar prior={prior}", "params": sum(q.numel() for q in model.parameters()),
                     "steps": run.step, "prior_nll_nats": nll, "uniform_nats": T * math.log(vqvae.K),
                     "bits_per_code": nll / T / math.log(2)})
        runs[f"vq-ar prior={prior}"] = args.out / f"vq-ar-{prior}"
    if (args.out / "vae" / "model.safetensors").is_file():
        runs["vae (table part)"] = args.out / "vae"
    for name, path in runs.items():
        model = genlab.load(path)
        t0 = time.perf_counter()
        ev = evaluate(path, metrics=["fid", "kid"], n=args.n_fid, precision="fp32", device="cpu")
        row = next((r for r in rows if r["kind"] == name), None) or {"kind": name}
        if row not in rows:
            rows.append(row)
        row.update({"fid": ev["metrics"]["fid"], "kid": ev["metrics"]["kid"], "eval_s": time.perf_counter() - t0,
                    "samples_per_s": round(1 / sampling_seconds(model), 1)})
        print(json.dumps(row))
    (args.out / "vq.json").write_text(json.dumps({"rows": rows, "n_fid": args.n_fid, **machine()}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("table", "bound-terms", "sampling", "binarised", "vq"), default="table")
    ap.add_argument("--kinds", default=None)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--k", type=int, default=100, help="importance samples of the VAE's IWAE bound")
    ap.add_argument("--n-test", type=int, default=2000, help="test images scored (the first n, the same for all)")
    ap.add_argument("--n", type=int, default=16, help="images drawn both ways (--part sampling)")
    ap.add_argument("--n-fid", type=int, default=2000, help="samples for FID/KID (--part vq)")
    ap.add_argument("--out", type=Path, default=Path("runs/lik_fm"))
    args = ap.parse_args()
    args.kinds = args.kinds or ("pixelcnn,gated-pixelcnn" if args.part == "binarised" else ",".join(KINDS))
    args.out.mkdir(parents=True, exist_ok=True)
    {"table": table, "bound-terms": bound_terms, "sampling": sampling, "binarised": binarised,
     "vq": vq}[args.part](args)
    print(f"bits/dim = nats / (D ln 2), D = 784: {math.log(2) * 784:.1f} nats per bit/dim")


if __name__ == "__main__":
    main()
