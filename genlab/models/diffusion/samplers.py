"""Samplers over a trained denoiser, any number of steps (Song et al. 2021's respacing of the T-step chain).

`denoise(x, t) -> (x0_hat, eps_hat)` is the model at integer timestep t (B,). A run of K steps visits K
timesteps, "trailing" spacing t_i = round(T - i T/K) - 1 (Lin et al. 2024), so it always starts from t = T-1;
its last step lands on t = 0, the least noisy level of the chain (std sqrt(1 - abar_0) ~ 0.01, below one grey
level), or on clean data (abar = 1) when it starts there. So no sampler ends with a long first-order jump to
E[x0 | x_t], which would shrink the samples' spread. Each step costs one network evaluation (two with guidance).

- `ddpm`: ancestral sampling from the posterior q(x_s | x_t, x0_hat) of the respaced chain (Ho et al. 2020).
- `ddim`: x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z, sigma = eta * sigma_DDPM
  (Song et al. 2021); eta = 0 is deterministic, eta = 1 samples like ddpm.
- `dpm++`: DPM-Solver++(2M) in the data-prediction form (Lu et al. 2022), second order from the second step
  to the last but one; the last step, by far the longest in log-SNR, is first order (as diffusers'
  lower_order_final), since the second-order extrapolation overshoots there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ...errors import GenlabError
from .schedule import NoiseSchedule

SAMPLERS = ("ddpm", "ddim", "dpm++")
Denoise = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def timesteps(T: int, steps: int) -> list[int]:
    """The K network-evaluation points, trailing spacing: T-1 first."""
    if not 1 <= steps <= T:
        raise GenlabError(f"steps must be between 1 and the model's {T} diffusion steps, got {steps}")
    return [round(T - i * T / steps) - 1 for i in range(steps)]


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise GenlabError(f"unknown sampler '{name}': use one of {', '.join(SAMPLERS)}")


def _abar(s: NoiseSchedule, t: int) -> float:
    return 1.0 if t < 0 else float(s.alphas_cumprod[t])


def ddpm_step(x, x0, eps, a: float, a_prev: float, noise):
    """Posterior q(x_s | x_t, x0) of the respaced chain (beta' = 1 - abar_t / abar_s): mean + std * noise."""
    beta = 1 - a / a_prev
    mean = (a_prev**0.5 * beta / (1 - a)) * x0 + ((1 - beta) ** 0.5 * (1 - a_prev) / (1 - a)) * x
    var = beta * (1 - a_prev) / (1 - a)
    return mean + var**0.5 * noise if var > 0 else mean


def ddim_step(x, x0, eps, a: float, a_prev: float, noise, eta: float):
    sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5
    out = a_prev**0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps
    return out + sigma * noise if sigma > 0 else out


def sample_loop(denoise: Denoise, schedule: NoiseSchedule, x: torch.Tensor, sampler: str, steps: int,
                g: torch.Generator, eta: float = 0.0, known: Callable | None = None, resample: int = 1,
                progress: Callable | None = None) -> torch.Tensor:
    """Run `sampler` from x = x_T (pure noise) through `timesteps(T, steps)`, then to t = 0.
    `known(x_s, s, g)` (inpainting) overwrites the known part of each intermediate x_s; `resample` > 1
    re-noises x_s to x_t and repeats the step (RePaint, Lugmayr et al. 2022), so the generated part
    harmonises with the known one."""
    check_sampler(sampler)
    ts = timesteps(schedule.steps, steps)
    noise = lambda: torch.randn(x.shape, generator=g).to(x.device, x.dtype)
    prev_x0 = None
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else (0 if t > 0 else -1)
        a, a_prev = _abar(schedule, t), _abar(schedule, s)
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        for r in range(resample):
            x0, eps = denoise(x, tt)
            if sampler == "ddpm":
                x_new = ddpm_step(x, x0, eps, a, a_prev, noise())
            elif sampler == "ddim":
                x_new = ddim_step(x, x0, eps, a, a_prev, noise() if eta > 0 else None, eta)
            else:
                second = 0 < i < len(ts) - 1
                x_new = dpm_pp_2m_step(x, x0, prev_x0, a, a_prev, _abar(schedule, ts[i - 1]) if second else None)
            if known is not None:
                x_new = known(x_new, s, g)
            if r < resample - 1 and s >= 0:  # back to x_t: q(x_t | x_s) = N(sqrt(a/a_s) x_s, (1 - a/a_s) I)
                x = (a / a_prev) ** 0.5 * x_new + (1 - a / a_prev) ** 0.5 * noise()
            else:
                x = x_new
                break
        prev_x0 = x0
        if progress is not None:
            progress()
    return x


def dpm_pp_2m_step(x, x0, prev_x0, a: float, a_prev: float, a_before: float | None):
    """One DPM-Solver++(2M) step from abar a to abar a_prev (a_before: abar of the previous step, for the
    second-order correction). lambda = log(alpha / sigma), alpha = sqrt(abar), sigma = sqrt(1 - abar)."""
    if a_prev >= 1.0:  # a step to sigma = 0 (only from t = 0): first order gives x0 itself
        return x0
    lam = lambda ab: 0.5 * math.log(ab / (1 - ab))
    sig, sig_prev, alpha_prev = (1 - a) ** 0.5, (1 - a_prev) ** 0.5, a_prev**0.5
    h = lam(a_prev) - lam(a)
    d = x0
    if prev_x0 is not None and a_before is not None:
        r = (lam(a) - lam(a_before)) / h
        d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
    return (sig_prev / sig) * x - alpha_prev * math.expm1(-h) * d
