"""Generative oversampling: new rows for the rare classes of an imbalanced data set, drawn from a generative model of
each class (or one class-conditional model), for a classifier to train on.

    from imblearn.pipeline import make_pipeline
    pipe = make_pipeline(GenerativeOversampler(kind="vae", steps=500), LogisticRegression())
    cross_val_score(pipe, X, y)          # resampling happens inside each training fold only

The imbalanced-learn sampler convention: `fit_resample(X, y) -> (X_resampled, y_resampled)`, the original rows
first, then the new ones; `sampling_strategy` as imbalanced-learn reads it ("auto" = "not majority", "minority",
"not minority", "all", a float for two classes: minority / majority after resampling, or a dict {class: count
after resampling}); fitted `sampling_strategy_` = {class: rows added}. Whether this beats SMOTE or a tuned
threshold is measured, not assumed (docs/BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..errors import GenlabError
from .anomaly import budget_of, seed_of

MODES = ("per-class", "conditional")
MIN_ROWS = 5  # a class with fewer rows cannot be modelled on its own


def target_counts(strategy: Any, counts: dict[Any, int]) -> dict[Any, int]:
    """{class: rows to add} for a sampling_strategy (imbalanced-learn's over-sampling semantics) and the class
    counts of y."""
    majority = max(counts, key=counts.get)
    top = counts[majority]
    minority = min(counts, key=counts.get)
    named = {"auto": [c for c in counts if c != majority], "not majority": [c for c in counts if c != majority],
             "minority": [minority], "not minority": [c for c in counts if c != minority], "all": list(counts)}
    if isinstance(strategy, str):
        if strategy not in named:
            raise GenlabError(f"sampling_strategy must be one of {', '.join(repr(k) for k in named)}, a float or a "
                              f"dict {{class: count}}, got {strategy!r}")
        return {c: top - counts[c] for c in named[strategy]}
    if isinstance(strategy, dict):
        out = {}
        for c, n in strategy.items():
            if c not in counts:
                raise GenlabError(f"sampling_strategy names class {c!r}, which y does not have")
            if not isinstance(n, (int, np.integer)) or n < counts[c]:
                raise GenlabError(f"sampling_strategy asks for {n!r} rows of class {c!r}, which has {counts[c]}; "
                                  "oversampling only adds rows: give a count >= the current one")
            out[c] = int(n) - counts[c]
        return out
    if isinstance(strategy, (float, int)) and not isinstance(strategy, bool):
        if len(counts) != 2:
            raise GenlabError(f"a float sampling_strategy is for two classes; y has {len(counts)}: use a dict")
        want = int(float(strategy) * top)
        if not (0 < float(strategy) <= 1) or want < counts[minority]:
            raise GenlabError(f"sampling_strategy={strategy!r} asks for {want} minority rows; it has "
                              f"{counts[minority]}: give a ratio in ({counts[minority] / top:.3f}, 1]")
        return {minority: want - counts[minority]}
    raise GenlabError(f"sampling_strategy must be a string, a float or a dict, got {type(strategy).__name__}")


class GenerativeOversampler(BaseEstimator):
    """kind: any genlab kind that samples (vae, gan, ddpm, maf, nsf, ...); mode: "per-class" trains one model on
    each class that gets rows, "conditional" one class-conditional model on all of X (the kind must take
    conditional=true). steps / minutes: each model's training budget; options: the kind's config options;
    random_state seeds training and sampling. X: (N, D) numeric rows; y: (N,) class labels of any type."""

    def __init__(self, kind: str = "vae", sampling_strategy: Any = "auto", mode: str = "per-class",
                 steps: int = 1000, minutes: float | None = None, batch_size: int = 128,
                 options: dict[str, Any] | None = None, random_state: int = 0, device: str = "auto",
                 verbose: bool = False):
        self.kind = kind
        self.sampling_strategy = sampling_strategy
        self.mode = mode
        self.steps = steps
        self.minutes = minutes
        self.batch_size = batch_size
        self.options = options
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def fit(self, X, y) -> GenerativeOversampler:
        """Resampling has no fitted state worth keeping apart from fit_resample; present for the API."""
        self.fit_resample(X, y)
        return self

    def fit_resample(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        import genlab
        from genlab.data import from_arrays
        from genlab.data.arrays import as_numpy, check_finite

        if self.mode not in MODES:
            raise GenlabError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        X_arr = as_numpy(X, "X")
        check_finite(X_arr, "X")
        y_arr = np.asarray(y)
        if X_arr.ndim != 2:
            raise GenlabError(f"X must be (N, D) rows, got shape {X_arr.shape}")
        if y_arr.shape != (len(X_arr),):
            raise GenlabError(f"y must be (N,) = ({len(X_arr)},) labels, got shape {y_arr.shape}")
        classes, codes = np.unique(y_arr, return_inverse=True)
        if len(classes) < 2:
            raise GenlabError(f"y has a single class ({classes[0]!r}); oversampling needs at least two")
        counts = {c: int((y_arr == c).sum()) for c in classes.tolist()}
        add = {c: n for c, n in target_counts(self.sampling_strategy, counts).items() if n > 0}
        self.sampling_strategy_ = dict(add)
        self.seed_ = seed_of(self.random_state)
        train_opts = {**budget_of(self), "seed": self.seed_, "device": self.device, "progress": self.verbose}
        new_x, new_y = [], []
        if self.mode == "conditional" and add:
            data, _ = from_arrays(X_arr, codes, test_fraction=0, name="oversample")
            model = self._model(genlab, data.spec, conditional=True)
            genlab.train(model, data, batch_size=min(self.batch_size, len(data)), **train_opts)
            for c, n in add.items():
                label = int(np.searchsorted(classes, c))
                new_x.append(self._draw(model, n, labels=label))
                new_y.append(np.full(n, c, dtype=y_arr.dtype))
        for c, n in add.items() if self.mode == "per-class" else ():
            rows = X_arr[y_arr == c]
            if len(rows) < MIN_ROWS:
                raise GenlabError(f"class {c!r} has {len(rows)} rows, too few to train a {self.kind} on it alone "
                                  f"(at least {MIN_ROWS}): use mode='conditional', or SMOTE / random oversampling")
            data, _ = from_arrays(rows, test_fraction=0, name=f"oversample-{c}")
            model = self._model(genlab, data.spec)
            genlab.train(model, data, batch_size=min(self.batch_size, len(data)), **train_opts)
            new_x.append(self._draw(model, n))
            new_y.append(np.full(n, c, dtype=y_arr.dtype))
        if not new_x:
            return X_arr.copy(), y_arr.copy()
        return (np.concatenate([X_arr, *[self._as(x, X_arr.dtype) for x in new_x]]),
                np.concatenate([y_arr, *new_y]))

    def _model(self, genlab, spec, **extra):
        torch.manual_seed(self.seed_)
        return genlab.create(self.kind, spec, **{**(self.options or {}), **extra})

    def _draw(self, model, n: int, labels: int | None = None) -> np.ndarray:
        """n rows in X's units."""
        x = model.sample(n, seed=self.seed_, labels=labels)
        return np.asarray(model.spec.to_original(x), dtype=np.float64)

    @staticmethod
    def _as(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """New rows in X's dtype: integer X gets rounded values, not truncated ones."""
        return np.rint(x).astype(dtype) if np.issubdtype(dtype, np.integer) else x.astype(dtype, copy=False)
