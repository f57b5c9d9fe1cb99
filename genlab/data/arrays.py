"""Data from arrays in memory: `from_arrays(x, y)` -> (train, test) GenDatasets, `DataSpec.from_arrays` and
`DataSpec.to_model`. The npz: and csv: loaders and the built-in vector and table sets go through the same code.

Vectors and tables (N, D): standardised per column with the train part's mean and std, which the spec keeps so
`spec.to_original` gives original units back (one-hot blocks of categorical table columns stay 0/1).
Images (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}: uint8, or floats in [0, 1] or [-1, 1] (read as
8-bit), to (N, C, H, W) floats in [-1, 1] on 256 levels.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import GenlabError
from .dataset import GenDataset, images_from_uint8, split_indices, standardize
from .spec import Column, DataSpec

Split = tuple[torch.Tensor, torch.Tensor | None]
ArrayLike = np.ndarray | torch.Tensor
KINDS = ("vector", "table", "image")


def as_numpy(a: ArrayLike, what: str) -> np.ndarray:
    """A numpy view of an array or tensor (tensors are detached and moved to the CPU first)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu()
        return (a.float() if a.dtype == torch.bfloat16 else a).numpy()
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise GenlabError(f"{what} must hold numbers, got dtype {arr.dtype}; encode it as numbers first")
    return arr


def check_finite(a: np.ndarray, where: object) -> None:
    """A one-line error naming the first row with NaN or inf."""
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        i = int(np.argwhere(~np.isfinite(a))[0][0])
        raise GenlabError(f"{where} holds NaN or inf (first at row {i}); clean or drop those rows")


def check_labels(y: ArrayLike, n: int, where: object) -> np.ndarray:
    """(N,) class indices 0..K-1 (any integer or bool dtype, or integral floats) -> int64, one per row of x."""
    y = as_numpy(y, f"{where} labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise GenlabError(f"{where}: labels must be one class index per row, shape (N,), got {y.shape}")
    if len(y) != n:
        raise GenlabError(f"{where}: {len(y)} labels for {n} rows of x")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise GenlabError(f"{where}: labels must be whole numbers (class indices 0..K-1), got {y.dtype} fractions")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        i = int(np.argmax(y < 0))
        raise GenlabError(f"{where}: label {int(y[i])} at row {i}; labels must be class indices 0..K-1")
    return y


def infer_kind(x: np.ndarray, kind: str | None, where: object) -> str:
    """`kind` checked against x's shape, or the kind x's shape implies: (N, D) vector, (N, H, W[, C]) image."""
    if x.ndim == 2:
        natural = "vector"
    elif x.ndim in (3, 4):
        natural = "image"
    else:
        raise GenlabError(f"{where}: x has shape {x.shape}; expected (N, D) vectors or (N, H, W[, C]) images")
    if kind is None:
        return natural
    if kind not in KINDS:
        raise GenlabError(f"kind must be one of {', '.join(KINDS)} (or None to infer it), got '{kind}'")
    if (kind == "image") != (natural == "image"):
        want = "(N, H, W[, C]) images" if kind == "image" else "(N, D) rows"
        raise GenlabError(f"{where}: kind={kind} needs {want}, x has shape {x.shape}")
    return kind


def _nhwc(a: np.ndarray) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3} -> (N, H, W, C)."""
    if a.ndim == 3:
        return a[..., None]
    if a.shape[1] in (1, 3) and a.shape[3] not in (1, 3):
        return a.transpose(0, 2, 3, 1)
    return a


def images_from_array(a: np.ndarray, where: object) -> torch.Tensor:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) uint8, or floats in [0, 1] or [-1, 1] -> (N, C, H, W) in [-1, 1]."""
    a = _nhwc(a)
    if a.dtype == np.uint8:
        return images_from_uint8(a)
    lo, hi = float(a.min()), float(a.max())
    if lo >= 0 and hi <= 1:
        return images_from_uint8(np.round(a * 255).astype(np.uint8))
    if lo >= -1 and hi <= 1:
        return images_from_uint8(np.round((a + 1) * 127.5).astype(np.uint8))
    raise GenlabError(f"{where}: float images must lie in [0, 1] or [-1, 1], found [{lo:g}, {hi:g}]; or save uint8")


