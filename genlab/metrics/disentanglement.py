"""Disentanglement metrics: how well single code dimensions capture single ground-truth factors of variation.

Every function takes `z` (N, D), the codes an encoder gives N items, and `factors` (N, K), each item's integer
factor values (shape, scale, x, ...); groups that share a factor are drawn from the N items themselves, so the
items should cover the factor grid (a full-factorial dataset does). Higher is better for every score.

- beta_vae_score: Higgins et al. (2017) §3: a linear classifier names the factor held fixed in a batch of pairs
  from the mean absolute code difference of the pairs; its test accuracy (chance: 1 / K).
- factor_vae_score: Kim & Mnih (2018) §4: in a batch sharing one factor, the code dimension of least variance
  (codes scaled by their std over the data) votes for that factor; the accuracy of the majority vote.
- mig: Chen et al. (2018) §4.1: per factor, the gap between the two largest mutual informations with single code
  dimensions, over the factor's entropy; averaged over factors (0 = no gap, 1 = one dimension holds it all).
- dci: Eastwood & Williams (2018): from the importances of gradient-boosted trees predicting each factor from
  the codes, disentanglement (each dimension for one factor), completeness (each factor in one dimension) and
  informativeness (the trees' test accuracy).
"""

from __future__ import annotations

import numpy as np

from ..errors import GenlabError


def _check(z, factors) -> tuple[np.ndarray, np.ndarray]:
    z, f = np.asarray(z, dtype=np.float64), np.asarray(factors)
    if z.ndim != 2 or f.ndim != 2 or len(z) != len(f) or len(z) < 2:
        raise GenlabError(f"codes (N, D) and factors (N, K) of the same N >= 2 are needed, got {z.shape} and "
                          f"{f.shape}")
    if not np.isfinite(z).all():
        raise GenlabError("the codes hold NaN or inf values")
    return z, f.astype(np.int64)


def _varying(f: np.ndarray) -> list[int]:
    """The factors with more than one value (a constant factor cannot be identified)."""
    return [k for k in range(f.shape[1]) if len(np.unique(f[:, k])) > 1]


def _group(f: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The indices of the items that share a random value of factor k."""
    return np.flatnonzero(f[:, k] == rng.choice(np.unique(f[:, k])))


def beta_vae_score(z, factors, n_train: int = 2000, n_test: int = 1000, batch: int = 64, seed: int = 0) -> float:
    from sklearn.linear_model import LogisticRegression

    z, f = _check(z, factors)
    ks, rng = _varying(f), np.random.default_rng(seed)

    def point():
        k = rng.choice(ks)
        group = _group(f, k, rng)
        a, b = rng.choice(group, batch), rng.choice(group, batch)  # `batch` pairs that share factor k
        return np.abs(z[a] - z[b]).mean(0), k

    train = [point() for _ in range(n_train)]
    test = [point() for _ in range(n_test)]
    clf = LogisticRegression(max_iter=2000).fit(np.stack([x for x, _ in train]), [k for _, k in train])
    return float(clf.score(np.stack([x for x, _ in test]), [k for _, k in test]))


def factor_vae_score(z, factors, n_train: int = 1000, n_test: int = 500, batch: int = 64, min_std: float = 0.05,
                     seed: int = 0) -> float:
    z, f = _check(z, factors)
    ks, rng = _varying(f), np.random.default_rng(seed)
    std = z.std(0)
    active = np.flatnonzero(std > min_std * max(float(std.max()), 1e-12))  # collapsed dimensions do not vote
    zs = z[:, active] / std[active]

    def votes(n):
        v = np.zeros((len(active), f.shape[1]), dtype=np.int64)
        for _ in range(n):
            k = rng.choice(ks)
            v[np.argmin(zs[rng.choice(_group(f, k, rng), batch)].var(0)), k] += 1
        return v

    train, test = votes(n_train), votes(n_test)
    factor_of = train.argmax(1)  # the majority-vote classifier: each dimension names its most frequent factor
    return float(test[np.arange(len(active)), factor_of].sum() / n_test)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def mutual_information(codes: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(D, K) mutual information in nats between integer codes (N, D) and factors (N, K), from joint counts."""
    out = np.zeros((codes.shape[1], f.shape[1]))
    n = len(codes)
    for j in range(codes.shape[1]):
        for k in range(f.shape[1]):
            _, a = np.unique(codes[:, j], return_inverse=True)
            _, b = np.unique(f[:, k], return_inverse=True)
            joint = np.zeros((a.max() + 1, b.max() + 1))
            np.add.at(joint, (a, b), 1)
            joint /= n
            pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
            nz = joint > 0
            out[j, k] = float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())
    return out


def mig(z, factors, bins: int = 20) -> float:
    z, f = _check(z, factors)
    ks = _varying(f)
    # each dimension cut into `bins` equal-width bins over its range (as the reference code of Locatello 2019)
    edges = [np.histogram_bin_edges(z[:, j], bins) for j in range(z.shape[1])]
    codes = np.stack([np.digitize(z[:, j], edges[j][1:-1]) for j in range(z.shape[1])], 1)
    mi = mutual_information(codes, f[:, ks])
    top = np.sort(mi, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(len(ks))
    h = np.array([_entropy(np.unique(f[:, k], return_counts=True)[1] / len(f)) for k in ks])
    return float(np.mean((top[0] - second) / h))


def dci(z, factors, n_train: int | None = None, seed: int = 0) -> dict[str, float]:
    from sklearn.ensemble import GradientBoostingClassifier

    z, f = _check(z, factors)
    ks = _varying(f)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(z))
    n_train = n_train or int(0.8 * len(z))
    tr, te = order[:n_train], order[n_train:]
    R, acc = np.zeros((z.shape[1], len(ks))), []
    for i, k in enumerate(ks):
        gbt = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=seed).fit(z[tr], f[tr, k])
        R[:, i] = np.abs(gbt.feature_importances_)
        acc.append(gbt.score(z[te], f[te, k]) if len(te) else gbt.score(z[tr], f[tr, k]))
    # disentanglement: 1 - entropy (base K) of each dimension's importances over factors, weighted by its share
    p_dim = R / np.maximum(R.sum(1, keepdims=True), 1e-12)
    h_dim = np.array([_entropy(p) for p in p_dim]) / np.log(max(len(ks), 2))
    weight = R.sum(1) / max(R.sum(), 1e-12)
    # completeness: 1 - entropy (base D) of each factor's importances over dimensions
    p_fac = R / np.maximum(R.sum(0, keepdims=True), 1e-12)
    h_fac = np.array([_entropy(p) for p in p_fac.T]) / np.log(max(z.shape[1], 2))
    return {"disentanglement": float((weight * (1 - h_dim)).sum()), "completeness": float((1 - h_fac).mean()),
            "informativeness": float(np.mean(acc))}
