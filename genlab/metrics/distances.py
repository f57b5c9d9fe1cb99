"""Distribution distances on feature sets: Fréchet distance (FID) and kernel inception distance (KID)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import GenlabError


def as_features(x, name: str = "features") -> torch.Tensor:
    """Validate one feature set: (n, d), n >= 2, finite -> float64 tensor."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu().to(torch.float64)
    if t.dim() != 2:
        raise GenlabError(f"{name} must be a 2-D array (n, dims), got shape {tuple(t.shape)}")
    if len(t) < 2:
        raise GenlabError(f"{name} needs at least 2 samples, got {len(t)}")
    if not torch.isfinite(t).all():
        raise GenlabError(f"{name} hold NaN or inf values; check the model's samples")
    return t


def feature_pair(real, fake) -> tuple[torch.Tensor, torch.Tensor]:
    r, f = as_features(real, "real features"), as_features(fake, "fake features")
    if r.shape[1] != f.shape[1]:
        raise GenlabError(f"feature dims differ: real {r.shape[1]}, fake {f.shape[1]}; use the same extractor for both")
    return r, f


def gaussian_stats(feats) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (unbiased, float64) of (n, d) features."""
    f = as_features(feats)
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2}) (Heusel et al. 2017), float64.

    Tr (S1 S2)^{1/2} is the sum of square roots of the eigenvalues of S1 S2, which are real and >= 0 for
    covariance matrices; rounding can leave tiny negative or complex parts, so the complex square root is
    taken and its real part kept. That stays finite when a covariance is singular (n <= dims): no NaN, no
    regularisation; but FID is then strongly biased upward, so compare runs only at the same n."""
    mu1, mu2, s1, s2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, mu2, sigma1, sigma2))
    diff = (mu1 - mu2).square().sum()
    tr_sqrt = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    return float(diff + s1.trace() + s2.trace() - 2 * tr_sqrt)


def frechet_distance(real_feats, fake_feats) -> float:
    """FID between two feature sets (n, d) — Fréchet distance of their Gaussian fits."""
    r, f = feature_pair(real_feats, fake_feats)
    return frechet_from_stats(*gaussian_stats(r), *gaussian_stats(f))


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef: float = 1.0) -> torch.Tensor:
    """Unbiased MMD^2 with the polynomial kernel k(a, b) = (a.b / d + coef)^degree (Bińkowski et al. 2018)."""
    d = x.shape[1]
    kxx = (x @ x.T / d + coef) ** degree
    kyy = (y @ y.T / d + coef) ** degree
    kxy = (x @ y.T / d + coef) ** degree
    m, n = len(x), len(y)
    return ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
            - 2 * kxy.sum() / (m * n))


def kid(real_feats, fake_feats, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance: mean and std of the unbiased MMD^2 (cubic kernel) over `subsets` random
    subsets of `subset_size` from each set (smaller sets use all their samples). Unbiased at any n."""
    r, f = feature_pair(real_feats, fake_feats)
    if subsets < 1:
        raise GenlabError(f"subsets must be >= 1, got {subsets}")
    size = min(subset_size, len(r), len(f))
    g = torch.Generator().manual_seed(seed)
    vals = torch.stack([mmd2_unbiased(r[torch.randperm(len(r), generator=g)[:size]],
                                      f[torch.randperm(len(f), generator=g)[:size]]) for _ in range(subsets)])
    return float(vals.mean()), float(vals.std(unbiased=False)) if subsets > 1 else 0.0