def spec_from_arrays(x: ArrayLike, y: ArrayLike | None = None, *, kind: str | None = None, name: str = "arrays",
                     num_classes: int | None = None, class_names: list[str] | None = None,
                     columns: list[Column] | None = None, where: object = "x") -> DataSpec:
    """The DataSpec of data x (the train part: vectors and tables take its mean and std), checked.

    x: (N, D) vectors/tables or (N, H, W[, C]) / (N, C, H, W) images; y: (N,) class indices or None.
    num_classes: default max(y) + 1, or len(class_names); columns: a table's columns (widths summing to D),
    default one numeric column per dim for kind='table'."""
    x = as_numpy(x, str(where))
    kind = infer_kind(x, kind, where)
    if len(x) == 0 or x.size == 0:
        raise GenlabError(f"{where} is empty (shape {x.shape}); give at least one row")
    check_finite(x, where)
    if y is not None:
        y = check_labels(y, len(x), where)
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        num_classes = len(class_names)
    if num_classes is None and y is not None:
        num_classes = int(y.max()) + 1
    if y is not None and len(y) and int(y.max()) >= num_classes:
        raise GenlabError(f"{where}: label {int(y.max())} is out of range for {num_classes} classes")
    if kind == "image":
        nhwc = _nhwc(x)
        shape = (nhwc.shape[3], nhwc.shape[1], nhwc.shape[2])
        return DataSpec(name, "image", shape, num_classes, class_names, levels=256)
    x = x.astype(np.float64)
    mean, std = standardize(x)
    if kind == "table" and columns is None:
        columns = [Column(f"x{i}") for i in range(x.shape[1])]
    if columns is not None:
        widths = sum(c.width for c in columns)
        if widths != x.shape[1]:
            raise GenlabError(f"{where}: the columns take {widths} dims, x has {x.shape[1]}")
        # one-hot blocks stay 0/1: standardising them would break argmax decoding of categories
        onehot = np.concatenate([np.full(c.width, c.type == "categorical") for c in columns])
        mean, std = np.where(onehot, 0.0, mean), np.where(onehot, 1.0, std)
    return DataSpec(name=name, kind=kind, shape=(x.shape[1],), num_classes=num_classes, class_names=class_names,
                    value_range=(-float("inf"), float("inf")), mean=mean.tolist(), std=std.tolist(), columns=columns)


def to_model(spec: DataSpec, x: ArrayLike, where: object = "x") -> torch.Tensor:
    """Original units -> model space, the inverse of `spec.to_original` (for tables: of its numeric form, with
    categorical columns one-hot). Vectors/tables (N, D) -> (x - mean) / std as float32; images as
    `images_from_array`, -> (N, *spec.shape) in [-1, 1] on the spec's grid of `levels` values."""
    x = as_numpy(x, str(where))
    check_finite(x, where)
    if spec.is_image:
        if x.ndim not in (3, 4):
            raise GenlabError(f"{where}: x has shape {x.shape}; {spec.name} holds (N, H, W[, C]) images")
        out = images_from_array(x, where)
        levels = spec.levels or 256
        if levels != 256:  # 8-bit values back onto the spec's coarser grid, as to_original wrote them
            k = np.round((out.permute(0, 2, 3, 1).numpy().astype(np.float64) + 1) / 2 * (levels - 1))
            out = images_from_uint8(k, levels)
    else:
        if x.ndim != 2 or x.shape[1:] != tuple(spec.shape):
            raise GenlabError(f"{where}: x has shape {x.shape}; {spec.name} holds (N, {spec.dims}) rows")
        x = x.astype(np.float64)
        if spec.mean is not None:
            x = (x - np.asarray(spec.mean)) / np.asarray(spec.std)
        out = torch.from_numpy(x).float()
    if tuple(out.shape[1:]) != tuple(spec.shape):
        raise GenlabError(f"{where}: rows of shape {tuple(out.shape[1:])}, {spec.name} has {tuple(spec.shape)}")
    return out


