"""Datasets from arrays in memory: genlab.from_arrays, DataSpec.from_arrays and DataSpec.to_model."""

import numpy as np
import pytest
import torch

import genlab
from genlab.data import DataSpec, from_arrays
from genlab.errors import GenlabError


def test_vectors_are_standardised_and_come_back_in_original_units():
    rng = np.random.default_rng(0)
    x = rng.normal([5.0, -2.0, 100.0], [3.0, 0.5, 20.0], (300, 3))
    y = np.arange(300) % 4
    train, test = from_arrays(x, y, test_fraction=0)
    assert test is None and len(train) == 300
    s = train.spec
    assert (s.kind, s.shape, s.num_classes, s.name, s.class_names) == ("vector", (3,), 4, "arrays", None)
    np.testing.assert_array_equal(s.mean, x.mean(0))
    np.testing.assert_array_equal(s.std, x.std(0))
    expected = torch.from_numpy((x - x.mean(0)) / x.std(0)).float()  # the standardisation, computed here
    assert torch.equal(train.x, expected) and torch.equal(train.y, torch.from_numpy(y))
    back = s.to_original(train.x)  # equal up to the float32 rounding of the model-space values
    assert back.dtype == np.float64 and np.abs((back - x) / x.std(0)).max() < 1e-6
    assert torch.equal(s.to_model(x), train.x)
    assert s.to_dict() == DataSpec.from_arrays(x, y).to_dict()
    t, _ = from_arrays(torch.from_numpy(x), torch.from_numpy(y), test_fraction=0)  # tensors as arrays
    assert torch.equal(t.x, train.x) and torch.equal(t.y, train.y)


def test_split_standardises_with_the_train_part_and_keeps_every_row():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (50, 2)).astype(np.float32)
    train, test = from_arrays(x, test_fraction=0.2, seed=5)
    assert (len(train), len(test)) == (40, 10) and train.spec is test.spec and train.split == "train"
    assert torch.all(train.y == -1) and train.spec.num_classes is None
    back = np.concatenate([train.spec.to_original(train.x), test.spec.to_original(test.x)])
    order = np.lexsort(back.T), np.lexsort(x.T.astype(np.float64))
    np.testing.assert_allclose(back[order[0]], x[order[1]], rtol=0, atol=2.0 * 1e-6)  # std 2, float32 rounding
    rows = train.spec.to_original(train.x)
    np.testing.assert_allclose(train.spec.mean, rows.mean(0), rtol=1e-6)
    again, _ = from_arrays(x, test_fraction=0.2, seed=5)
    assert torch.equal(again.x, train.x)


def test_uint8_images_go_to_minus_one_one_and_back_exactly():
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (20, 6, 7), dtype=np.uint8)
    train, _ = from_arrays(grey, np.arange(20) % 3, test_fraction=0, class_names=["a", "b", "c"])
    s = train.spec
    assert (s.kind, s.shape, s.levels, s.num_classes, s.class_names) == ("image", (1, 6, 7), 256, 3, ["a", "b", "c"])
    assert torch.equal(train.x[:, 0], torch.from_numpy(grey).float() / 255 * 2 - 1)
    assert np.array_equal(s.to_original(train.x)[..., 0], grey)
    rgb = rng.integers(0, 256, (9, 5, 5, 3), dtype=np.uint8)
    tr, te = from_arrays(rgb, test_fraction=0.3)
    assert tr.spec.shape == (3, 5, 5) and tr.x.min() >= -1 and tr.x.max() <= 1
    back = np.concatenate([tr.spec.to_original(tr.x), te.spec.to_original(te.x)])
    assert sorted(map(bytes, back)) == sorted(map(bytes, rgb))
    assert torch.equal(tr.spec.to_model(tr.spec.to_original(tr.x)), tr.x)


def test_to_model_inverts_to_original_on_a_coarser_grid():
    digits = genlab.load_dataset("digits")  # 17 grey levels
    x = digits.x[:50]
    assert torch.equal(digits.spec.to_model(digits.spec.to_original(x)), x)


def test_a_table_of_numeric_columns():
    x = np.random.default_rng(3).normal(0, 4, (30, 2))
    train, _ = from_arrays(x, kind="table", test_fraction=0)
    assert train.spec.kind == "table" and [c.name for c in train.spec.columns] == ["x0", "x1"]
    back = train.spec.to_original(train.x)
    np.testing.assert_allclose(back["x1"], x[:, 1], rtol=0, atol=4.0 * 1e-6)  # std 4, float32 rounding


@pytest.mark.parametrize("args, kw, message", [
    ((np.array([[1.0, 2.0], [np.nan, 0.0], [1.0, 1.0]]),), {}, "x holds NaN or inf (first at row 1)"),
    ((np.array([[1.0, np.inf]]),), {"test_fraction": 0}, "x holds NaN or inf (first at row 0)"),
    ((np.zeros(5),), {}, "x has shape (5,); expected (N, D) vectors or (N, H, W[, C]) images"),
    ((np.zeros((2, 2, 2, 2, 2), np.uint8),), {}, "expected (N, D) vectors"),
    ((np.zeros((0, 3)),), {}, "x is empty"),
    ((np.zeros((4, 3)), np.arange(3)), {}, "3 labels for 4 rows of x"),
    ((np.zeros((4, 3)), np.array([0, 1, -1, 0])), {}, "label -1 at row 2"),
    ((np.zeros((4, 3)), np.array([0, 0.5, 1, 0])), {}, "labels must be whole numbers"),
    ((np.zeros((4, 3)), np.array([0, 1, 2, 0])), {"class_names": ["a", "b"]}, "label 2 is out of range"),
    ((np.zeros((4, 3)),), {"kind": "image"}, "kind=image needs (N, H, W[, C]) images"),
    ((np.zeros((4, 3)),), {"kind": "text"}, "kind must be one of vector, table, image"),
    ((np.zeros((1, 3)),), {}, "a test split needs at least 2"),
    ((np.zeros((4, 3)),), {"test_fraction": 1.5}, "test_fraction must be in (0, 1)"),
    ((np.array([["a", "b"]]),), {}, "x must hold numbers"),
])
def test_bad_arrays_get_one_line_errors(args, kw, message):
    with pytest.raises(GenlabError) as e:
        from_arrays(*args, **kw)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_to_model_checks_the_shape():
    spec = DataSpec.from_arrays(np.zeros((3, 4)) + np.arange(4))
    with pytest.raises(GenlabError, match=r"x has shape \(2, 5\); arrays holds \(N, 4\) rows"):
        spec.to_model(np.zeros((2, 5)))


def test_a_model_trains_in_memory_on_arrays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = np.random.default_rng(4).normal([10.0, -10.0], [1.0, 3.0], (512, 2))
    train, _ = genlab.from_arrays(x, test_fraction=0)
    torch.manual_seed(0)
    model = genlab.create("vae", train.spec, latent_dim=2, hidden=(32, 32))
    run = genlab.train(model, train, steps=40, batch_size=128, lr=3e-3, warmup_steps=5, log_every=5, progress=False)
    assert run.path is None and list(tmp_path.iterdir()) == []
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    samples = train.spec.to_original(model.sample(200, seed=0))
    assert samples.shape == (200, 2) and abs(samples[:, 0].mean() - 10) < 3  # back in the data's units
