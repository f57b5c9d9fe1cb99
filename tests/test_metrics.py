"""Every metric against an independent implementation on the same features."""

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from genlab.errors import GenlabError
from genlab.metrics import (
    density_coverage,
    frechet_distance,
    inception_score,
    kid,
    laplacian_variance,
    memorization,
    mode_metrics,
    precision_recall,
)


def _feats(n, d, shift=0.0, scale=1.0, seed=0):
    """n samples (sample seed `seed`) of a fixed correlated Gaussian in d dims, shifted and scaled."""
    mix = np.eye(d) + 0.3 * np.random.default_rng(1000 + d).standard_normal((d, d))
    return np.random.default_rng(seed).standard_normal((n, d)) @ mix * scale + shift


def test_frechet_matches_torchmetrics_and_scipy_sqrtm():
    from torchmetrics.image.fid import _compute_fid

    real, fake = _feats(2000, 64), _feats(1500, 64, shift=0.3, scale=1.2, seed=1)
    ours = frechet_distance(real, fake)
    r, f = torch.tensor(real), torch.tensor(fake)
    theirs = _compute_fid(f.mean(0), torch.cov(f.T), r.mean(0), torch.cov(r.T)).item()
    assert ours == pytest.approx(theirs, rel=1e-5)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    direct = np.sum((real.mean(0) - fake.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert ours == pytest.approx(direct, rel=1e-6)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)


def test_frechet_is_finite_when_n_is_below_dims():
    real, fake = _feats(40, 128), _feats(30, 128, shift=0.5, seed=2)
    v = frechet_distance(real, fake)
    assert math.isfinite(v) and v > 0
    from torchmetrics.image.fid import _compute_fid

    r, f = torch.tensor(real), torch.tensor(fake)
    assert v == pytest.approx(_compute_fid(f.mean(0), torch.cov(f.T), r.mean(0), torch.cov(r.T)).item(), rel=1e-5)


def test_kid_matches_torchmetrics_and_a_loop():
    from torchmetrics.image.kid import poly_mmd

    real, fake = _feats(300, 32), _feats(300, 32, shift=0.2, seed=3)
    mean, std = kid(real, fake, subsets=3, subset_size=300)  # every subset is the whole set: deterministic
    theirs = poly_mmd(torch.tensor(real), torch.tensor(fake)).item()
    assert mean == pytest.approx(theirs, rel=1e-5) and std == pytest.approx(0.0, abs=1e-12)
    # the unbiased estimator written out term by term
    k = lambda a, b: (a @ b / 32 + 1) ** 3
    m = len(real)
    xx = sum(k(real[i], real[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(fake[i], fake[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(real[i], fake[j]) for i in range(m) for j in range(m)) / (m * m)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-8)
    a, b, shifted = _feats(2000, 32, seed=10), _feats(2000, 32, seed=11), _feats(2000, 32, shift=0.3, seed=12)
    same, same_std = kid(a, b, subsets=50)
    differ = kid(a, shifted, subsets=50)[0]
    assert abs(same) < 3 * same_std and abs(same) < 0.1 * differ  # unbiased: ~0 for one distribution


def _brute_pr_dc(real, fake, k_pr, k_dc):
    """Kynkäänniemi et al. 2019 and Naeem et al. 2020, written with plain loops."""
    dist = lambda a, b: float(np.sqrt(((a - b) ** 2).sum()))

    def radius(s, i, k):
        return sorted(dist(s[i], s[j]) for j in range(len(s)))[k]  # index 0 is the point itself

    rr = [radius(real, i, k_pr) for i in range(len(real))]
    fr = [radius(fake, j, k_pr) for j in range(len(fake))]
    precision = np.mean([any(dist(f, real[i]) <= rr[i] for i in range(len(real))) for f in fake])
    recall = np.mean([any(dist(r, fake[j]) <= fr[j] for j in range(len(fake))) for r in real])
    rd = [radius(real, i, k_dc) for i in range(len(real))]
    density = sum(dist(f, real[i]) <= rd[i] for f in fake for i in range(len(real))) / (k_dc * len(fake))
    coverage = np.mean([min(dist(real[i], f) for f in fake) <= rd[i] for i in range(len(real))])
    return precision, recall, density, coverage


@pytest.mark.parametrize("block", [4096, 50, 7])  # one block, and blocks that split rows and columns unevenly
def test_precision_recall_density_coverage_match_brute_force(block, monkeypatch):
    monkeypatch.setattr("genlab.metrics.manifold.BLOCK", block)
    real, fake = _feats(120, 5), _feats(90, 5, shift=0.6, scale=0.7, seed=4)
    p, r = precision_recall(real, fake, k=3)
    d, c = density_coverage(real, fake, k=5)
    bp, br, bd, bc = _brute_pr_dc(real, fake, 3, 5)
    assert (p, r) == (pytest.approx(bp, abs=1e-12), pytest.approx(br, abs=1e-12))
    assert (d, c) == (pytest.approx(bd, abs=1e-12), pytest.approx(bc, abs=1e-12))
    assert 0 < p < 1 and 0 < r < 1  # a case where both are informative


def test_inception_score_against_closed_form():
    probs = np.eye(10)[np.arange(1000) % 10]  # confident and uniform over 10 classes: IS = 10
    assert inception_score(probs, splits=10)[0] == pytest.approx(10.0, rel=1e-6)
    assert inception_score(np.full((100, 10), 0.1), splits=5)[0] == pytest.approx(1.0)


def test_mode_metrics_true_mixture_and_collapsed_sampler():
    from genlab.data.builtin import make_2d

    for name, modes in (("gaussians8", 8), ("gaussians25", 25)):
        x, _ = make_2d(name, 2500, seed=5)
        m = mode_metrics(x, name)
        assert m["modes"] == modes and m["high_quality"] >= 0.99 and m["jsd_to_uniform"] < 0.01
        euclid = mode_metrics(x, name, criterion="euclidean")["high_quality"]
        assert euclid == pytest.approx(1 - math.exp(-4.5), abs=0.006)  # the chi-2 law of a 2-D radius
    collapsed = np.array([1.0, 0.0]) + 0.01 * np.random.default_rng(0).standard_normal((2500, 2))
    m = mode_metrics(collapsed, "gaussians8")
    assert m["modes"] == 1 and m["counts"][0] > 2400


def test_laplacian_variance_matches_scipy_and_falls_with_blur():
    from scipy import ndimage

    from genlab.data import load_dataset

    x = (load_dataset("digits", "test").x[:50] + 1) / 2  # (50, 1, 8, 8) in [0, 1]
    rgb = torch.rand(4, 3, 12, 9, generator=torch.Generator().manual_seed(0))
    for imgs in (x, rgb):
        gray = imgs.double().mean(1).numpy()
        ref = [ndimage.laplace(g)[1:-1, 1:-1].var() for g in gray]  # interior: no boundary mode involved
        assert np.allclose(laplacian_variance(imgs).numpy(), ref, rtol=1e-12)
    blurred = torch.from_numpy(np.stack([ndimage.gaussian_filter(g, 1.0) for g in x[:, 0].numpy()]))[:, None]
    assert (laplacian_variance(blurred) < laplacian_variance(x)).all()
    assert float(laplacian_variance(torch.full((2, 1, 5, 5), 0.3)).max()) == 0.0
    with pytest.raises(GenlabError, match="sharpness needs"):
        laplacian_variance(torch.zeros(3, 28, 28))


def test_memorization_flags_copies():
    train, test = _feats(500, 8), _feats(200, 8, seed=6)
    copies = train[:200] + 1e-6
    fresh = _feats(200, 8, seed=7)
    assert memorization(train, test, copies)["median_nn_ratio"] < 0.01
    assert memorization(train, test, fresh)["median_nn_ratio"] == pytest.approx(1.0, abs=0.3)


@pytest.mark.parametrize("real,fake,msg", [
    (np.zeros((1, 4)), np.zeros((5, 4)), "at least 2 samples"),
    (np.zeros((5, 4)), np.zeros((5, 3)), "feature dims differ"),
    (np.full((5, 4), np.nan), np.zeros((5, 4)), "NaN"),
    (np.zeros((5, 4, 2)), np.zeros((5, 4)), "2-D array"),
])
def test_bad_feature_inputs(real, fake, msg):
    for fn in (frechet_distance, kid, precision_recall, density_coverage):
        with pytest.raises(GenlabError, match=msg):
            fn(real, fake)
