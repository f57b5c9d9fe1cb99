"""Data sources, DataSpec round-trips and the user's own data."""

import gzip

import numpy as np
import pytest
import torch

import genlab
from genlab.data import builtin
from genlab.errors import GenlabError

FASHION = builtin.idx_folder("fashion-mnist") is not None


@pytest.mark.parametrize("name,shape,classes,n_train,n_test", [
    ("gaussians8", (2,), 8, 20_000, 2_500), ("gaussians25", (2,), 25, 20_000, 2_500),
    ("moons", (2,), 2, 20_000, 2_500), ("swissroll", (2,), None, 20_000, 2_500),
    ("circles", (2,), 2, 20_000, 2_500), ("checkerboard", (2,), None, 20_000, 2_500),
    ("digits", (1, 8, 8), 10, 1438, 359), ("mnist5k", (1, 28, 28), 10, 4000, 1000),
    ("breast-cancer", (30,), 2, 455, 114), ("wine", (13,), 3, 142, 36),
])
def test_builtin_sources(name, shape, classes, n_train, n_test):
    tr, te = genlab.load_dataset(name), genlab.load_dataset(name, "test")
    assert (len(tr), len(te)) == (n_train, n_test)
    assert tr.spec.shape == shape and tuple(tr.x.shape[1:]) == shape
    assert tr.spec.num_classes == classes
    if tr.spec.is_image:
        assert tr.x.min() == -1 and tr.x.max() == 1
    else:  # standardised with the train split's statistics
        assert torch.allclose(tr.x.mean(0), torch.zeros(shape), atol=1e-5)
        assert torch.allclose(tr.x.std(0, unbiased=False), torch.ones(shape), atol=1e-4)


@pytest.mark.skipif(not FASHION, reason="fashion-mnist IDX files not installed")
def test_fashion_mnist_from_debian_idx():
    tr, te = genlab.load_dataset("fashion-mnist"), genlab.load_dataset("fashion-mnist", "test")
    assert (len(tr), len(te)) == (60_000, 10_000)
    assert tr.y[:5].tolist() == [9, 0, 0, 3, 0]  # the first train labels of Fashion-MNIST
    assert torch.bincount(te.y).tolist() == [1000] * 10
    assert tr.spec.class_names[9] == "Ankle boot"


def test_mixture_modes_match_design():
    centres, std = builtin.MIXTURES["gaussians8"]
    angles = np.sort(np.mod(np.arctan2(centres[:, 1], centres[:, 0]), 2 * np.pi))
    assert np.allclose(np.diff(angles), 2 * np.pi / 8) and std == 0.01  # 8 distinct modes, none repeated
    assert np.allclose(np.linalg.norm(centres, axis=1), 1.0)
    c25, s25 = builtin.MIXTURES["gaussians25"]
    assert len({tuple(c) for c in c25}) == 25 and set(c25.ravel()) == {-4, -2, 0, 2, 4} and s25 == 0.05
    ds = genlab.load_dataset("gaussians8")
    raw = ds.spec.to_original(ds.x)
    d = np.linalg.norm(raw[:, None] - centres[None], axis=-1).min(1)
    assert np.quantile(d, 0.99) < 4 * std


def test_to_original_inverts_standardisation():
    from sklearn.datasets import load_wine

    ds = genlab.load_dataset("wine")
    back = ds.spec.to_original(ds.x)
    raw = load_wine().data
    assert all(np.abs(raw - row).sum(1).min() < 1e-4 for row in np.asarray([back[c] for c in back]).T[:10])


