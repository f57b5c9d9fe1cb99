"""How good, how useful and how private a synthetic table is, measured against the real one.

Fidelity (the column-shape and column-pair scores of the SDMetrics quality report, written here):
  per column   numeric: 1 - KS statistic (two-sample, missing values left out); categorical: 1 - total-variation
               distance of the category frequencies, 1 - 1/2 sum |p - q|;
  per pair     two numeric columns: correlation similarity 1 - |rho_real - rho_syn| / 2 (Pearson); a pair with a
               categorical column: contingency similarity 1 - 1/2 sum |P(a, b) - Q(a, b)|, numeric columns binned
               at the real column's deciles.
Utility: train on synthetic, test on real (TSTR; Esteban et al. 2017) beside train on real, test on real, with a
  histogram gradient-boosted model: accuracy and macro F1 for a categorical target, R^2 for a numeric one.
Privacy: distance to closest record (DCR) under the Gower distance (numeric |a - b| / range, categorical a != b,
  averaged over columns): synthetic -> train beside holdout -> train (a synthesizer that copies rows puts its
  DCRs at 0, below the holdout's); a distance-based membership-inference attack (a record is called a member
  when a synthetic row lies close to it): its ROC-AUC over train (members) vs holdout (non-members) rows, 0.5 =
  nothing learnt about membership.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .table_codec import TableCodec

COPY_TOLERANCE = 0.01  # synthetic rows at distance 0 beyond the holdout's share that flag a copying synthesizer


def _num(s) -> np.ndarray:
    return s.astype("float64").to_numpy()


def _cat(s) -> np.ndarray:
    return s.astype(object).where(s.notna(), "<NA>").astype(str).to_numpy()


def column_scores(real, syn, codec: TableCodec) -> dict[str, float]:
    from scipy.stats import ks_2samp

    out = {}
    for c in codec.columns:
        if c.type == "numeric":
            a, b = _num(real[c.name]), _num(syn[c.name])
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            out[c.name] = float(1 - ks_2samp(a, b).statistic) if len(a) and len(b) else 0.0
        else:
            out[c.name] = 1 - 0.5 * _freq_gap(_cat(real[c.name]), _cat(syn[c.name]))
    return out


def _freq_gap(a: np.ndarray, b: np.ndarray) -> float:
    """sum |p - q| over the values of two label arrays."""
    vals = np.union1d(a, b)
    p = (a[:, None] == vals).mean(0)
    q = (b[:, None] == vals).mean(0)
    return float(np.abs(p - q).sum())


def _binned(real_col, col, kind: str) -> np.ndarray:
    """A column as labels: categories as they are, numbers by the real column's deciles (missing its own bin)."""
    if kind == "categorical":
        return _cat(col)
    edges = np.unique(np.nanquantile(_num(real_col), np.linspace(0.1, 0.9, 9)))
    x = _num(col)
    return np.where(np.isnan(x), "<NA>", np.searchsorted(edges, x, side="right").astype(str))


def pair_scores(real, syn, codec: TableCodec) -> dict[str, float]:
    cols = codec.columns
    out = {}
    for i in range(len(cols)):
        for j in range(i + 1, len(cols)):
            a, b = cols[i], cols[j]
            key = f"{a.name} / {b.name}"
            if a.type == b.type == "numeric":
                rr = _corr(_num(real[a.name]), _num(real[b.name]))
                rs = _corr(_num(syn[a.name]), _num(syn[b.name]))
                out[key] = 1 - abs(rr - rs) / 2
            else:
                ra = _binned(real[a.name], real[a.name], a.type)
                rb = _binned(real[b.name], real[b.name], b.type)
                sa = _binned(real[a.name], syn[a.name], a.type)
                sb = _binned(real[b.name], syn[b.name], b.type)
                out[key] = 1 - 0.5 * _freq_gap(np.char.add(np.char.add(ra, "|"), rb),
                                               np.char.add(np.char.add(sa, "|"), sb))
    return out


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    ok = ~(np.isnan(x) | np.isnan(y))
    if ok.sum() < 2 or x[ok].std() == 0 or y[ok].std() == 0:
        return 0.0
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


# ---------------------------------------------------------------- utility
def _features(frames: list, codec: TableCodec, target: str) -> list[np.ndarray]:
    """The frames as numbers for one model: numeric columns as they are (NaN kept), categories one-hot over the
    categories seen in training."""
    out = []
    for f in frames:
        parts = []
        for c in codec.columns:
            if c.name == target:
                continue
            if c.type == "numeric":
                parts.append(_num(f[c.name])[:, None])
            else:
                cats = np.asarray([str(v) if v is not None else "<NA>" for v in c.categories])
                parts.append((_cat(f[c.name])[:, None] == cats).astype(np.float64))
        out.append(np.concatenate(parts, 1))
    return out


