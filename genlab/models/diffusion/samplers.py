"""Samplers over a trained denoiser, any number of steps (Song et al. 2021's respacing of the T-step chain).

As diffusers separates schedulers from models, a sampler here is an object that knows which timesteps to visit,
`timesteps(T, steps)`, and how to take one step, `step(x_t, x0_hat, eps_hat, abar_t, abar_s, noise) -> x_s`,
holding whatever state it needs between steps; `sample_loop` runs any of them, with RePaint's inpainting on top.
`SAMPLERS` names them.

A run of K steps visits K timesteps, "trailing" spacing t_i = round(T - i T/K) - 1 (Lin et al. 2024), so it
always starts from t = T-1; its last step lands on t = 0, the least noisy level of the chain (std
sqrt(1 - abar_0) ~ 0.01, below one grey level), or on clean data (abar = 1) when it starts there. So no sampler
ends with a long first-order jump to E[x0 | x_t], which would shrink the samples' spread. Each step costs one
network evaluation (two with guidance).

- `ddpm`: ancestral sampling from the posterior q(x_s | x_t, x0_hat) of the respaced chain (Ho et al. 2020).
- `ddim`: x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z, sigma = eta * sigma_DDPM
  (Song et al. 2021); eta = 0 is deterministic, eta = 1 samples like ddpm.
- `dpm++`: DPM-Solver++(2M) in the data-prediction form (Lu et al. 2022), second order from the second step
  to the last but one; the last step, by far the longest in log-SNR, is first order (as diffusers'
  lower_order_final), since the second-order extrapolation overshoots there.
- `plms`: pseudo linear multistep (Liu et al. 2022), DDIM's transfer with a fourth-order Adams-Bashforth
  combination of the last four eps estimates.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch

from ...errors import GenlabError
from .schedule import NoiseSchedule, posterior

Denoise = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def timesteps(T: int, steps: int) -> list[int]:
    """The K network-evaluation points, trailing spacing: T-1 first."""
    if not 1 <= steps <= T:
        raise GenlabError(f"steps must be between 1 and the model's {T} diffusion steps, got {steps}")
    return [round(T - i * T / steps) - 1 for i in range(steps)]


class Sampler(ABC):
    """One way of walking the chain from noise to data. `eta` is the fresh noise a step adds where the sampler
    leaves it open (ddim); the others fix it. abar values are float64 Python floats, x and noise tensors."""

    name: ClassVar[str]

    def __init__(self, eta: float = 0.0):
        self.eta = eta
        self.reset()

    def timesteps(self, T: int, steps: int) -> list[int]:
        """The timesteps where the denoiser is evaluated, noisiest first."""
        return timesteps(T, steps)

    @property
    def needs_noise(self) -> bool:
        """Whether `step` takes a fresh standard-normal draw shaped like x."""
        return False

    def reset(self) -> None:  # noqa: B027 (a no-op unless the sampler keeps state between steps)
        """Forget what a previous run left behind (multistep samplers)."""

    @abstractmethod
    def step(self, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, a: float, a_prev: float,
             noise: torch.Tensor | None = None, final: bool = False) -> torch.Tensor:
        """x_s from x_t and the denoiser's (x0_hat, eps_hat) at x_t, for abar_t = a < abar_s = a_prev; `final`:
        the run's last step."""


class DDPMSampler(Sampler):
    name = "ddpm"

    @property
    def needs_noise(self) -> bool:
        return True

    def step(self, x, x0, eps, a, a_prev, noise=None, final=False):
        """A draw of q(x_s | x_t, x0_hat): the posterior `NoiseSchedule.posterior` gives, on the respaced chain."""
        mean, var = posterior(x0, x, a, a_prev)
        return mean + var**0.5 * noise if var > 0 else mean


class DDIMSampler(Sampler):
    name = "ddim"

    @property
    def needs_noise(self) -> bool:
        return self.eta > 0

    def step(self, x, x0, eps, a, a_prev, noise=None, final=False):
        sigma = self.eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5
        out = a_prev**0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps
        return out + sigma * noise if sigma > 0 else out


class DPMSolverPP2M(Sampler):
    """DPM-Solver++(2M): lambda = log(alpha / sigma), alpha = sqrt(abar), sigma = sqrt(1 - abar); the
    second-order correction uses the x0_hat of the previous timestep, kept between steps. A step repeated at its
    timestep (RePaint's resampling) is first order: after the re-noising, the previous x0_hat belongs to another
    trajectory, and extrapolating from it widened the inpainted spread 5x on the Gaussian test."""

    name = "dpm++"

    def reset(self) -> None:
        self._prev: tuple[float, torch.Tensor] | None = None  # (abar, x0_hat) of the previous timestep
        self._cur: tuple[float, torch.Tensor] | None = None  # ... and of this one

    def step(self, x, x0, eps, a, a_prev, noise=None, final=False):
        repeat = self._cur is not None and self._cur[0] == a  # RePaint: replace this level's x0, first order
        self._prev = None if repeat else self._cur
        self._cur = (a, x0)
        if a_prev >= 1.0:  # a step to sigma = 0 (only from t = 0): first order gives x0 itself
            return x0
        lam = lambda ab: 0.5 * math.log(ab / (1 - ab))
        sig, sig_prev, alpha_prev = (1 - a) ** 0.5, (1 - a_prev) ** 0.5, a_prev**0.5
        h = lam(a_prev) - lam(a)
        d = x0
        if self._prev is not None and not final:
            a_before, prev_x0 = self._prev
            r = (lam(a) - lam(a_before)) / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
        return (sig_prev / sig) * x - alpha_prev * math.expm1(-h) * d


