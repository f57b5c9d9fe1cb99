"""AnomalyDetector: scikit-learn's estimator conventions one by one, PyOD's fitted attributes, detection on a real
table (breast cancer: benign rows are normal, malignant ones anomalies) measured by ROC-AUC, persistence, and
bad input in one line."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from genlab.apps import AnomalyDetector
from genlab.errors import GenlabError


@pytest.fixture(scope="module")
def cancer():
    """Train on 250 benign rows; test on the other 107 benign rows and all 212 malignant ones (label 1)."""
    X, y = load_breast_cancer(return_X_y=True)
    benign, malignant = X[y == 1], X[y == 0]
    rng = np.random.default_rng(0)
    benign = benign[rng.permutation(len(benign))]
    X_test = np.concatenate([benign[250:], malignant])
    return benign[:250], X_test, np.r_[np.zeros(len(benign) - 250), np.ones(len(malignant))]


@pytest.fixture(scope="module")
def fitted(cancer):
    X_train, _, _ = cancer
    return AnomalyDetector(kind="vae", steps=600, contamination=0.1, options={"latent_dim": 4}).fit(X_train)


def test_estimator_conventions():
    det = AnomalyDetector(kind="ae", steps=10, options={"latent_dim": 2})
    assert det.get_params()["steps"] == 10
    twin = clone(det)
    assert twin is not det and twin.get_params() == det.get_params()
    assert det.set_params(contamination=0.2) is det and det.contamination == 0.2
    with pytest.raises(NotFittedError):
        det.decision_function(np.zeros((2, 3)))


def test_fitted_attributes_follow_pyod(cancer, fitted):
    X_train, _, _ = cancer
    det = fitted
    assert det.score_ == "reconstruction" and det.n_features_in_ == 30
    assert det.decision_scores_.shape == (250,)
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_scores_, 0.9))
    assert abs(det.labels_.mean() - 0.1) <= 1 / 250
    assert np.array_equal(det.predict(X_train), det.labels_)
    assert np.allclose(det.decision_function(X_train), det.decision_scores_)
    assert np.array_equal(det.score_samples(X_train[:5]), -det.decision_function(X_train[:5]))


@pytest.mark.parametrize("kind,score,bound", [("vae", "reconstruction", 0.9), ("vae", "nll", 0.9),
                                              ("maf", "auto", 0.85)])
def test_detects_malignant_rows(cancer, fitted, kind, score, bound):
    X_train, X_test, is_anomaly = cancer
    if kind == "maf":
        pytest.importorskip("zuko")
    det = fitted if (kind, score) == ("vae", "reconstruction") else AnomalyDetector(
        kind=kind, score=score, steps=600, options={"latent_dim": 4} if kind == "vae" else None).fit(X_train)
    auc = roc_auc_score(is_anomaly, det.decision_function(X_test))
    print(f"{kind} {det.score_} ROC-AUC {auc:.3f}")
    assert auc > bound


def test_save_and_load_give_the_same_scores(cancer, fitted, tmp_path):
    _, X_test, _ = cancer
    fitted.save(tmp_path / "det")
    again = AnomalyDetector.load(tmp_path / "det")
    assert again.get_params() == fitted.get_params() and again.threshold_ == fitted.threshold_
    assert np.array_equal(again.decision_function(X_test), fitted.decision_function(X_test))
    with pytest.raises(GenlabError, match="holds no anomaly detector"):
        AnomalyDetector.load(tmp_path)


def test_bad_input_is_one_line(cancer, fitted):
    X_train, _, _ = cancer
    for bad in (0, 0.7, float("nan"), "x"):
        with pytest.raises(GenlabError, match="contamination must be in"):
            AnomalyDetector(contamination=bad).fit(X_train)
    with pytest.raises(GenlabError, match="random_state must be a non-negative integer or None"):
        AnomalyDetector(random_state="x", steps=1).fit(X_train)
    assert AnomalyDetector(kind="ae", random_state=None, steps=2).fit(X_train).seed_ >= 0  # None: a drawn seed
    with pytest.raises(GenlabError, match="score must be one of"):
        AnomalyDetector(score="distance").fit(X_train)
    with pytest.raises(GenlabError, match="gan has no reconstruct or log_prob to score with; reconstruction: ae"):
        AnomalyDetector(kind="gan", steps=1).fit(X_train)
    with pytest.raises(GenlabError, match="has no log_prob to score with"):
        AnomalyDetector(kind="ae", score="nll", steps=1).fit(X_train)
    nan = X_train.copy()
    nan[3, 2] = np.nan
    with pytest.raises(GenlabError, match="NaN or inf \\(first at row 3\\)"):
        AnomalyDetector(steps=1).fit(nan)
    with pytest.raises(GenlabError, match="holds \\(N, 30\\) rows"):
        fitted.decision_function(X_train[:, :5])
