"""Does bf16 cost quality? Two measurements, each run trained and sampled in its precision.

1. Equal steps (`--part steps`), three seeds each, fp32 and bf16 alternating, on Fashion-MNIST unless said:
   - likelihood bounds: the conv VAE's and the HVAE's negative ELBO and IWAE k=10 (bits/dim, 2,000 test images);
   - exact test NLL (bits/dim, 2,000 test images) of RealNVP, Glow, PixelCNN and the gated PixelCNN, of MAF and
     NSF on moons (the whole test split), and of the character GPT on python-docs (bits/character, the whole
     test split); likelihoods are evaluated in float32 in every precision;
   - FID/KID of the U-Net ddpm (1,000 samples, 20 DDIM steps), the DCGAN, the StyleGAN and the VAE-GAN (2,000
     samples each), of CycleGAN's mnist5k -> Fashion-MNIST translations (1,000), and of 1,000 samples of the
     VQ-VAE's transformer prior (vq-ar), a latent diffusion model on the VQ-VAE's codes (ldm, 20 DDIM steps), a
     consistency model distilled from the ddpm (one step) and a progressive distillation of it (two steps);
     a first stage or teacher is the fp32 seed-0 run of its own row, shared by both precisions;
   - the plain and denoising autoencoders' and the VQ-VAE's test reconstruction error (mean squared error on
     2,000 test images in [-1, 1], the reconstruction run in the precision it was trained in).
   bf16 is within the seed-to-seed spread when |mean(bf16) - mean(fp32)| is at most two standard deviations of
   the fp32 seeds.
2. Equal wall clock (`--part wall`): the U-Net ddpm for --minutes each in fp32 and in bf16 (each of --seeds, the
   precisions alternating), then FID/KID of 1,000 samples with 50 DDIM steps.

Runs are kept under --out and reused, so a stopped benchmark goes on where it was; the summary table and
steps.json cover every scored run under --out, so separate invocations (--models, --seeds, --precisions) add up.

    python benchmarks/precision_quality.py --part steps
    python benchmarks/precision_quality.py --part steps --models realnvp,hvae,vqvae,stylegan,gpt
    python benchmarks/precision_quality.py --part steps --models dae,maf,nsf,ldm,vq-ar,consistency,progressive
    python benchmarks/precision_quality.py --part steps --models vaegan,gated-pixelcnn
    python benchmarks/precision_quality.py --part wall --minutes 10 --seeds 0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import torch

import genlab
from genlab.runs import RunDir


@dataclasses.dataclass(frozen=True)
class Parent:
    """A model option naming MODELS[name]'s fp32 seed-0 run (trained first if missing): a first stage or teacher
    shared by both precisions, so that only the child's precision differs."""

    name: str


