"""The user's own data: `folder:PATH` (images, one sub-folder per class or flat), `npz:PATH`, `csv:PATH`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import GenlabError
from .arrays import Split, check_finite, images_from_array, model_splits
from .dataset import images_from_uint8, min_items, split_indices
from .spec import Column, DataSpec
from .stream import GREY_MODES, FolderStream, list_images, read_image, stream_choice, stream_folder, to_uint8

__all__ = ["load_folder", "load_npz", "load_csv", "images_from_array"]


def _existing(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise GenlabError(f"{what} not found: {p}")
    return p


def load_folder(path: str, size: int | None = None, test_fraction: float = 0.1,
                stream: bool | str = "auto") -> tuple[Split | FolderStream, Split | FolderStream, DataSpec]:
    """Images under PATH/<class>/*.png (labelled) or PATH/*.png (unlabelled). Mixed sizes need `size=N`.
    Large folders stream from disk (see genlab.data.stream for the `stream` rule); others load in memory."""
    root = _existing(path, "image folder")
    classes, names, labels = list_images(root)
    tr, te = split_indices(len(names), test_fraction, seed=0)
    first = read_image(root / os.fsdecode(names[0]))
    grey0 = first.mode in GREY_MODES
    shape = (1 if grey0 else 3, *((int(size),) * 2 if size is not None else first.size[::-1]))
    if stream_choice(stream, len(names), shape):
        return stream_folder(root, classes, names, labels, tr, te, first, size)
    files = [root / os.fsdecode(n) for n in names]
    images = [first, *(read_image(f) for f in files[1:])]
    grey = all(im.mode in GREY_MODES for im in images)
    sizes = {im.size for im in images}
    if size is None and len(sizes) > 1:
        a, im_a = files[0], images[0]
        b, im_b = next((f, im) for f, im in zip(files, images) if im.size != im_a.size)
        sa, sb = im_a.size, im_b.size
        raise GenlabError(f"mixed image sizes in {root}: {a.name} is {sa[0]}x{sa[1]}, {b.name} is {sb[0]}x{sb[1]}; "
                          f"resize them or pass --set data.size=N to resize on load")
    x = images_from_uint8(np.stack([to_uint8(im, grey, size) for im in images]))
    y = torch.from_numpy(labels)
    spec = DataSpec(f"folder:{root}", "image", tuple(x.shape[1:]), len(classes) or None, classes or None, levels=256)
    yy = y if classes else None
    return (x[tr], None if yy is None else yy[tr]), (x[te], None if yy is None else yy[te]), spec


def load_npz(path: str, test_fraction: float = 0.1) -> tuple[Split, Split, DataSpec]:
    """Arrays `x` (and optional `y`, `x_test`, `y_test`). uint8 (N,H,W[,C]) or (N,C,H,W) are images; (N,D) vectors."""
    p = _existing(path, "npz file")
    try:
        z = np.load(p, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
        raise GenlabError(f"cannot read {p} as .npz ({e}); save it with numpy.savez") from None
    if "x" not in arrays:
        found = ", ".join(arrays) or "none"
        raise GenlabError(f"{p} has no array named 'x' (found: {found}); save with np.savez(f, x=..., y=...)")
    x, y = arrays["x"], arrays.get("y")
    check_finite(x, p)
    if y is not None and len(y) != len(x):
        raise GenlabError(f"{p}: 'y' has {len(y)} labels for {len(x)} rows of 'x'")
    if "x_test" in arrays:
        xtr, ytr, xte, yte = x, y, arrays["x_test"], arrays.get("y_test")
    else:
        tr, te = split_indices(len(x), test_fraction)
        xtr, xte = x[tr], x[te]
        ytr, yte = (y[tr], y[te]) if y is not None else (None, None)
    classes = int(max(ytr.max(), yte.max() if yte is not None else 0)) + 1 if ytr is not None else None
    if x.ndim not in (2, 3, 4):
        raise GenlabError(f"{p}: 'x' has shape {x.shape}; expected (N, D) vectors or (N, H, W[, C]) images")
    return model_splits(f"npz:{p}", "vector" if x.ndim == 2 else "image", xtr, ytr, xte, yte, num_classes=classes,
                        where=p)


def load_csv(path: str, target: str | None = None, test_fraction: float = 0.2) -> tuple[Split, Split, DataSpec]:
    """A table; text columns are categorical (one-hot), `target=COL` gives class labels."""
    try:
        import pandas as pd
    except ImportError:
        raise GenlabError("csv: data needs pandas: pip install 'genlab[tables]'") from None
    p = _existing(path, "csv file")
    try:
        df = pd.read_csv(p)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise GenlabError(f"cannot parse {p} as CSV ({str(e).splitlines()[0]})") from None
    return frame_splits(df, f"csv:{p}", p, target, test_fraction)


def frame_splits(df, name: str, where: object, target: str | None = None,
                 test_fraction: float = 0.2) -> tuple[Split, Split, DataSpec]:
    """A pandas DataFrame as a table's (train, test, spec): numeric columns standardised, the others categorical
    (one-hot, categories sorted as strings); `target` a column whose values become the class labels."""
    import pandas as pd

    if df.empty:
        raise GenlabError(f"{where} has no rows")
    df = df.copy()
    y = class_names = None
    if target is not None:
        if target not in df.columns:
            raise GenlabError(f"target column '{target}' not in {where}; columns: {', '.join(map(str, df.columns))}")
        codes, uniques = pd.factorize(df.pop(target), sort=True)
        if (codes < 0).any():
            raise GenlabError(f"target column '{target}' has a missing value at row {int(np.argmax(codes < 0))}")
        y, class_names = codes.astype(np.int64), [str(u) for u in uniques]
    cols, blocks = [], []
    for col in df.columns:
        s = df[col]
        bad = s.isna().to_numpy().copy()
        if s.dtype.kind in "fiub":
            bad |= ~np.isfinite(s.to_numpy(dtype=np.float64))
        if bad.any():
            raise GenlabError(f"column '{col}' of {where} has a missing, NaN or inf value at row "
                              f"{int(np.argmax(bad))}; fill or drop it")
        if s.dtype.kind in "fiub":
            cols.append(Column(str(col)))
            blocks.append(s.to_numpy(dtype=np.float64)[:, None])
        else:
            cats = sorted(map(str, s.unique()))
            cols.append(Column(str(col), "categorical", cats))
            blocks.append((s.astype(str).to_numpy()[:, None] == np.asarray(cats)[None]).astype(np.float64))
    need = min_items(test_fraction)
    if len(df) < need:
        raise GenlabError(f"{where} has {len(df)} row(s); a table needs at least {need}, so that its train and test "
                          f"splits (test_fraction {test_fraction}) hold 2 rows or more each")
    data = np.concatenate(blocks, 1)
    tr, te = split_indices(len(data), test_fraction)
    ysplit = (y[tr], y[te]) if y is not None else (None, None)
    # categorical columns' one-hot blocks stay 0/1 (mean 0, std 1 in the spec): argmax decodes them
    return model_splits(name, "table", data[tr], ysplit[0], data[te], ysplit[1], class_names=class_names,
                        columns=cols, where=where)
