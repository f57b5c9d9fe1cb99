"""The variational bound on a diffusion model's log-likelihood (Ho et al. 2020, eq. 5), in float64:

    -log p(x_0) <= KL(q(x_T | x_0) || N(0, I))                                  the prior term
                 + sum_{t=2..T} E_q KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))  the denoising terms
                 + E_q -log p(x_0 | x_1)                                          the decoder term

in Ho et al.'s 1-based steps (genlab's timestep t is their t + 1). p(x_{t-1} | x_t) is the ddpm sampler's step:
the posterior q(x_{t-1} | x_t, x0_hat) around the network's x0 estimate, with the posterior's variance (Ho et
al.'s "fixed small" sigma^2 = beta-tilde), so each denoising term is a KL between two Gaussians of equal variance,
|mean_q - mean_p|^2 / (2 var). The decoder is a Gaussian around x0_hat with variance beta-tilde_2 (at t = 1 the
posterior variance is 0; Nichol & Dhariwal 2021 clip it to the next one, as here), discretised over the
image's bins for images (Ho et al. 2020, §3.3: the bound is then on the discrete image's log P), a density for
vectors and tables.

The T - 1 denoising terms cost one network evaluation each; `terms` < T - 1 estimates their sum without bias by
stratified sampling: the steps 2..T split into `terms` runs of geometrically growing length (the terms fall
about as 1/t), one step drawn uniformly in each, weighted by the run's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.special import log_ndtr

from .schedule import NoiseSchedule, posterior


def log_diff_ndtr(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Phi(hi) - Phi(lo)) for lo < hi, accurate in both tails (lo = -inf and hi = inf allowed)."""
    flip = lo > 0  # Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi): keep both arguments on the left side
    a, b = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
    la, lb = log_ndtr(a), log_ndtr(b)
    return lb + torch.log1p(-torch.exp(la - lb).clamp(max=1.0))


def discretised_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float, half_bin: float,
                                  lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    """log P(x) of values x on a grid of bins [x - half_bin, x + half_bin] under N(mean, std^2), the edge bins
    reaching to -inf below lo and +inf above hi (Ho et al. 2020, eq. 13): elementwise, float64."""
    x, mean = x.double(), mean.double()
    left = torch.where(x <= lo + 1e-6, -math.inf, (x - half_bin - mean) / std)
    right = torch.where(x >= hi - 1e-6, math.inf, (x + half_bin - mean) / std)
    return log_diff_ndtr(left, right)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, var: float) -> torch.Tensor:
    """log N(x; mean, var), elementwise, float64."""
    return -0.5 * ((x.double() - mean.double()) ** 2 / var + math.log(2 * math.pi * var))


def strata(T: int, terms: int) -> list[tuple[int, int]]:
    """The runs (first, length) of genlab timesteps 1..T-1 (Ho et al.'s 2..T) that the denoising terms are drawn
    from, of geometrically growing length (one step each where that is shorter than one step): a trained model's
    terms fall steeply with t, roughly as 1/t, so each run holds a similar share of the sum and the terms within
    a run differ by a bounded factor. One run per step when terms >= T - 1."""
    terms = min(terms, T - 1)
    edges = [1]
    for i in range(1, terms + 1):
        edges.append(max(edges[-1] + 1, round(T ** (i / terms))))
    return [(a, b - a) for a, b in zip(edges[:-1], edges[1:], strict=True)]


@torch.no_grad()
def variational_bound(x0: torch.Tensor, schedule: NoiseSchedule, denoise: Callable, terms: int,
                      half_bin: float | None) -> dict[str, torch.Tensor]:
    """The bound's terms (B,) in nats for clean data x0 (B, ...) in the diffusion's space: prior, denoising (the
    sum over steps, estimated from `terms` steps), decoder, and their sum `nll` (an upper bound on -log p(x0)).
    denoise: (x_t, t) -> (x0_hat, eps_hat), the sampler's denoiser; half_bin: the half-width of a grid bin for
    discrete data (images), None for a density."""
    B, T = len(x0), schedule.steps
    sum_dims = tuple(range(1, x0.dim()))
    x = x0.double()

    a_T = schedule.abar_at(T - 1)  # KL(N(sqrt(a) x0, 1 - a) || N(0, 1)) per dimension
    prior = 0.5 * (a_T * x**2 + (1 - a_T) - 1 - math.log(1 - a_T)).sum(sum_dims)

    def at(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, x0_hat) at genlab timesteps t (B,), with fresh noise."""
        xt = schedule.q_sample(x0, t, torch.randn_like(x0))
        return xt, denoise(xt, t)[0]

    denoising = torch.zeros(B, dtype=torch.float64, device=x0.device)
    for first, length in strata(T, terms):
        t = first + torch.randint(length, (B,)).to(x0.device)  # a step per example, one network call per run
        xt, x0_hat = at(t)
        mean_q, var = schedule.posterior(x, xt.double(), t)
        mean_p, _ = schedule.posterior(x0_hat.double(), xt.double(), t)
        denoising += length * (((mean_q - mean_p) ** 2).sum(sum_dims) / (2 * var.flatten()))

    # the decoder p(x0 | x at genlab t = 0): variance beta-tilde of genlab t = 1 (T = 1: beta)
    _, x0_hat = at(torch.zeros(B, dtype=torch.long, device=x0.device))
    var = posterior(0.0, 0.0, schedule.abar_at(1), schedule.abar_at(0))[1] if T > 1 else 1 - schedule.abar_at(0)
    if half_bin is None:
        decoder = -gaussian_log_prob(x, x0_hat, var).sum(sum_dims)
    else:
        decoder = -discretised_gaussian_log_prob(x, x0_hat, math.sqrt(var), half_bin).sum(sum_dims)
    return {"prior": prior, "denoising": denoising, "decoder": decoder, "nll": prior + denoising + decoder}