class PLMS(Sampler):
    """Pseudo linear multistep (Liu et al. 2022, PNDM's PLMS; Stable Diffusion's `plms`): DDIM's deterministic
    transfer x_s = sqrt(abar_s) x0' + sqrt(1 - abar_s) eps', where eps' is the fourth-order Adams-Bashforth
    combination of this timestep's eps_hat and the previous three, (55 e_0 - 59 e_1 + 37 e_2 - 9 e_3) / 24, and
    x0' the x0 that eps' implies at x_t. While fewer than four are kept, the lower orders: e_0, then
    (3 e_0 - e_1) / 2, then (23 e_0 - 16 e_1 + 5 e_2) / 12 (PNDM starts with Runge-Kutta steps instead, at
    three extra network evaluations each; this keeps one per step)."""

    name = "plms"
    COEFFS = ((1.0,), (1.5, -0.5), (23 / 12, -16 / 12, 5 / 12), (55 / 24, -59 / 24, 37 / 24, -9 / 24))

    def reset(self) -> None:
        self._eps: list[torch.Tensor] = []  # eps_hat of the timesteps visited, newest first (at most 4)
        self._a: float | None = None

    def step(self, x, x0, eps, a, a_prev, noise=None, final=False):
        if self._a == a:  # a repeat of the same timestep (RePaint): replace its eps
            self._eps[0] = eps
        else:
            self._eps = [eps, *self._eps[:3]]
            self._a = a
        e = sum(c * past for c, past in zip(self.COEFFS[len(self._eps) - 1], self._eps, strict=True))
        x0 = (x - (1 - a) ** 0.5 * e) / a**0.5
        return x0 if a_prev >= 1.0 else a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * e


SAMPLERS: dict[str, type[Sampler]] = {c.name: c for c in (DDPMSampler, DDIMSampler, DPMSolverPP2M, PLMS)}


def sampler_class(name: str) -> type[Sampler]:
    if name not in SAMPLERS:
        raise GenlabError(f"unknown sampler '{name}': use one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def start_timesteps(ts: list[int], start: int | None) -> list[int]:
    """The timesteps of a walk that begins at `start` (None: all of `ts`): start, then those of ts below it."""
    return ts if start is None else [start] + [t for t in ts if t < start]


def sample_loop(denoise: Denoise, schedule: NoiseSchedule, x: torch.Tensor, sampler: Sampler, steps: int,
                g: torch.Generator, known: Callable | None = None, resample: int = 1,
                progress: Callable | None = None, start: int | None = None) -> torch.Tensor:
    """Run `sampler` from x = x_T (pure noise) through its timesteps, then to t = 0. `denoise(x, t) ->
    (x0_hat, eps_hat)` at integer timesteps t (B,). `known(x_s, s, g)` (inpainting) overwrites the known part
    of each intermediate x_s; `resample` > 1 re-noises x_s to x_t and repeats the step (RePaint, Lugmayr et
    al. 2022), so the generated part harmonises with the known one. `start` (SDEdit): x is x_start, a noised
    input, and the walk begins there, skipping the sampler's timesteps above it."""
    ts = start_timesteps(sampler.timesteps(schedule.steps, steps), start)
    draw = lambda: torch.randn(x.shape, generator=g).to(x.device, x.dtype)
    sampler.reset()
    for i, t in enumerate(ts):
        s = ts[i + 1] if i + 1 < len(ts) else (0 if t > 0 else -1)
        a, a_prev = schedule.abar_at(t), schedule.abar_at(s)
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        for r in range(resample):
            x0, eps = denoise(x, tt)
            x_new = sampler.step(x, x0, eps, a, a_prev, draw() if sampler.needs_noise else None,
                                 final=i == len(ts) - 1)
            if known is not None:
                x_new = known(x_new, s, g)
            if r < resample - 1 and s >= 0:  # back to x_t: q(x_t | x_s) = N(sqrt(a/a_s) x_s, (1 - a/a_s) I)
                x = (a / a_prev) ** 0.5 * x_new + (1 - a / a_prev) ** 0.5 * draw()
            else:
                x = x_new
                break
        if progress is not None:
            progress()
    return x
