"""Where one training step's time goes, section by section, on the CPU or a CUDA GPU.

genlab's Trainer step for one model (default: the ddpm's U-Net on Fashion-MNIST), first timed whole (as `genlab
train` runs it: the device is never waited for, except where the step itself waits), then section by section with
the device synchronised around each: the batch, forward and loss, the finiteness check (`.item()`: a wait for the
device), backward, gradient clipping, AdamW, the EMA. Beside the sections, the forms they replaced or could take:
the EMA as one `lerp_` per tensor and (on CUDA) PyTorch's default unfused AdamW, both genlab's before 2026-12-04,
and the whole step without the finiteness check's wait.
On a GPU, a step whose sections add up to much more than the GPU's own work is launch-bound: precision cannot help
it, fewer and larger kernels can.
`--ops` (CPU) also profiles the whole step and reports the share of its operator time spent in convolutions,
forward and backward, beside diffusers' UNet2DModel step (`--diffusers`, the same architecture, §10): what no
change outside the convolutions' kernels can buy.

    python benchmarks/train_step_breakdown.py --device cuda --batch 128,2048 --precisions fp32,bf16
    python benchmarks/train_step_breakdown.py --precisions bf16 --ops --diffusers
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import genlab
from genlab.precision import autocast
from genlab.training.trainer import TrainConfig, Trainer

SECTIONS = ("batch", "forward + loss", "finiteness check", "backward", "clip", "AdamW", "EMA")


def timed(fn, reps: int, sync) -> float:
    """Mean milliseconds of fn over reps calls, after two warm-up calls."""
    for _ in range(2):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps * 1e3


def op_shares(fn, reps: int) -> dict[str, float]:
    """Milliseconds per call of fn's operators (torch.profiler's self CPU times summed, after two warm-up calls),
    of them in convolutions (forward and backward), the convolutions' share, and the three costliest others."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e3 / reps
    conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key.lower()) / 1e3 / reps
    others = sorted((e for e in events if "convolution" not in e.key.lower()), key=lambda e: -e.self_cpu_time_total)
    return {"operators": total, "convolutions": conv, "convolution share": conv / total,
            **{f"other: {e.key}": e.self_cpu_time_total / 1e3 / reps for e in others[:3]}}


def breakdown(kind: str, data, batch: int, precision: str, device: str, reps: int,
              ops: bool = False) -> dict[str, float]:
    torch.manual_seed(0)
    model = genlab.create(kind, data.spec)
    cfg = TrainConfig(steps=10**6, batch_size=batch, precision=precision, device=device, progress=False,
                      **{k: v for k, v in model.train_defaults().items() if k != "batch_size"})
    tr = Trainer(model, data, cfg, None, {"name": data.spec.name}, resume=False)
    sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
    (phase, _), = model.phases
    opt = tr.optimizers[phase]
    params = [p for g in opt.param_groups for p in g["params"]]

    def whole():
        tr.train_step()
        tr.step += 1

    out = {"step (as trained)": timed(whole, reps, sync)}
    if ops:
        out.update({f"profiled: {k}": v for k, v in op_shares(whole, reps).items()})
    guard = tr._guard
    tr._guard = lambda loss, phase: None
    out["step without the finiteness wait"] = timed(whole, reps, sync)
    tr._guard = guard

    sections = dict.fromkeys(SECTIONS, 0.0)
    state: dict = {}

    def section(name, fn):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        sections[name] += (time.perf_counter() - t0) * 1e3

    def forward():
        with autocast(tr.precision, tr.device):
            state["loss"] = tr.net(*state["batch"], phase=phase, step=tr.step)[0]

    def backward():
        opt.zero_grad(set_to_none=True)
        state["loss"].backward()

    def sectioned():
        section("batch", lambda: state.__setitem__("batch", tr._batch()))
        section("forward + loss", forward)
        section("finiteness check", lambda: torch.isfinite(state["loss"].detach()).item())
        section("backward", backward)
        section("clip", lambda: torch.nn.utils.clip_grad_norm_(params, max(cfg.grad_clip, 1e9)))
        section("AdamW", opt.step)
        section("EMA", lambda: tr.ema.update(tr.model, tr.step) if tr.ema else None)
        tr.step += 1

    for _ in range(2):
        sectioned()
    for k in sections:
        sections[k] = 0.0
    for _ in range(reps):
        sectioned()
    out.update({k: v / reps for k, v in sections.items()})

    if tr.ema is not None:  # the form genlab's EMA replaced: one lerp_ per tensor
        def per_tensor_ema():
            for k, v in tr.model.state_dict().items():
                if v.dtype.is_floating_point:
                    tr.ema.state[k].lerp_(v, 0.001)

        out["EMA, alone"] = timed(lambda: tr.ema.update(tr.model, tr.step), reps, sync)
        out["EMA per tensor, alone"] = timed(per_tensor_ema, reps, sync)
    if tr.device.type == "cuda":  # genlab's AdamW is fused there; PyTorch's default launches per tensor group
        default = torch.optim.AdamW(params, lr=cfg.lr, fused=False)
        out["AdamW, PyTorch's default"] = timed(default.step, reps, sync)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="ddpm")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", default="128", help="comma-separated batch sizes")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--ops", action="store_true", help="profile the step: its convolutions' share (CPU)")
    ap.add_argument("--diffusers", action="store_true", help="with --ops: diffusers' UNet2DModel step too")
    ap.add_argument("--out", type=Path, default=Path("runs/train_step_breakdown.json"))
    args = ap.parse_args()
    data = genlab.load_dataset(args.data)
    results = {}
    if args.ops and args.diffusers:
        from precision_speed import diffusers_train_step

        for precision in args.precisions.split(","):
            for layout in ("contiguous", "channels_last"):
                _, step, batch = diffusers_train_step(precision, layout == "channels_last")
                r = {"step": timed(step, args.reps, lambda: None), **op_shares(step, args.reps)}
                results[f"diffusers UNet2DModel, batch {batch}, {precision}, {layout}"] = r
                print(f"\ndiffusers UNet2DModel, batch {batch}, {precision}, {layout} (ms per step):", flush=True)
                for k, v in r.items():
                    print(f"  {k:34s} {v:8.2f}", flush=True)
    for batch in (int(b) for b in args.batch.split(",")):
        for precision in args.precisions.split(","):
            r = breakdown(args.kind, data, batch, precision, args.device, args.reps, args.ops)
            results[f"batch {batch}, {precision}"] = r
            print(f"\n{args.kind} on {args.device}, batch {batch}, {precision} (ms per step):", flush=True)
            sections = sum(r[k] for k in SECTIONS)
            for k, v in r.items():
                print(f"  {k:34s} {v:8.2f}", flush=True)
            print(f"  {'sum of the sections':34s} {sections:8.2f}", flush=True)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": device, "torch": torch.__version__, "kind": args.kind,
                                    "reps": args.reps, "ms": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