def model_splits(name: str, kind: str | None, xtr: ArrayLike, ytr: ArrayLike | None, xte: ArrayLike,
                 yte: ArrayLike | None, *, num_classes: int | None = None, class_names: list[str] | None = None,
                 columns: list[Column] | None = None, where: object = "x") -> tuple[Split, Split, DataSpec]:
    """(train, test, spec) in model space from original-unit arrays; the spec (and standardisation) is the train
    part's. The loaders' common path: returns ((x, y), (x, y), spec) with y (N,) int64 tensors or None."""
    spec = spec_from_arrays(xtr, ytr, kind=kind, name=name, num_classes=num_classes, class_names=class_names,
                            columns=columns, where=where)

    def lab(a, n):
        return None if a is None else torch.from_numpy(check_labels(a, n, where))

    return ((to_model(spec, xtr, where), lab(ytr, len(xtr))), (to_model(spec, xte, where), lab(yte, len(xte))),
            spec)


def from_arrays(x: ArrayLike, y: ArrayLike | None = None, *, kind: str | None = None, name: str = "arrays",
                test_fraction: float = 0.1, seed: int = 0,
                class_names: list[str] | None = None) -> tuple[GenDataset, GenDataset | None]:
    """Datasets in model space from arrays or tensors in original units: always a pair (train, test).

    x: (N, D) floats -> vectors, standardised with the train part's mean and std (kept in the spec, so
    `spec.to_original` returns original units); (N, H, W), (N, H, W, C) or (N, C, H, W) uint8 (or floats in
    [0, 1] or [-1, 1]) -> images (C, H, W) in [-1, 1]. kind: None infers vector or image from x's shape;
    'table' gives a table of numeric columns x0, x1, ... y: (N,) class indices 0..K-1 (num_classes = K, the
    max label + 1, or len(class_names)) or None (unlabelled). test_fraction: the share held out as the test
    split, a fixed split drawn by `seed` (at least one row each side); 0 keeps every row for training and
    returns (train, None), e.g. for an estimator's `fit`. Bad input (NaN/inf, wrong ndim, a label count that
    does not match, empty x, a negative label) is a one-line GenlabError."""
    x = as_numpy(x, "x")
    kind = infer_kind(x, kind, "x")
    if len(x) == 0 or x.size == 0:
        raise GenlabError(f"x is empty (shape {x.shape}); give at least one row")
    check_finite(x, "x")
    y = check_labels(y, len(x), "x") if y is not None else None
    num_classes = None if y is None else len(class_names) if class_names is not None else int(y.max()) + 1
    if y is not None and int(y.max()) >= num_classes:
        raise GenlabError(f"x: label {int(y.max())} is out of range for the {num_classes} class_names")
    if test_fraction == 0:
        spec = spec_from_arrays(x, y, kind=kind, name=name, num_classes=num_classes, class_names=class_names)
        return GenDataset(to_model(spec, x), None if y is None else torch.from_numpy(y), spec, "train"), None
    if len(x) < 2:
        raise GenlabError(f"x has {len(x)} row; a test split needs at least 2 (or pass test_fraction=0)")
    tr, te = split_indices(len(x), test_fraction, seed)
    (xt, yt), (xs, ys), spec = model_splits(name, kind, x[tr], None if y is None else y[tr], x[te],
                                            None if y is None else y[te], num_classes=num_classes,
                                            class_names=class_names)
    return GenDataset(xt, yt, spec, "train"), GenDataset(xs, ys, spec, "test")
