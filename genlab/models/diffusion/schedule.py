"""Noise schedules and the closed forms of the Gaussian diffusion process (Ho et al. 2020), in float64.

Discrete time: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, abar_t = prod_{s<=t} (1 - beta_s), t = 0..T-1.

Continuous time, u in [0, 1] (for samplers and consistency models that pick any noise level): the discrete chain
interpolated, log abar piecewise linear between the knots u = (t+1)/T, where it is the table's abar_t, and
u = 0, where abar = 1 (clean data). Piecewise-linear log abar is a piecewise-constant beta(u), the continuous
chain whose steps are the discrete ones, so a model trained on the table sees the same process; it is exact at
every knot for every schedule. For cosine and sigmoid, whose betas come from a closed-form abar(u), the
interpolant differs from that closed form by O(1/T^2) between knots, and at the last knots where the betas were
clipped at 0.999. Noise levels are reported as alpha, sigma (x_u = alpha x_0 + sigma eps), the log-SNR
lambda = log(alpha^2 / sigma^2), and the variance-exploding sigma / alpha = exp(-lambda / 2) (Karras et al. 2022;
Song et al. 2023's consistency models use sigma / alpha in [0.002, 80]).
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


def posterior(x0, xt, a, a_prev):
    """Mean and variance of q(x_s | x_t, x_0) between any two levels abar_t = a < abar_s = a_prev (Ho et al.
    2020, eq. 6-7, with the one-step beta' = 1 - a / a_prev of a respaced chain). a, a_prev: Python floats or
    float64 tensors that broadcast against x (the coefficients are computed in float64, then cast to x's dtype).
    The one implementation: `NoiseSchedule.posterior` and the ddpm sampler both call it."""
    beta = 1 - a / a_prev
    c0 = a_prev**0.5 * beta / (1 - a)  # of x_0
    ct = (1 - beta) ** 0.5 * (1 - a_prev) / (1 - a)  # of x_t
    var = beta * (1 - a_prev) / (1 - a)
    if isinstance(c0, torch.Tensor):
        c0, ct, var = c0.to(xt.dtype), ct.to(xt.dtype), var.to(xt.dtype)
    return c0 * x0 + ct * xt, var


class NoiseSchedule:
    """betas, alphas_cumprod (float64, length `steps`) and the process's closed forms, in discrete and in
    continuous time.

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
        self._log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), self.alphas_cumprod.log()])  # knots u = i/T

    def _on(self, device: torch.device) -> torch.Tensor:
        """alphas_cumprod (T,) on `device`, copied once per device."""
        if device not in self._tables:
            self._tables[device] = self.alphas_cumprod.to(device)
        return self._tables[device]

    def __repr__(self) -> str:
        return f"NoiseSchedule('{self.kind}', {self.steps})"

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """abar_t for a batch of integer t (B,), shaped to broadcast against `like` (B, ...), in like's dtype."""
        a = self._on(t.device)[t]
        return a.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        a = self._on(t.device)[t]
        return a / (1 - a)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A draw of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)."""
        a = self.abar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def abar_at(self, t: int) -> float:
        """abar_t of one integer timestep as a Python float (float64); t = -1 is clean data, abar = 1."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
                  s: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_s | x_t, x_0), s < t (default s = t - 1; s = -1: clean data) for a batch of
        integer t (B,); variance shaped like abar. Coefficients in float64, then in x's dtype."""
        s = t - 1 if s is None else s
        table = self._on(t.device)
        a = table[t]
        a_prev = torch.where(s < 0, torch.ones_like(a), table[s.clamp(min=0)])
        shape = (-1, *([1] * (xt.dim() - 1)))
        return posterior(x0, xt, a.view(shape), a_prev.view(shape))

    # ---- continuous time u in [0, 1]: the chain interpolated (see the module docstring)
    def _check_u(self, u) -> torch.Tensor:
        u = torch.as_tensor(u, dtype=torch.float64)
        if not bool(((u >= 0) & (u <= 1)).all()):
            raise GenlabError(f"continuous time must be in [0, 1], got {u.min().item()}..{u.max().item()}")
        return u

    def log_alpha_bar(self, u) -> torch.Tensor:
        """log abar(u), float64, shaped like u: exact at the knots u = (t+1)/T (abar_t) and u = 0 (0)."""
        u = self._check_u(u)
        pos = u * self.steps
        i = pos.floor().clamp(max=self.steps - 1).long()
        return torch.lerp(self._log_abar[i], self._log_abar[i + 1], pos - i)

    def alpha_sigma(self, u) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, sigma) = (sqrt(abar(u)), sqrt(1 - abar(u))), float64; sigma to full precision near u = 0."""
        la = self.log_alpha_bar(u)
        return (0.5 * la).exp(), (-torch.expm1(la)).sqrt()

    def log_snr(self, u) -> torch.Tensor:
        """lambda(u) = log(abar / (1 - abar)), float64, decreasing from +inf at u = 0."""
        la = self.log_alpha_bar(u)
        return la - torch.log(-torch.expm1(la))

    def sigma_ve(self, u) -> torch.Tensor:
        """sigma(u) / alpha(u) = exp(-lambda / 2): the noise level of the variance-exploding form x / alpha."""
        return (-0.5 * self.log_snr(u)).exp()

    def t_from_log_snr(self, lam) -> torch.Tensor:
        """The inverse of log_snr: u in [0, 1] (float64) with log_snr(u) = lam, for lam >= log_snr(1)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo = float(self.log_snr(1.0))
        if not bool((lam >= lo).all()):
            raise GenlabError(f"log-SNR {lam.min().item():.4g} is noisier than this schedule reaches ({lo:.4g})")
        la = torch.nn.functional.logsigmoid(lam)  # log abar = log(1 / (1 + e^-lambda))
        knots = -self._log_abar  # increasing from 0
        i = (torch.searchsorted(knots, -la) - 1).clamp(0, self.steps - 1)
        frac = (la - self._log_abar[i]) / (self._log_abar[i + 1] - self._log_abar[i])
        return ((i + frac.clamp(0, 1)) / self.steps).clamp(0, 1)

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
