"""k-nearest-neighbour manifold metrics: precision/recall (Kynkäänniemi et al. 2019), density/coverage
(Naeem et al. 2020), and a nearest-neighbour memorisation check. Distances are Euclidean, float64, computed a
bounded block at a time (memory flat in n: 50,000 vs 50,000 fits in the same few hundred MiB as 5,000)."""

from __future__ import annotations

import torch

from ..errors import GenlabError
from .distances import as_features, feature_pair

BLOCK = 4096  # rows and columns of one block of distances: at most 4096 x 4096 float64 (128 MiB) at a time


def _reduce_rows(a: torch.Tensor, b: torch.Tensor, init, step) -> torch.Tensor:
    """A per-row reduction over the distance matrix dist(a, b), a block at a time, so memory stays bounded
    whatever len(a) and len(b): acc = init(rows); acc = step(acc, block, j) for each block of columns from j."""
    out = []
    for i in range(0, len(a), BLOCK):
        rows = a[i:i + BLOCK]
        acc = init(len(rows))
        for j in range(0, len(b), BLOCK):
            acc = step(acc, torch.cdist(rows, b[j:j + BLOCK]), j)
        out.append(acc)
    return torch.cat(out)


def nearest(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of each row of a to its nearest row of b."""
    inf = torch.full((), float("inf"), dtype=a.dtype)
    return _reduce_rows(a, b, lambda m: inf.expand(m), lambda acc, d, j: torch.minimum(acc, d.min(1).values))


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour in the same set (the point itself not counted)."""
    if not 1 <= k < len(x):
        raise GenlabError(f"k = {k} needs at least {k + 1} samples, got {len(x)}")
    def step(acc, d, j):  # the k + 1 smallest so far (the point itself, at distance 0, among them)
        both = d if acc.numel() == 0 else torch.cat([acc, d], 1)
        return both.topk(min(k + 1, both.shape[1]), dim=1, largest=False).values

    return _reduce_rows(x, x, lambda m: x.new_empty(m, 0), step)[:, k]


def _count_inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each point: how many balls B(centre_i, radius_i) contain it."""
    zero = torch.zeros((), dtype=torch.long)
    return _reduce_rows(points, centres, lambda m: zero.expand(m),
                        lambda acc, d, j: acc + (d <= radii[None, j:j + d.shape[1]]).sum(1))


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
    coverage = (nearest(r, f) <= radii).double().mean()
    return float(density), float(coverage)


def memorization(train_feats, test_feats, fake_feats, quantile: float = 0.05) -> dict[str, float]:
    """Are samples copies of training examples? Compares each sample's distance to its nearest training example
    with the same distance for held-out test examples. A ratio well below 1, or many samples closer than the
    test set's `quantile` distance, points to memorisation."""
    tr = as_features(train_feats, "train features")
    te, f = as_features(test_feats, "test features"), as_features(fake_feats, "fake features")
    if not tr.shape[1] == te.shape[1] == f.shape[1]:
        raise GenlabError("train, test and fake features must have the same dims")
    d_test, d_fake = nearest(te, tr), nearest(f, tr)
    thresh = torch.quantile(d_test, quantile)
    return {"median_nn_ratio": float(d_fake.median() / d_test.median()),
            f"frac_closer_than_test_q{quantile:g}": float((d_fake < thresh).double().mean()),
            "expected_frac": quantile}
