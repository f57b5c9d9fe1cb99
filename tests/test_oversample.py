"""GenerativeOversampler: imbalanced-learn's sampling_strategy semantics against imbalanced-learn's own reading,
the class counts fit_resample returns, new rows that look like their class on real data, use inside an imblearn
Pipeline, and bad input in one line."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.linear_model import LogisticRegression

from genlab.apps import GenerativeOversampler
from genlab.apps.oversample import target_counts
from genlab.errors import GenlabError

imblearn = pytest.importorskip("imblearn")


@pytest.fixture(scope="module")
def cancer_imbalanced():
    """Breast cancer with the malignant class (0) cut to 30 rows of 387."""
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    keep = np.r_[np.flatnonzero(y == 1), rng.choice(np.flatnonzero(y == 0), 30, replace=False)]
    return X[keep], y[keep]


@pytest.mark.parametrize("strategy", ["auto", "minority", "not minority", "all", "not majority",
                                      {0: 50, 2: 60}])
def test_sampling_strategy_reads_as_imbalanced_learn_reads_it(strategy):
    from imblearn.utils import check_sampling_strategy

    y = np.r_[np.zeros(40), np.ones(71), np.full(20, 2)].astype(int)
    ours = target_counts(strategy, dict(Counter(y.tolist())))
    theirs = check_sampling_strategy(strategy, y, "over-sampling")
    assert {k: v for k, v in ours.items()} == {k: v for k, v in theirs.items()}


def test_float_strategy_on_two_classes():
    from imblearn.utils import check_sampling_strategy

    y = np.r_[np.zeros(100), np.ones(12)].astype(int)
    assert target_counts(0.5, {0: 100, 1: 12}) == dict(check_sampling_strategy(0.5, y, "over-sampling"))


def test_fit_resample_returns_the_requested_counts_and_rows_like_their_class(cancer_imbalanced):
    X, y = cancer_imbalanced
    sampler = GenerativeOversampler(kind="vae", steps=400, options={"latent_dim": 4})
    X_res, y_res = sampler.fit_resample(X, y)
    assert Counter(y_res.tolist()) == {1: 357, 0: 357} and sampler.sampling_strategy_ == {0: 327}
    assert np.array_equal(X_res[:len(X)], X) and np.array_equal(y_res[:len(y)], y)  # originals first
    new = X_res[len(X):]
    assert np.isfinite(new).all() and new.shape == (327, 30)
    # new rows are malignant-like: a classifier trained on the real rows calls most of them malignant
    clf = LogisticRegression(max_iter=5000).fit((X - X.mean(0)) / X.std(0), y)
    share = float((clf.predict((new - X.mean(0)) / X.std(0)) == 0).mean())
    print(f"share of synthetic malignant rows classified malignant: {share:.3f}")
    assert share > 0.8


def test_conditional_mode_and_labels_of_any_type():
    X, y = load_wine(return_X_y=True)
    names = np.array(["barolo", "grignolino", "barbera"])[y]
    sampler = GenerativeOversampler(kind="vae", mode="conditional", steps=200, sampling_strategy={"barbera": 60})
    X_res, y_res = sampler.fit_resample(X, names)
    assert Counter(y_res.tolist())["barbera"] == 60 and len(X_res) == len(X) + 12
    assert y_res.dtype == names.dtype


def test_integer_columns_stay_integers():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 20, size=(60, 3))
    y = np.r_[np.zeros(50), np.ones(10)].astype(int)
    X_res, _ = GenerativeOversampler(kind="vae", steps=50).fit_resample(X, y)
    assert X_res.dtype == X.dtype and len(X_res) == 100


def test_inside_an_imblearn_pipeline(cancer_imbalanced):
    from imblearn.pipeline import make_pipeline
    from sklearn.model_selection import cross_val_score
    from sklearn.preprocessing import StandardScaler

    X, y = cancer_imbalanced
    pipe = make_pipeline(StandardScaler(), GenerativeOversampler(kind="vae", steps=100),
                         LogisticRegression(max_iter=2000))
    scores = cross_val_score(pipe, X, y, cv=3, scoring="balanced_accuracy")  # resampled inside each fold only
    assert scores.shape == (3,) and scores.mean() > 0.8
    assert pipe.fit(X, y).predict(X).shape == (len(X),)  # prediction does not resample


def test_bad_input_is_one_line(cancer_imbalanced):
    X, y = cancer_imbalanced
    s = GenerativeOversampler(steps=1)
    with pytest.raises(GenlabError, match="single class"):
        s.fit_resample(X, np.zeros(len(X)))
    with pytest.raises(GenlabError, match="class 0 has 3 rows, too few .* use mode='conditional'"):
        s.fit_resample(np.r_[X[y == 1][:20], X[y == 0][:3]], np.r_[np.ones(20), np.zeros(3)].astype(int))
    with pytest.raises(GenlabError, match="a float sampling_strategy is for two classes"):
        GenerativeOversampler(sampling_strategy=0.5).fit_resample(X[:9], np.arange(9) % 3)
    with pytest.raises(GenlabError, match="oversampling only adds rows"):
        GenerativeOversampler(sampling_strategy={0: 5}).fit_resample(X, y)
    with pytest.raises(GenlabError, match="sampling_strategy must be one of"):
        GenerativeOversampler(sampling_strategy="majority").fit_resample(X, y)
    with pytest.raises(GenlabError, match="mode must be one of"):
        GenerativeOversampler(mode="smote").fit_resample(X, y)
    nan = X.copy()
    nan[-1, 0] = np.nan
    with pytest.raises(GenlabError, match=f"X holds NaN or inf \\(first at row {len(X) - 1}\\)"):
        s.fit_resample(nan, y)
