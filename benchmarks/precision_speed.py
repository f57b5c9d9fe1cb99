"""Training and sampling images/s in fp32 and bf16, alternating in one run, for every family's default network on
28x28 images (gpt: sequences/s of python-docs' 128-character windows), beside diffusers' UNet2DModel (the same
architecture as genlab's U-Net) in its fastest setting.

Training is timed through genlab's own Trainer (autocast, backward, clipping, AdamW, EMA: what `genlab train`
does per step); sampling through `generate` (ddpm: 10 DDIM steps). Each setting — fp32 (channels-last, the
float32 default), bf16 channels-last and bf16 contiguous — is measured `--reps` times in turn, and the median
is kept. diffusers is timed in both layouts and both precisions (torch.autocast), and its fastest fp32 and
fastest bf16 setting are counted.

    pip install diffusers   # for the diffusers rows only
    python benchmarks/precision_speed.py --reps 3 --out runs/precision_speed.json
    python benchmarks/precision_speed.py --device cuda --reps 2 --cases "ae (conv),vae (conv),ddpm (U-Net),gan (DCGAN)"

`--threads 1,2` times every setting at each thread count in the same rounds (torch.set_num_threads), the rows
named "case @N threads".

On CUDA, fp16 (with its gradient scaler) joins the settings, every setting is timed in both layouts, each timed
call ends with a synchronisation, and the diffusers rows are left out (they are the CPU comparison).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import genlab
from genlab.precision import autocast, cpu_native_bf16
from genlab.training.trainer import TrainConfig, Trainer


@dataclasses.dataclass(frozen=True)
class Parent:
    """A model option naming a run directory: `kind` trained for one step on the case's data (a first stage's or
    a teacher's training does not change what a step or a sample costs)."""

    kind: str


PARENTS = tempfile.TemporaryDirectory(prefix="precision_speed-")


@functools.cache
def parent_run(kind: str, data_name: str) -> str:
    out = Path(PARENTS.name) / f"{kind}-{data_name}"
    torch.manual_seed(0)
    genlab.train(genlab.create(kind, dataset(data_name).spec), dataset(data_name), steps=1, out=out,
                 precision="fp32", progress=False)
    return str(out)


# name: (kind, data, model options, batch size, sampling (n, options))
CASES = {
    "ae (conv)": ("ae", "fashion-mnist", {}, 128, (1000, {})),
    "vae (conv)": ("vae", "fashion-mnist", {}, 128, (1000, {})),
    "ddpm (U-Net)": ("ddpm", "fashion-mnist", {}, 128, (250, {"sampler": "ddim", "steps": 10})),
    "gan (DCGAN)": ("gan", "fashion-mnist", {}, 128, (1000, {})),
    "cyclegan": ("cyclegan", "mnist5k", {"target": "fashion-mnist"}, 16, (64, {})),
    "hvae": ("hvae", "fashion-mnist", {}, 128, (1000, {})),
    "vqvae": ("vqvae", "fashion-mnist", {}, 128, (1000, {})),
    # at 28x28, where its training spends its time: a fresh progressive model would be timed at 7x7
    "stylegan (28x28)": ("stylegan", "fashion-mnist", {"progressive": False}, 64, (1000, {})),
    "realnvp (flow)": ("realnvp", "fashion-mnist", {}, 128, (1000, {})),
    "glow (flow)": ("glow", "fashion-mnist", {}, 128, (1000, {})),
    "pixelcnn": ("pixelcnn", "fashion-mnist", {}, 128, (16, {})),
    "gpt (text)": ("gpt", "python-docs", {}, 64, (16, {})),
    "gpt (text uncached)": ("gpt", "python-docs", {}, 64, (16, {"cached": False})),
    # the kinds built from the same blocks as those above
    "dae": ("dae", "fashion-mnist", {}, 128, (1000, {})),
    "vaegan": ("vaegan", "fashion-mnist", {}, 128, (1000, {})),
    "maf (moons)": ("maf", "moons", {}, 128, (1000, {})),
    "nsf (moons)": ("nsf", "moons", {}, 128, (1000, {})),
    "gated-pixelcnn": ("gated-pixelcnn", "fashion-mnist", {}, 128, (16, {})),
    "vq-ar (transformer)": ("vq-ar", "fashion-mnist", {"vqvae": Parent("vqvae")}, 128, (250, {})),
    "vq-ar (transformer uncached)": ("vq-ar", "fashion-mnist", {"vqvae": Parent("vqvae")}, 128,
                                     (250, {"cached": False})),
    "vq-ar (pixelcnn)": ("vq-ar", "fashion-mnist", {"vqvae": Parent("vqvae"), "prior": "pixelcnn"}, 128, (250, {})),
    "ldm (vqvae codes)": ("ldm", "fashion-mnist", {"first_stage": Parent("vqvae")}, 128,
                          (250, {"sampler": "ddim", "steps": 10})),
    "consistency (CT)": ("consistency", "fashion-mnist", {}, 128, (1000, {"steps": 1})),
    "consistency (CD)": ("consistency", "fashion-mnist", {"teacher": Parent("ddpm")}, 128, (1000, {"steps": 1})),
    "progressive": ("progressive", "fashion-mnist", {"teacher": Parent("ddpm")}, 128,
                    (1000, {"sampler": "ddim", "steps": 4})),
}
SETTINGS = {"fp32": ("fp32", True), "bf16": ("bf16", True), "bf16 contiguous": ("bf16", False)}
CUDA_SETTINGS = {f"{p}{layout}": (p, not layout) for p in ("fp32", "bf16", "fp16") for layout in ("", " contiguous")}
SYNC = {"cuda": torch.cuda.synchronize}