# name: (kind, dataset, model options, training options, evaluation)
IMAGES = "fashion-mnist"
MODELS = {
    "vae": ("vae", IMAGES, {}, {"steps": 600, "batch_size": 128}, {"metrics": ["nll"], "n": 2000, "k": 10}),
    "ddpm": ("ddpm", IMAGES, {}, {"steps": 300, "batch_size": 64},
             {"metrics": ["fid", "kid"], "n": 1000, "sample_opts": {"sampler": "ddim", "steps": 20}}),
    "gan": ("gan", IMAGES, {}, {"steps": 600, "batch_size": 128}, {"metrics": ["fid", "kid"], "n": 2000}),
    "glow": ("glow", IMAGES, {}, {"steps": 600, "batch_size": 128}, {"metrics": ["nll"], "n": 2000}),
    "pixelcnn": ("pixelcnn", IMAGES, {}, {"steps": 600, "batch_size": 128}, {"metrics": ["nll"], "n": 2000}),
    "realnvp": ("realnvp", IMAGES, {}, {"steps": 600, "batch_size": 128}, {"metrics": ["nll"], "n": 2000}),
    "hvae": ("hvae", IMAGES, {}, {"steps": 600, "batch_size": 128}, {"metrics": ["nll"], "n": 2000, "k": 10}),
    "vqvae": ("vqvae", IMAGES, {}, {"steps": 600, "batch_size": 128}, {"metrics": ["recon"], "n": 2000}),
    # 100 steps per fade-in and stable phase at 7x7 and 14x14, then 800 at 28x28 (as BENCHMARKS.md's §40)
    "stylegan": ("stylegan", IMAGES, {"grow_steps": 100}, {"steps": 1200, "batch_size": 64},
                 {"metrics": ["fid", "kid"], "n": 2000}),
    "gpt": ("gpt", "python-docs", {}, {"steps": 600, "batch_size": 64}, {"metrics": ["nll"], "n": None}),
    "ae": ("ae", IMAGES, {}, {"steps": 600, "batch_size": 128}, {"metrics": ["recon"], "n": 2000}),
    "cyclegan": ("cyclegan", "mnist5k", {"target": IMAGES}, {"steps": 600, "batch_size": 16},
                 {"metrics": ["fid", "kid"], "n": 1000}),
    # the kinds built from the blocks above; the slow ones at half the steps or batch
    "dae": ("dae", IMAGES, {}, {"steps": 600, "batch_size": 128}, {"metrics": ["recon"], "n": 2000}),
    "vaegan": ("vaegan", IMAGES, {}, {"steps": 300, "batch_size": 128}, {"metrics": ["fid", "kid"], "n": 2000}),
    "maf": ("maf", "moons", {}, {"steps": 600, "batch_size": 128}, {"metrics": ["nll"], "n": None}),
    "nsf": ("nsf", "moons", {}, {"steps": 600, "batch_size": 128}, {"metrics": ["nll"], "n": None}),
    "gated-pixelcnn": ("gated-pixelcnn", IMAGES, {}, {"steps": 300, "batch_size": 64},
                       {"metrics": ["nll"], "n": 2000}),
    "vq-ar": ("vq-ar", IMAGES, {"vqvae": Parent("vqvae")}, {"steps": 300, "batch_size": 128},
              {"metrics": ["fid", "kid"], "n": 1000}),
    "ldm": ("ldm", IMAGES, {"first_stage": Parent("vqvae")}, {"steps": 300, "batch_size": 64},
            {"metrics": ["fid", "kid"], "n": 1000, "sample_opts": {"sampler": "ddim", "steps": 20}}),
    "consistency": ("consistency", IMAGES, {"teacher": Parent("ddpm")}, {"steps": 300, "batch_size": 64},
                    {"metrics": ["fid", "kid"], "n": 1000}),  # distillation, sampled in one step
    "progressive": ("progressive", IMAGES, {"teacher": Parent("ddpm"), "start_steps": 8, "min_steps": 2,
                                            "round_steps": 150}, {"steps": 300, "batch_size": 64},
                    {"metrics": ["fid", "kid"], "n": 1000}),  # two rounds, 8 -> 4 -> 2 steps; sampled in 2
}


def trained(out: Path, kind: str, dataset: str, opts: dict, train_opts: dict, precision: str, seed: int) -> Path:
    if RunDir(out).is_run and (out / "model.safetensors").is_file():
        state = json.loads((out / "checkpoint" / "state.json").read_text())
        budget = train_opts.get("steps")
        if budget is None or state["step"] >= budget:
            return out
        return genlab.train(genlab.load(out), genlab.load_dataset(dataset), out=out, resume=True,
                            progress=False, **train_opts).path  # the run's own seed and precision stand
    data = genlab.load_dataset(dataset)
    opts = {k: str(parent_run(out.parent, v.name)) if isinstance(v, Parent) else v for k, v in opts.items()}
    torch.manual_seed(seed)
    model = genlab.create(kind, data.spec, **opts)
    genlab.train(model, data, out=out, overwrite=out.exists(), seed=seed, precision=precision, progress=False,
                 **train_opts)
    return out


def parent_run(root: Path, name: str) -> Path:
    kind, dataset, opts, train_opts, _ = MODELS[name]
    return trained(root / f"{name}-fp32-s0", kind, dataset, opts, train_opts, "fp32", 0).resolve()


def recon_mse(run: Path, n: int, precision: str) -> float:
    """Mean squared error of the model's reconstructions of the first n test images, run in `precision`."""
    from genlab.data import chunks
    from genlab.precision import autocast

    model = genlab.load(run)
    total, count = 0.0, 0
    for x, _ in chunks(genlab.load_dataset(IMAGES, "test"), n=n):
        with torch.no_grad(), autocast(precision, model.device):
            r = model.reconstruct(x)
        total += float(((r.float() - x) ** 2).sum())
        count += x.numel()
    return total / count