def test_idx_reader_against_handmade_file(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    p = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(p, "wb") as f:
        f.write(header + arr.tobytes())
    assert np.array_equal(builtin.read_idx(p), arr)
    (tmp_path / "bad").write_bytes(header + arr.tobytes()[:-3])
    with pytest.raises(GenlabError, match="truncated"):
        builtin.read_idx(tmp_path / "bad")


def _png(path, size=(8, 8), value=0, mode="L"):
    from PIL import Image

    Image.new(mode, size, value).save(path)


def test_folder_with_class_subfolders(tmp_path):
    for c, v in (("cats", 10), ("dogs", 200)):
        (tmp_path / c).mkdir()
        for i in range(5):
            _png(tmp_path / c / f"{i}.png", value=v)
    tr, te = genlab.load_dataset(f"folder:{tmp_path}"), genlab.load_dataset(f"folder:{tmp_path}", "test")
    assert len(tr) + len(te) == 10 and tr.spec.class_names == ["cats", "dogs"] and tr.spec.shape == (1, 8, 8)
    img = tr.spec.to_original(tr.x[tr.y == 1][:1])
    assert img.dtype == np.uint8 and int(img[0, 0, 0, 0]) == 200  # exact round trip of pixel values


def test_folder_errors_corrupt_and_mixed_sizes(tmp_path):
    (tmp_path / "a").mkdir()
    _png(tmp_path / "a" / "ok.png")
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(GenlabError, match="cannot read image .*broken.png"):
        genlab.load_dataset(f"folder:{tmp_path / 'a'}")
    (tmp_path / "b").mkdir()
    _png(tmp_path / "b" / "small.png", (8, 8))
    _png(tmp_path / "b" / "large.png", (16, 16))
    with pytest.raises(GenlabError, match="mixed image sizes"):
        genlab.load_dataset(f"folder:{tmp_path / 'b'}")
    assert genlab.load_dataset(f"folder:{tmp_path / 'b'}", size=8).spec.shape == (1, 8, 8)  # resize on request
    with pytest.raises(GenlabError, match="not found"):
        genlab.load_dataset(f"folder:{tmp_path / 'nope'}")


def test_npz_images_and_vectors(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", x=rng.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8), y=np.arange(50) % 5)
    ds = genlab.load_dataset(f"npz:{tmp_path / 'img.npz'}")
    assert ds.spec.shape == (3, 8, 8) and ds.spec.num_classes == 5
    vec = rng.normal(5, 3, (100, 4))
    np.savez(tmp_path / "vec.npz", x=vec)
    v = genlab.load_dataset(f"npz:{tmp_path / 'vec.npz'}")
    back = v.spec.to_original(v.x)
    assert v.spec.kind == "vector" and np.abs(back[:, None] - vec[None]).sum(-1).min(1).max() < 1e-4
    vec[7, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=vec)
    with pytest.raises(GenlabError, match="NaN"):
        genlab.load_dataset(f"npz:{tmp_path / 'nan.npz'}")


def test_csv_with_categorical_and_target(tmp_path):
    p = tmp_path / "t.csv"
    rows = ["age,city,income,label"] + [f"{20 + i},{['paris', 'oslo', 'rome'][i % 3]},{1000 + 7 * i},{'ab'[i % 2]}"
                                         for i in range(40)]
    p.write_text("\n".join(rows) + "\n")
    ds = genlab.load_dataset(f"csv:{p}:target=label")
    assert ds.spec.kind == "table" and ds.spec.num_classes == 2 and ds.spec.class_names == ["a", "b"]
    assert [c.name for c in ds.spec.columns] == ["age", "city", "income"] and ds.spec.shape == (5,)
    back = ds.spec.to_original(ds.x)
    block = ds.x[:, 1:4]  # the city one-hot block stays 0/1 with one 1 per row, not standardised
    assert set(block.unique().tolist()) == {0.0, 1.0} and torch.all(block.sum(1) == 1)
    cities = {20 + i: ["paris", "oslo", "rome"][i % 3] for i in range(40)}
    assert all(cities[round(a)] == c for a, c in zip(back["age"], back["city"]))  # each row decodes to its own city
    ages = back["age"]
    assert np.allclose(ages, np.round(ages), atol=1e-4)  # exact units come back
    p.write_text("a,b\n1,2\n3,\n5,6\n")
    with pytest.raises(GenlabError, match="column 'b' .* row 1"):
        genlab.load_dataset(f"csv:{p}")


def test_unknown_dataset_suggests_closest():
    with pytest.raises(GenlabError, match="did you mean 'fashion-mnist'"):
        genlab.load_dataset("fashon-mnist")