def timed_rate(fn, items: int, seconds: float = 3.0, warm: int = 2, sync=lambda: None) -> float:
    """items per second of fn, over at least `seconds` (and 3 calls) after `warm` calls; `sync` waits for the
    device."""
    for _ in range(warm):
        fn()
    sync()
    calls, t0 = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    sync()
    return calls * items / (time.perf_counter() - t0)


@functools.cache
def dataset(name: str):
    return genlab.load_dataset(name)


def genlab_rates(case: str, precision: str, channels_last: bool, device: str = "cpu", seconds: float = 3.0,
                 batch: int | None = None, n: int | None = None) -> tuple[float, float]:
    kind, data_name, opts, default_batch, (default_n, sample_opts) = CASES[case]
    batch, n = batch or default_batch, n or default_n
    data = dataset(data_name)
    opts = {k: parent_run(v.kind, data_name) if isinstance(v, Parent) else v for k, v in opts.items()}
    torch.manual_seed(0)
    model = genlab.create(kind, data.spec, **opts)
    cfg = TrainConfig(steps=10**6, batch_size=batch, precision=precision, channels_last=channels_last,
                      device=device, progress=False,
                      **{k: v for k, v in model.train_defaults().items() if k != "batch_size"})
    tr = Trainer(model, data, cfg, None, {"name": data_name}, resume=False)

    def step():
        tr.train_step()
        tr.step += 1

    sync = SYNC.get(torch.device(device).type, lambda: None)
    train = timed_rate(step, batch, seconds, sync=sync)
    model.eval()
    if not channels_last:
        model.to(memory_format=torch.contiguous_format)
    sample = timed_rate(lambda: model.generate(n, seed=0, precision=precision, **sample_opts), n, seconds, warm=1,
                        sync=sync)
    return train, sample


def diffusers_train_step(precision: str, channels_last: bool):
    """(model, step, batch): diffusers' UNet2DModel (the same architecture as genlab's, §10) and one training step
    of it on a Fashion-MNIST batch of 128 under autocast to `precision` (forward, loss, backward, AdamW)."""
    from diffusers import DDPMScheduler
    from diffusion_vs_diffusers import diffusers_unet

    torch.manual_seed(0)
    model = diffusers_unet()
    x = genlab.load_dataset("fashion-mnist").x[:128]
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    sched = DDPMScheduler(num_train_timesteps=1000)

    def step():
        noise = torch.randn_like(x)
        t = torch.randint(0, 1000, (len(x),))
        with autocast(precision, "cpu"):
            pred = model(sched.add_noise(x, noise, t), t).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return model, step, len(x)


