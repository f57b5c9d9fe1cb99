"""genlab's ddpm vs diffusers (UNet2DModel + DDPMScheduler), side by side in one run on Fashion-MNIST.

1. The same network: genlab's default U-Net and a UNet2DModel configured to the same architecture (widths
   32/64/64, one residual block per level, scale-shift time conditioning, attention in the middle); parameter
   counts and FLOPs per image are printed (torch.utils.flop_counter).
2. Throughput: training images/s (forward, backward, AdamW step; batch 128) and sampling images/s (10 DDIM
   steps, batch 250), each timed on the same batches; both sides timed in the default memory layout and in
   channels-last, each side's faster one counted. Achieved GFLOP/s against this machine's float32 matmul peak.
3. Equal wall clock: genlab's default recipe (`genlab.train`, its defaults) vs the diffusers
   train_unconditional example's recipe (linear betas, eps, AdamW lr 1e-4, betas (0.95, 0.999), wd 1e-6,
   500 warm-up steps then cosine, EMAModel with warm-up, batch 128), each for --minutes; then n samples
   from each with 50 DDIM steps (diffusers: DDIMScheduler) and FID / KID / precision / recall on the test split.

    pip install diffusers   # for this benchmark only
    python benchmarks/diffusion_vs_diffusers.py --minutes 10 --n 1000 --out runs/vs_diffusers
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import genlab
from genlab.metrics.protocol import evaluate_samples


def diffusers_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64),
                       layers_per_block=1, down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                       norm_num_groups=8, attention_head_dim=32, resnet_time_scale_shift="scale_shift",
                       add_attention=True, dropout=0.0)


def matmul_peak(n: int = 2048, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return reps * 2 * n**3 / (time.perf_counter() - t0) / 1e9


def flops(fn) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def timed(fn, reps: int, warm: int = 2) -> float:
    for _ in range(warm):
        fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def by_layout(make, rate) -> dict[str, float]:
    """rate(model, layout) of a fresh model in each memory layout; the best one is what counts."""
    rates = {}
    for layout in ("contiguous", "channels_last"):
        model = make()
        if layout == "channels_last":
            model.to(memory_format=torch.channels_last)
        rates[layout] = rate(model, layout)
    return rates


def throughput(x: torch.Tensor, reps: int) -> dict:
    from diffusers import DDIMScheduler, DDPMScheduler

    B = x.shape[0]
    ours = genlab.create("ddpm", genlab.load_dataset("fashion-mnist").spec)
    theirs = diffusers_unet()
    sched = DDPMScheduler(num_train_timesteps=1000)
    out: dict = {"params_genlab": sum(p.numel() for p in ours.parameters()),
                 "params_diffusers": sum(p.numel() for p in theirs.parameters())}
    t = torch.randint(0, 1000, (B,))
    out["gflop_per_image_fwd_genlab"] = flops(lambda: ours.net(x, t)) / B / 1e9
    out["gflop_per_image_fwd_diffusers"] = flops(lambda: theirs(x, t).sample) / B / 1e9

    def diffusers_step(model, xb, opt):
        noise = torch.randn_like(xb)
        tt = torch.randint(0, 1000, (B,))
        loss = F.mse_loss(model(sched.add_noise(xb, noise, tt), tt).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def genlab_step(model, xb, opt):
        loss, _ = model(xb, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    xcl = x.contiguous(memory_format=torch.channels_last)

    def train_rate(step):
        def rate(model, layout):
            xb = xcl if layout == "channels_last" else x
            opt = torch.optim.AdamW(model.parameters(), 1e-4)
            return B / timed(lambda: step(model, xb, opt), reps)
        return rate

    n, steps = 250, 10
    ddim = DDIMScheduler(num_train_timesteps=1000)
    ours_fresh = lambda: genlab.create("ddpm", genlab.load_dataset("fashion-mnist").spec)
    rows = {"train_img_s_genlab": by_layout(ours_fresh, train_rate(genlab_step)),
            "train_img_s_diffusers": by_layout(diffusers_unet, train_rate(diffusers_step)),
            "sample_img_s_genlab": by_layout(lambda: ours_fresh().eval(), lambda m, lay: n / timed(
                lambda: m.sample(n, seed=0, sampler="ddim", steps=steps), 2, 1)),
            "sample_img_s_diffusers": by_layout(lambda: diffusers_unet().eval(), lambda m, lay: n / timed(
                lambda: diffusers_sample(m, ddim, n, steps, 0, lay), 2, 1))}
    for key, rates in rows.items():
        out[f"{key}_by_layout"] = rates
        out[key] = max(rates.values())
    out["train_ratio"] = out["train_img_s_genlab"] / out["train_img_s_diffusers"]
    out["sample_ratio"] = out["sample_img_s_genlab"] / out["sample_img_s_diffusers"]
    peak = matmul_peak()
    train_gflop = 3 * out["gflop_per_image_fwd_genlab"]  # forward + backward (about 2x forward)
    out["matmul_peak_gflop_s"] = peak
    out["train_gflop_s_genlab"] = train_gflop * out["train_img_s_genlab"]
    out["sample_gflop_s_genlab"] = out["gflop_per_image_fwd_genlab"] * steps * out["sample_img_s_genlab"]
    out["train_fraction_of_peak"] = out["train_gflop_s_genlab"] / peak
    out["sample_fraction_of_peak"] = out["sample_gflop_s_genlab"] / peak
    return out


@torch.no_grad()
def diffusers_sample(model, scheduler, n: int, steps: int, seed: int, layout: str = "contiguous") -> torch.Tensor:
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 1, 28, 28), generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    for t in scheduler.timesteps:
        eps = model(x, t).sample
        x = scheduler.step(eps, t, x).prev_sample
    return x.clamp(-1, 1)


def train_diffusers(data, minutes: float, out: Path, batch: int = 128) -> torch.nn.Module:
    """The diffusers train_unconditional example's recipe, for a wall-clock budget."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    model = diffusers_unet().to(memory_format=torch.channels_last)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    # the example sizes its cosine schedule by the planned steps; plan by the measured rate of the first steps
    ema = EMAModel(model.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    x_all = data.x
    g = torch.Generator().manual_seed(0)
    lr_sched, step, t0, log = None, 0, time.perf_counter(), []
    while (elapsed := time.perf_counter() - t0) < minutes * 60:
        if step == 20:
            planned = int(20 * minutes * 60 / elapsed)
            lr_sched = get_cosine_schedule_with_warmup(opt, 500, planned)
        idx = torch.randint(0, len(x_all), (batch,), generator=g)
        xb = x_all[idx].contiguous(memory_format=torch.channels_last)
        noise = torch.randn_like(xb)
        t = torch.randint(0, 1000, (batch,))
        loss = F.mse_loss(model(sched.add_noise(xb, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if lr_sched is not None:
            lr_sched.step()
        ema.step(model.parameters())
        step += 1
        if step % 100 == 0:
            log.append({"step": step, "loss": loss.item(), "s": round(elapsed, 1)})
            print(json.dumps({"diffusers": log[-1]}), flush=True)
    ema.copy_to(model.parameters())
    (out / "diffusers_log.json").write_text(json.dumps(log))
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("runs/vs_diffusers"))
    ap.add_argument("--skip-budget", action="store_true", help="throughput only")
    ap.add_argument("--skip-throughput", action="store_true", help="the equal-wall-clock comparison only")
    ap.add_argument("--reuse", action="store_true", help="keep an earlier genlab run in OUT/genlab if complete")
    args = ap.parse_args()
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    data = genlab.load_dataset("fashion-mnist")
    res = {} if args.skip_throughput else {"throughput": throughput(data.x[:128], args.reps)}
    print(json.dumps(res.get("throughput"), indent=1), flush=True)
    if not args.skip_budget:
        from diffusers import DDIMScheduler

        run = args.out / "genlab"
        if not (args.reuse and (run / "model.safetensors").is_file()):
            shutil.rmtree(run, ignore_errors=True)
            torch.manual_seed(0)
            ours = genlab.create("ddpm", data)
            genlab.train(ours, data, minutes=args.minutes, out=run, progress=False)
        res["genlab_steps"] = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
        ours = genlab.load(run).to(memory_format=torch.channels_last)
        theirs = train_diffusers(data, args.minutes, args.out)
        xs = {"genlab": torch.cat([ours.sample(min(500, args.n - i), seed=i, sampler="ddim", steps=50)
                                   for i in range(0, args.n, 500)]),
              "diffusers": torch.cat([diffusers_sample(theirs, DDIMScheduler(num_train_timesteps=1000),
                                                       min(500, args.n - i), 50, i, "channels_last")
                                      for i in range(0, args.n, 500)])}
        for name, x in xs.items():
            m = evaluate_samples(x, "fashion-mnist", ["fid", "kid", "pr"])["metrics"]
            res[f"quality_{name}"] = m
            print(name, json.dumps(m), flush=True)
            from genlab.report.images import save_grid

            save_grid(x[:64], data.spec, args.out / f"samples_{name}.png")
    (args.out / "result.json").write_text(json.dumps(res, indent=1, default=float))
    if "throughput" not in res:
        return
    t = res["throughput"]
    print(f"train img/s genlab {t['train_img_s_genlab']:.1f} vs diffusers {t['train_img_s_diffusers']:.1f} "
          f"(ratio {t['train_ratio']:.2f}); sample img/s {t['sample_img_s_genlab']:.1f} vs "
          f"{t['sample_img_s_diffusers']:.1f} (ratio {t['sample_ratio']:.2f}); peak {t['matmul_peak_gflop_s']:.0f} "
          f"GFLOP/s, training at {100 * t['train_fraction_of_peak']:.0f}% of it")


if __name__ == "__main__":
    main()
