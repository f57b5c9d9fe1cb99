"""Noise schedules and the closed forms of the Gaussian diffusion process (Ho et al. 2020), in float64.

x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, with abar_t = prod_{s<=t} (1 - beta_s), t = 0..T-1.
"""

from __future__ import annotations

import math

import torch

from ...errors import GenlabError

SCHEDULES = ("linear", "cosine", "sigmoid")


def _betas_from_alpha_bar(f, steps: int) -> torch.Tensor:
    """beta_t = 1 - abar(t+1)/abar(t) for a continuous abar on [0, 1], clipped at 0.999 (Nichol & Dhariwal 2021)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    ab = f(t) / f(torch.zeros((), dtype=torch.float64))
    return (1 - ab[1:] / ab[:-1]).clamp(max=0.999)


def make_betas(kind: str, steps: int) -> torch.Tensor:
    if kind == "linear":  # Ho et al. 2020, scaled so any T keeps the same abar_T as T = 1000
        scale = 1000 / steps
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
    if kind == "cosine":  # Nichol & Dhariwal 2021, offset s = 0.008
        s = 0.008
        return _betas_from_alpha_bar(lambda t: torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2, steps)
    if kind == "sigmoid":  # Jabri et al. 2022 / Chen 2023: start -3, end 3, tau 1
        start, end, tau = -3.0, 3.0, 1.0
        v0, v1 = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64)), torch.sigmoid(
            torch.tensor(end / tau, dtype=torch.float64))
        return _betas_from_alpha_bar(lambda t: (v1 - torch.sigmoid((t * (end - start) + start) / tau)) / (v1 - v0),
                                     steps)
    raise GenlabError(f"unknown noise schedule '{kind}': use one of {', '.join(SCHEDULES)}")


class NoiseSchedule:
    """betas, alphas_cumprod (float64, length `steps`) and the process's closed forms.

    >>> s = NoiseSchedule("cosine", 1000); s.alphas_cumprod[-1]  # nearly pure noise at t = T-1
    """

    def __init__(self, kind: str = "linear", steps: int = 1000):
        if steps < 1:
            raise GenlabError(f"the number of diffusion steps must be >= 1, got {steps}")
        self.kind, self.steps = kind, steps
        self.betas = make_betas(kind, steps)
        self.alphas = 1 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, 0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self._tables: dict[torch.device, torch.Tensor] = {}

    def _on(self, device: torch.device) -> torch.Tensor:
        """(3, T) betas, alphas_cumprod, alphas_cumprod_prev on `device`, copied once per device."""
        if device not in self._tables:
            self._tables[device] = torch.stack([self.betas, self.alphas_cumprod, self.alphas_cumprod_prev]).to(device)
        return self._tables[device]

    def __repr__(self) -> str:
        return f"NoiseSchedule('{self.kind}', {self.steps})"

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """abar_t for a batch of integer t (B,), shaped to broadcast against `like` (B, ...), in like's dtype."""
        a = self._on(t.device)[1][t]
        return a.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        a = self._on(t.device)[1][t]
        return a / (1 - a)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A draw of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)."""
        a = self.abar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 6-7); variance shaped like abar."""
        ab = self.abar(t, xt)
        table = self._on(t.device)
        ab_prev = table[2][t].to(xt.dtype).view_as(ab)
        beta = table[0][t].to(xt.dtype).view_as(ab)
        mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * xt
        return mean, beta * (1 - ab_prev) / (1 - ab)

    # ---- conversions between the prediction targets (v: Salimans & Ho 2022)
    @staticmethod
    def to_x0_eps(pred: torch.Tensor, xt: torch.Tensor, a: torch.Tensor, target: str):
        """(x0, eps) from a network output `pred` of kind target (eps | x0 | v) at abar `a`."""
        sa, s1 = a.sqrt(), (1 - a).sqrt()
        if target == "eps":
            return (xt - s1 * pred) / sa, pred
        if target == "x0":
            return pred, (xt - sa * pred) / s1
        x0 = sa * xt - s1 * pred  # v = sqrt(a) eps - sqrt(1-a) x0
        return x0, s1 * xt + sa * pred

    @staticmethod
    def target(x0: torch.Tensor, noise: torch.Tensor, a: torch.Tensor, target: str) -> torch.Tensor:
        if target == "eps":
            return noise
        if target == "x0":
            return x0
        return a.sqrt() * noise - (1 - a).sqrt() * x0