def score(run: Path, ev: dict, precision: str) -> dict:
    key = "+".join(ev["metrics"])
    saved = run / f"quality-{key}.json"
    if saved.is_file():
        return json.loads(saved.read_text())
    if ev["metrics"] == ["recon"]:
        out = {"recon_mse": recon_mse(run, ev["n"], precision)}
    else:
        res = genlab.evaluate(run, metrics=ev["metrics"], n=ev["n"], k=ev.get("k", 100), device="cpu",
                              sample_opts=ev.get("sample_opts"), precision=precision)
        m = res["metrics"]
        out = ({k: v for k, v in m["nll"].items() if k.endswith("_bpd")} if "nll" in m  # VAE: bounds; exact: nll_bpd
               else {"fid": m["fid"], "kid": m["kid"]})
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    out["train_seconds"] = round(state["elapsed"], 1)
    out["steps"] = state["step"]
    saved.write_text(json.dumps(out))
    return out


def part_steps(root: Path, models: list[str], seeds: list[int], precisions: list[str]) -> None:
    for name in models:
        kind, dataset, opts, train_opts, ev = MODELS[name]
        for seed in seeds:
            for precision in precisions:  # alternating
                run = trained(root / f"{name}-{precision}-s{seed}", kind, dataset, opts, train_opts, precision,
                              seed)
                r = score(run, ev, precision)
                print(f"{name} seed {seed} {precision}: {r}", flush=True)
    summarise(root)


def summarise(root: Path) -> None:
    """Table and steps.json over every scored run under root, so separate invocations add up."""
    results: dict = {}
    for name, (*_, ev) in MODELS.items():
        for precision in ("fp32", "bf16"):
            runs = sorted(root.glob(f"{name}-{precision}-s*"), key=lambda p: int(p.name.rsplit("-s", 1)[1]))
            for run in runs:
                saved = run / f"quality-{'+'.join(ev['metrics'])}.json"
                if saved.is_file():
                    r = {"seed": int(run.name.rsplit("-s", 1)[1]), **json.loads(saved.read_text())}
                    results.setdefault(name, {}).setdefault(precision, []).append(r)

    (root / "steps.json").write_text(json.dumps(results, indent=2))

    def mean_sd(xs: list[float]) -> str:
        if not xs:
            return "—"
        return f"{statistics.mean(xs):.4g} ± {statistics.stdev(xs) if len(xs) > 1 else float('nan'):.2g} (n={len(xs)})"

    print("\n| model | metric | fp32 (mean ± sd over seeds) | bf16 | difference / sd(fp32) | train s fp32 -> bf16 |")
    print("|---|---|---|---|---|---|")
    for name, per in results.items():
        a_runs, b_runs = per.get("fp32", []), per.get("bf16", [])
        for metric in [k for k in (a_runs or b_runs)[0] if k not in ("seed", "train_seconds", "steps")]:
            a = [r[metric] for r in a_runs]
            b = [r[metric] for r in b_runs]
            sd = statistics.stdev(a) if len(a) > 1 else float("nan")
            diff = f"{(statistics.mean(b) - statistics.mean(a)) / sd:+.2f}" if a and b and sd > 0 else "—"
            t32 = f"{statistics.mean(r['train_seconds'] for r in a_runs):.0f}" if a_runs else "—"
            t16 = f"{statistics.mean(r['train_seconds'] for r in b_runs):.0f}" if b_runs else "—"
            print(f"| {name} | {metric} | {mean_sd(a)} | {mean_sd(b)} | {diff} | {t32} -> {t16} |")


def part_wall(root: Path, minutes: float, seeds: list[int], precisions: list[str]) -> None:
    ev = {"metrics": ["fid", "kid"], "n": 1000, "sample_opts": {"sampler": "ddim", "steps": 50}}
    for seed in seeds:
        for precision in precisions:
            run = trained(root / f"ddpm-{minutes:g}min-{precision}-s{seed}", "ddpm", IMAGES, {}, {"minutes": minutes},
                          precision, seed)
            r = score(run, ev, precision)
            print(f"ddpm {minutes:g} min {precision} seed {seed}: {r['steps']} steps, FID {r['fid']:.2f}, "
                  f"KID {r['kid']:.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("steps", "wall"), required=True)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--precisions", default="fp32,bf16",
                    help="comma-separated; one at a time lets the cheap precision's seeds land first")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path("runs/precision_quality"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part == "steps":
        part_steps(args.out, args.models.split(","), [int(s) for s in args.seeds.split(",")],
                   args.precisions.split(","))
    else:
        part_wall(args.out, args.minutes, [int(s) for s in args.seeds.split(",")], args.precisions.split(","))


if __name__ == "__main__":
    main()
