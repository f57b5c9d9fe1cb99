"""Differentially private training (DP-SGD; Abadi et al. 2016) of a single-loss model for TabularSynthesizer:
Opacus clips each row's gradient to `max_grad_norm` and adds Gaussian noise; batches are Poisson-sampled.

The privacy accountant is written here and checked against Opacus' own (tests): Rényi DP of the Poisson-
subsampled Gaussian mechanism at integer orders (Mironov, Talwar & Zhang 2019, Sec. 3.3), composed over the
steps, converted to (ε, δ) as Opacus does (Balle et al. 2020, Thm. 21). The noise multiplier is the smallest
that keeps ε at or below the target for the planned steps (bisection).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import GenlabError

ORDERS = tuple(range(2, 256))  # integer Rényi orders: the closed form below holds for these


def rdp_sampled_gaussian(q: float, sigma: float, alpha: int) -> float:
    """Rényi DP at order alpha of one step of the Poisson-sampled Gaussian mechanism (rate q, noise sigma):
    log(sum_k C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2))) / (alpha - 1)."""
    from scipy.special import gammaln, logsumexp

    if q == 0:
        return 0.0
    if q == 1:
        return alpha / (2 * sigma**2)
    k = np.arange(alpha + 1, dtype=np.float64)
    terms = (gammaln(alpha + 1) - gammaln(k + 1) - gammaln(alpha - k + 1) + k * math.log(q)
             + (alpha - k) * math.log1p(-q) + (k * k - k) / (2 * sigma**2))
    return float(logsumexp(terms)) / (alpha - 1)


def dp_epsilon(q: float, sigma: float, steps: int, delta: float, orders: tuple[int, ...] = ORDERS) -> float:
    """ε of `steps` DP-SGD steps at sample rate q and noise multiplier sigma, for this delta."""
    best = math.inf
    for a in orders:
        rdp = steps * rdp_sampled_gaussian(q, sigma, a)
        eps = rdp - (math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a)
        best = min(best, eps)
    return max(best, 0.0)


def noise_for(epsilon: float, q: float, steps: int, delta: float) -> float:
    """The smallest noise multiplier (to 0.1%) whose ε after `steps` is at most `epsilon`."""
    lo, hi = 0.05, 1.0
    while dp_epsilon(q, hi, steps, delta) > epsilon:
        hi *= 2
        if hi > 1e4:
            raise GenlabError(f"ε = {epsilon} is out of reach for {steps} steps at sample rate {q:.3g}: give fewer "
                              "steps, a smaller batch or a larger epsilon")
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if dp_epsilon(q, mid, steps, delta) <= epsilon else (mid, hi)
    return hi


def train_private(synth, data) -> tuple[float, float]:
    """Train synth.model_ on data with DP-SGD for synth.steps steps at ε = synth.epsilon; returns (ε spent, δ)."""
    try:
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer
    except ImportError:
        raise GenlabError("differentially private training needs opacus: pip install 'genlab[private]'") from None
    if synth.minutes is not None:
        raise GenlabError("DP training plans its noise for a number of steps: give steps, not minutes")
    from ..training.trainer import resolve_device

    n = len(data)
    delta = synth.delta if synth.delta is not None else 1 / (10 * n)
    batch = min(synth.batch_size, n)
    q, steps = batch / n, int(synth.steps)
    sigma = noise_for(float(synth.epsilon), q, steps, delta)
    model = synth.model_.to(resolve_device(synth.device))
    lr = model.train_defaults().get("lr", 1e-3)
    # parameters held by the model itself (the VAE's learned decoder sigma) have no per-row gradient in Opacus:
    # they stay at their initial value
    frozen = [p for p in model.parameters(recurse=False) if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    gsm = GradSampleModule(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = DPOptimizer(torch.optim.Adam(params, lr=lr), noise_multiplier=sigma,
                      max_grad_norm=synth.max_grad_norm, expected_batch_size=batch)
    g = torch.Generator().manual_seed(synth.seed_)
    torch.manual_seed(synth.seed_)
    y = data.y if data.y is not None else torch.zeros(n, dtype=torch.long)
    model.train()
    import warnings

    warnings.filterwarnings("ignore", message="Full backward hook is firing")  # Opacus' hooks on input layers
    for step in range(steps):
        take = torch.rand(n, generator=g) < q  # Poisson sampling: each row in the batch with probability q
        if not take.any():  # an empty batch is still a noisy release: the noise alone, as the accountant counts it
            for p in params:
                p.grad = torch.randn_like(p) * sigma * synth.max_grad_norm / batch
            opt.original_optimizer.step()
            opt.original_optimizer.zero_grad()
            continue
        x, yb = data.x[take].to(model.device), y[take].to(model.device)
        opt.zero_grad()
        loss, _ = gsm(x, yb, "model", step)
        if not torch.isfinite(loss):
            raise GenlabError(f"DP training diverged at step {step}; lower the learning rate or raise max_grad_norm")
        loss.backward()
        opt.step()
    gsm._close()  # the hooks off: the model samples as usual
    for p in frozen:
        p.requires_grad_(True)
    model.eval()
    synth.noise_multiplier_ = sigma
    return float(dp_epsilon(q, sigma, steps, delta)), float(delta)


__all__ = ["dp_epsilon", "noise_for", "rdp_sampled_gaussian", "train_private"]