def diffusers_rates(precision: str, channels_last: bool) -> tuple[float, float]:
    from diffusers import DDIMScheduler
    from diffusion_vs_diffusers import diffusers_sample

    model, step, batch = diffusers_train_step(precision, channels_last)
    train = timed_rate(step, batch)
    model.eval()

    def sample():
        with autocast(precision, "cpu"):
            diffusers_sample(model, DDIMScheduler(num_train_timesteps=1000), 250, 10, 0,
                             "channels_last" if channels_last else "contiguous")

    return train, timed_rate(sample, 250, warm=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--no-diffusers", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--seconds", type=float, default=3.0, help="the least time each setting is timed for")
    ap.add_argument("--batch", type=int, help="the training batch of every case (default: each case's own)")
    ap.add_argument("--sample-n", type=int, help="the images sampled per timed call (default: each case's own)")
    ap.add_argument("--threads", default="", help="comma-separated thread counts (default: torch's own)")
    ap.add_argument("--out", type=Path, default=Path("runs/precision_speed.json"))
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    threads, default_threads = [int(t) for t in args.threads.split(",") if t], torch.get_num_threads()
    if threads:  # each case at each thread count: "case @N threads"
        cases = [f"{c} @{t} threads" for c in cases for t in threads]
    on_cuda = torch.device(args.device).type == "cuda"
    settings = CUDA_SETTINGS if on_cuda else SETTINGS
    jobs = [(c, s) for c in cases for s in settings]
    if not args.no_diffusers and not on_cuda:
        jobs += [("diffusers UNet2DModel", s) for s in ("fp32 contiguous", "fp32", "bf16", "bf16 contiguous")]
    rates: dict[tuple[str, str], list[tuple[float, float]]] = {j: [] for j in jobs}
    for rep in range(args.reps):  # alternating: every setting once per round
        for case, setting in jobs:
            prec, cl = setting.split()[0], not setting.endswith("contiguous")
            if " @" in case:
                case_name, n_threads = case.split(" @")
                torch.set_num_threads(int(n_threads.split()[0]))
            else:
                case_name = case
                torch.set_num_threads(default_threads)
            r = diffusers_rates(prec, cl) if case.startswith("diffusers") else genlab_rates(
                case_name, prec, cl, args.device, args.seconds, args.batch, args.sample_n)
            rates[(case, setting)].append(r)
            print(f"round {rep + 1}: {case:22s} {setting:16s} train {r[0]:7.1f} img/s  sample {r[1]:8.1f} img/s",
                  flush=True)
    med = {f"{c} | {s}": [statistics.median(v[i] for v in r) for i in (0, 1)] for (c, s), r in rates.items()}
    result = {"batch": args.batch, "sample_n": args.sample_n, "threads": threads or default_threads,
              "torch": torch.__version__, "cpu_bf16_flag": cpu_native_bf16(),
              "device": torch.cuda.get_device_name() if on_cuda else "cpu", "reps": args.reps, "median_img_s": med}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print("\n| model | train fp32 | train bf16 (best layout) | ratio | sample fp32 | sample bf16 | ratio |")
    print("|---|---|---|---|---|---|---|")
    names = cases + ([] if args.no_diffusers or on_cuda else ["diffusers UNet2DModel"])
    best = {}
    for c in names:
        fp = [v for k, v in med.items() if k.startswith(c + " |") and "| fp32" in k]
        bf = [v for k, v in med.items() if k.startswith(c + " |") and "| bf16" in k]
        t32, s32 = max(v[0] for v in fp), max(v[1] for v in fp)
        t16, s16 = max(v[0] for v in bf), max(v[1] for v in bf)
        best[c] = (t32, t16, s32, s16)
        print(f"| {c} | {t32:.0f} | {t16:.0f} | {t16 / t32:.2f}x | {s32:.0f} | {s16:.0f} | {s16 / s32:.2f}x |")
        hp = [v for k, v in med.items() if k.startswith(c + " |") and "| fp16" in k]
        if hp:
            t, s = max(v[0] for v in hp), max(v[1] for v in hp)
            print(f"| {c}, fp16 (best layout) | | {t:.0f} | {t / t32:.2f}x | | {s:.0f} | {s / s32:.2f}x |")
    if "ddpm (U-Net)" in best and "diffusers UNet2DModel" in best:
        g, d = best["ddpm (U-Net)"], best["diffusers UNet2DModel"]
        print(f"\ngenlab U-Net bf16 vs diffusers at its fastest: training {g[1] / max(d[0], d[1]):.2f}x, "
              f"sampling {g[3] / max(d[2], d[3]):.2f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
