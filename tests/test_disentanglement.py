"""Disentanglement metrics on encoders whose answer is known: an oracle that copies each factor into its own
dimension scores 1, a random encoder scores chance, a rotated oracle and one dimension holding two factors fall in
between; the mutual information equals scikit-learn's."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from genlab.errors import GenlabError
from genlab.metrics.disentanglement import beta_vae_score, dci, factor_vae_score, mig, mutual_information

GRID = np.array(list(itertools.product(range(8), range(8), range(8))))  # every combination of 3 factors: 512 items
RNG = np.random.default_rng(0)
ORACLE = np.c_[GRID / 7.0 + 0.01 * RNG.standard_normal(GRID.shape), 0.01 * RNG.standard_normal((512, 2))]
RANDOM = RNG.standard_normal((512, 5))


def test_the_oracle_scores_one_and_a_random_encoder_chance():
    assert beta_vae_score(ORACLE, GRID) == 1.0
    assert factor_vae_score(ORACLE, GRID) == 1.0
    assert mig(ORACLE, GRID) > 0.9
    d = dci(ORACLE, GRID)
    assert d["disentanglement"] > 0.9 and d["completeness"] > 0.9 and d["informativeness"] > 0.9
    assert beta_vae_score(RANDOM, GRID) < 0.5  # chance is 1/3
    assert factor_vae_score(RANDOM, GRID) < 0.5
    assert mig(RANDOM, GRID) < 0.1
    d = dci(RANDOM, GRID)
    assert d["disentanglement"] < 0.3 and d["completeness"] < 0.3 and d["informativeness"] < 0.3


def test_entangled_codes_score_in_between():
    q, _ = np.linalg.qr(RNG.standard_normal((3, 3)))
    rotated = (GRID / 7.0) @ q  # every dimension mixes every factor: all the information, none of the structure
    assert mig(rotated, GRID) < 0.5 < mig(ORACLE, GRID)
    assert dci(rotated, GRID)["disentanglement"] < 0.6 < dci(ORACLE, GRID)["disentanglement"]
    shared = np.c_[GRID[:, 0] + 8 * GRID[:, 1], GRID[:, 2]].astype(float)  # dimension 0 holds two factors
    d = dci(shared, GRID)
    assert d["informativeness"] > 0.9 and d["disentanglement"] < 0.8 and d["completeness"] > 0.9


def test_mutual_information_equals_scikit_learn():
    codes = RNG.integers(0, 5, (512, 3))
    codes[:, 0] = GRID[:, 1] // 2  # one code that depends on a factor
    mi = mutual_information(codes, GRID)
    want = [[mutual_info_score(codes[:, j], GRID[:, k]) for k in range(3)] for j in range(3)]
    assert np.allclose(mi, want, atol=1e-12)
    assert mi[0, 1] == pytest.approx(np.log(4))  # 4 equally likely values, fully determined by the factor


def test_bad_input_is_one_line():
    with pytest.raises(GenlabError, match="same N"):
        mig(ORACLE[:10], GRID)
    with pytest.raises(GenlabError, match="NaN"):
        mig(np.full((512, 2), np.nan), GRID)


def test_shapes_cover_the_factor_grid_where_the_factors_say():
    import genlab
    from genlab.data import shapes

    images, f = shapes.grid()
    assert images.shape == (6912, 28, 28) and len({tuple(r) for r in f}) == 6912  # every combination once
    ink = images.astype(np.float64) / 255
    rows, cols = np.mgrid[0:28, 0:28] + 0.5
    mass = ink.sum((1, 2))
    cx, cy = (ink * cols).sum((1, 2)) / mass / 28, (ink * rows).sum((1, 2)) / mass / 28
    square = f[:, 0] == 0  # every shape's centroid is its position (a triangle's centroid is its centre)
    assert np.abs(cx - shapes.POSITIONS[f[:, 3]]).max() < 0.3 / 28
    assert np.abs(cy - shapes.POSITIONS[f[:, 4]]).max() < 0.3 / 28
    side = 0.4 * shapes.SCALES[f[square, 1]] * 28  # a square's area is its side squared, at any rotation
    assert np.allclose(mass[square], side**2, rtol=0.06)  # 4x4 supersampling: within 6% for the smallest
    ellipse = f[:, 0] == 1
    assert np.allclose(mass[ellipse], np.pi * (0.2 * 28 * shapes.SCALES[f[ellipse, 1]]) ** 2 * 0.6, rtol=0.05)
    data = genlab.load_dataset("shapes")
    assert data.spec.num_classes == 3 and len(data) + len(genlab.load_dataset("shapes", "test")) == 6912
