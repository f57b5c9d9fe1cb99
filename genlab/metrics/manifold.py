"""k-nearest-neighbour manifold metrics: precision/recall (Kynkäänniemi et al. 2019), density/coverage
(Naeem et al. 2020), and a nearest-neighbour memorisation check. Distances are Euclidean, float64, chunked."""

from __future__ import annotations

import torch

from ..errors import GenlabError
from .distances import as_features, feature_pair

CHUNK = 2048


def _min_over(a: torch.Tensor, b: torch.Tensor, fn) -> torch.Tensor:
    """Row-chunked reduction fn(dist(a_chunk, b)) -> (n_a, ...)."""
    return torch.cat([fn(torch.cdist(a[i:i + CHUNK], b)) for i in range(0, len(a), CHUNK)])


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour in the same set (the point itself not counted)."""
    if not 1 <= k < len(x):
        raise GenlabError(f"k = {k} needs at least {k + 1} samples, got {len(x)}")
    return _min_over(x, x, lambda d: d.topk(k + 1, dim=1, largest=False).values[:, k])


def _count_inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each point: how many balls B(centre_i, radius_i) contain it."""
    return _min_over(points, centres, lambda d: (d <= radii[None]).sum(1))


def precision_recall(real_feats, fake_feats, k: int = 3) -> tuple[float, float]:
    """Precision: share of fakes inside the real manifold (union of k-NN balls of reals); recall: share of
    reals inside the fake manifold."""
    r, f = feature_pair(real_feats, fake_feats)
    precision = (_count_inside(f, r, knn_radii(r, k)) > 0).double().mean()
    recall = (_count_inside(r, f, knn_radii(f, k)) > 0).double().mean()
    return float(precision), float(recall)


def density_coverage(real_feats, fake_feats, k: int = 5) -> tuple[float, float]:
    """Density: mean number of real k-NN balls holding each fake, over k; coverage: share of reals whose
    k-NN ball holds at least one fake."""
    r, f = feature_pair(real_feats, fake_feats)
    radii = knn_radii(r, k)
    density = _count_inside(f, r, radii).double().sum() / (k * len(f))
    nearest_fake = _min_over(r, f, lambda d: d.min(1).values)
    coverage = (nearest_fake <= radii).double().mean()
    return float(density), float(coverage)


def memorization(train_feats, test_feats, fake_feats, quantile: float = 0.05) -> dict[str, float]:
    """Are samples copies of training examples? Compares each sample's distance to its nearest training example
    with the same distance for held-out test examples. A ratio well below 1, or many samples closer than the
    test set's `quantile` distance, points to memorisation."""
    tr = as_features(train_feats, "train features")
    te, f = as_features(test_feats, "test features"), as_features(fake_feats, "fake features")
    if not tr.shape[1] == te.shape[1] == f.shape[1]:
        raise GenlabError("train, test and fake features must have the same dims")
    d_test = _min_over(te, tr, lambda d: d.min(1).values)
    d_fake = _min_over(f, tr, lambda d: d.min(1).values)
    thresh = torch.quantile(d_test, quantile)
    return {"median_nn_ratio": float(d_fake.median() / d_test.median()),
            f"frac_closer_than_test_q{quantile:g}": float((d_fake < thresh).double().mean()),
            "expected_frac": quantile}
