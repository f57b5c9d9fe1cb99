"""Numeric precision of the networks: fp32, or autocast to bf16 / fp16 with float32 master weights.

`auto` picks bf16 where the hardware computes it natively — a CPU with AVX512-BF16 or AMX-BF16 (Zen 4 and later,
Intel Cooper Lake and Sapphire Rapids and later), or a CUDA GPU that supports it (Ampere and later) — and fp32
elsewhere; fp16 (with a gradient scaler) is for CUDA only. Under autocast only the networks' matrix products and
convolutions run in the lower precision: every family casts its networks' outputs to float32 (`fp32`) before its
losses, and likelihoods, KL terms and noise schedules are computed in float32 / float64 with autocast off
(`exact`), so an evaluated log-likelihood is the same number in every precision.
"""

from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path

import torch

from .errors import GenlabError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 (/proc/cpuinfo flags)
ARM_BF16_FLAGS = ("bf16",)  # aarch64 (/proc/cpuinfo Features: FEAT_BF16)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (Linux); empty where it does not say."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_native_bf16() -> str | None:
    """The flag that says this CPU computes bfloat16 natively (e.g. 'avx512_bf16'), or None."""
    flags = cpu_flags()
    wanted = ARM_BF16_FLAGS if platform.machine().lower() in ("aarch64", "arm64") else CPU_BF16_FLAGS
    return next((f for f in wanted if f in flags), None)


def cuda_bf16(device: torch.device) -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve(precision: str, device: torch.device | str) -> tuple[str, str]:
    """(fp32 | bf16 | fp16, why) for the option `precision` on `device`; an impossible choice is a one-line
    error."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise GenlabError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision == "fp16" and device.type != "cuda":
        raise GenlabError(f"precision fp16 needs a CUDA GPU (it trains with a gradient scaler); on {device.type} use "
                          "bf16 or fp32")
    if precision != "auto":
        if precision == "bf16" and device.type == "cpu" and not cpu_native_bf16():
            return precision, "asked for; this CPU has no native bfloat16, so it is emulated and likely slower"
        return precision, "asked for"
    if device.type == "cpu":
        flag = cpu_native_bf16()
        return ("bf16", f"auto: this CPU has native bfloat16 ({flag})") if flag else \
            ("fp32", "auto: this CPU has no native bfloat16")
    if device.type == "cuda":
        return ("bf16", "auto: this GPU supports bfloat16") if cuda_bf16(device) else \
            ("fp32", "auto: this GPU has no bfloat16")
    return "fp32", f"auto: float32 on {device.type}"


def autocast(precision: str, device: torch.device | str):
    """A context running the networks in `precision` (resolved: fp32 | bf16 | fp16) on `device`."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision])


def fp32(x: torch.Tensor) -> torch.Tensor:
    """A network's output as float32 (a no-op outside autocast): losses and likelihoods start from here."""
    return x.float() if x.is_floating_point() and x.dtype != torch.float32 and x.dtype != torch.float64 else x


def autocast_off(device: torch.device | str):
    """A context with autocast disabled on `device`'s type (nothing to disable where it has no autocast)."""
    try:
        return torch.autocast(torch.device(device).type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def exact(fn):
    """Run a method of a model (likelihoods, bounds) with autocast off: the same numbers in every precision."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        with autocast_off(self.device):
            return fn(self, *args, **kwargs)

    return wrapper