def utility(train, syn, test, codec: TableCodec, target: str, seed: int = 0) -> dict[str, Any]:
    """TSTR beside TRTR: a gradient-boosted model fit on `syn` and on `train`, both scored on `test`."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, f1_score, r2_score

    col = next((c for c in codec.columns if c.name == target), None)
    if col is None:
        from ..errors import GenlabError

        raise GenlabError(f"target '{target}' is not a column; columns: {', '.join(c.name for c in codec.columns)}")
    Xtr, Xs, Xte = _features([train, syn, test], codec, target)
    res: dict[str, Any] = {"target": target}
    for name, X, frame in (("real", Xtr, train), ("synthetic", Xs, syn)):
        if col.type == "categorical":
            y, yte = _cat(frame[target]), _cat(test[target])
            if len(np.unique(y)) < 2:  # a synthesizer that collapsed onto one class: predict it
                pred = np.full(len(yte), y[0])
            else:  # no early stopping: its validation split would need every class twice
                pred = HistGradientBoostingClassifier(random_state=seed, early_stopping=False).fit(X, y).predict(Xte)
            res[name] = {"accuracy": float(accuracy_score(yte, pred)),
                         "macro_f1": float(f1_score(yte, pred, average="macro"))}
        else:
            y, yte = _num(frame[target]), _num(test[target])
            keep, kte = ~np.isnan(y), ~np.isnan(yte)
            if keep.sum() < 2:  # no target values to learn from: a constant prediction's R^2
                res[name] = {"r2": float(r2_score(yte[kte], np.full(kte.sum(), np.nanmean(y) if keep.any() else 0)))}
                continue
            model = HistGradientBoostingRegressor(random_state=seed, early_stopping=False).fit(X[keep], y[keep])
            res[name] = {"r2": float(r2_score(yte[kte], model.predict(Xte[kte])))}
    return res


# ---------------------------------------------------------------- privacy
def gower_space(frames: list, codec: TableCodec) -> list[np.ndarray]:
    """Rows whose L1 distance / number of columns is the Gower distance (per column in [0, 1]): a number v in
    [0, 1] (min-max over training, clipped) as (v/2, (1-v)/2, 0), so two present values differ by |v - v'|, a
    missing one as (0, 0, 1/2), 1 from any present value; a category one-hot / 2 with an extra slot for values
    unseen in training, so two different categories differ by 1."""
    out = []
    for f in frames:
        parts = []
        for c in codec.columns:
            if c.type == "numeric":
                v = np.clip((_num(f[c.name]) - c.lo) / ((c.hi - c.lo) or 1.0), 0, 1)
                miss = np.isnan(v)
                v = np.where(miss, 0.0, v)
                parts.append(np.stack([np.where(miss, 0, v / 2), np.where(miss, 0, (1 - v) / 2), miss / 2], 1))
            else:
                cats = np.asarray([str(v) if v is not None else "<NA>" for v in c.categories])
                hot = (_cat(f[c.name])[:, None] == cats).astype(np.float64)
                parts.append(np.concatenate([hot, 1 - hot.sum(1, keepdims=True)], 1) / 2)
        out.append(np.concatenate(parts, 1) / len(codec.columns))
    return out


def nearest(a: np.ndarray, b: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For each row of a, the L1 distance to its nearest row of b, in chunks of a."""
    from scipy.spatial.distance import cdist

    return np.concatenate([cdist(a[i:i + chunk], b, "cityblock").min(1) for i in range(0, len(a), chunk)]) \
        if len(a) else np.zeros(0)


def privacy(train, syn, holdout, codec: TableCodec) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    tr, sy, ho = gower_space([train, syn, holdout], codec)
    dcr_syn, dcr_hold = nearest(sy, tr), nearest(ho, tr)
    copies, hold_copies = float((dcr_syn < 1e-9).mean()), float((dcr_hold < 1e-9).mean())
    n = min(len(tr), len(ho))  # members and non-members in equal numbers
    rng = np.random.default_rng(0)
    members, others = tr[rng.permutation(len(tr))[:n]], ho[rng.permutation(len(ho))[:n]]
    attack = -np.r_[nearest(members, sy), nearest(others, sy)]  # closer to a synthetic row = called a member
    auc = float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], attack))
    return {"dcr_synthetic_median": float(np.median(dcr_syn)), "dcr_holdout_median": float(np.median(dcr_hold)),
            "dcr_synthetic_p05": float(np.quantile(dcr_syn, 0.05)),
            "dcr_holdout_p05": float(np.quantile(dcr_hold, 0.05)),
            "exact_copies": copies, "holdout_exact_copies": hold_copies, "mia_auc": auc,
            "copies_flagged": copies > hold_copies + COPY_TOLERANCE,
            "dcr_synthetic": dcr_syn.tolist(), "dcr_holdout": dcr_hold.tolist()}


def evaluate(train, syn, holdout, codec: TableCodec, target: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Fidelity, utility (when a target is named) and privacy of `syn`, a synthetic copy of `train`."""
    cols = column_scores(train, syn, codec)
    pairs = pair_scores(train, syn, codec)
    shapes = float(np.mean(list(cols.values())))
    trends = float(np.mean(list(pairs.values()))) if pairs else shapes
    res = {"fidelity": {"column_shapes": shapes, "column_pair_trends": trends, "overall": (shapes + trends) / 2,
                        "columns": cols, "pairs": pairs},
           "privacy": privacy(train, syn, holdout, codec), "rows": {"train": len(train), "synthetic": len(syn),
                                                                    "holdout": len(holdout)}}
    if target is not None:
        res["utility"] = utility(train, syn, holdout, codec, target, seed)
    return res
