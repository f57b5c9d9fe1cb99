"""A mixed-type table <-> the real-valued matrix a generative model learns, and back with the table's own dtypes.

Numeric columns: mode-specific normalisation (Xu et al. 2019, CTGAN/TVAE): a variational Gaussian mixture
(at most `max_modes` components, those with weight > 0.005 kept) per column; a value becomes the one-hot of a
mode drawn from its posterior and alpha = (x - mu_k) / (4 sigma_k), mostly in [-1, 1]. Decoding takes the
arg-max mode and clips to the training range, rounded to the decimals the training values have (integer columns stay
integers). Categorical columns: one-hot of the categories seen
in training (a missing value is a category of its own); decoding takes the arg-max, so a decoded value is always
one seen in training. Numeric columns with missing values get a two-way "missing" block.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import GenlabError

MODE_WEIGHT = 0.005  # CTGAN's threshold on a mixture component's weight (Xu et al. 2019)


@dataclass
class ColumnCodec:
    name: str
    type: str  # numeric | categorical
    dtype: str  # the pandas dtype to restore
    categories: list[Any] = field(default_factory=list)  # categorical: values seen in training (None = missing)
    means: list[float] = field(default_factory=list)  # numeric: one per mode
    stds: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    lo: float = 0.0
    hi: float = 0.0
    integer: bool = False
    decimals: int | None = None  # numeric: the digits after the point the training values have (None: any)
    levels: list[Any] | None = None  # dtype category: its categories, in order
    ordered: bool = False
    missing: bool = False  # numeric: has a missing block

    @property
    def width(self) -> int:
        if self.type == "categorical":
            return len(self.categories)
        return 1 + len(self.means) + (2 if self.missing else 0)


def round_to(x: np.ndarray, decimals: int | None) -> np.ndarray:
    return x if decimals is None else np.round(x, decimals)


def as_named(df):
    """df with its column names as strings (the codec's and the metrics' keys), refusing duplicates."""
    names = [str(c) for c in df.columns]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GenlabError(f"the table has more than one column named {', '.join(dup)}; rename them")
    return df.set_axis(names, axis=1)


def category_codes(c: ColumnCodec, v: np.ndarray) -> np.ndarray:
    """(N,) indices into c.categories of a categorical column's values (a missing value: the None category);
    a value not seen in training is a GenlabError."""
    miss = is_missing(v)
    index = {cat: i for i, cat in enumerate(c.categories)}
    out = np.empty(len(v), dtype=np.int64)
    for r, val in enumerate(v):
        key = None if miss[r] else _plain(val)
        if key not in index:
            raise GenlabError(f"column '{c.name}' has value {key!r} at row {r}, not seen in training")
        out[r] = index[key]
    return out


def is_missing(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.isna(values)


def _plain(v: Any) -> Any:
    """A category value as JSON can hold it (numpy scalars to Python ones, missing to None)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


class TableCodec:
    """fit(df) learns the columns; encode(df) -> (N, D) float64; decode(Z) -> DataFrame with the original columns,
    order, dtypes and categories. `categorical`: the columns to treat as categories (besides those of dtype
    category or bool); a text column not named there is an error. mode_specific=False standardises numeric columns
    instead (one mode)."""

    def __init__(self, categorical: list[str] | str | None = None, mode_specific: bool = True, max_modes: int = 10,
                 seed: int = 0):
        self.categorical = categorical
        self.mode_specific = mode_specific
        self.max_modes = max_modes
        self.seed = seed
        self.columns: list[ColumnCodec] = []

    # ---- fitting
    def fit(self, df) -> TableCodec:
        import pandas as pd

        if not isinstance(df, pd.DataFrame):
            raise GenlabError(f"a table must be a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0 or df.shape[1] == 0:
            raise GenlabError(f"the table is empty ({df.shape[0]} rows x {df.shape[1]} columns)")
        df = as_named(df)
        when = [c for c in df.columns if df[c].dtype.kind in "mM"]
        if when:
            raise GenlabError(f"column(s) {', '.join(when)} hold dates or durations: convert them to numbers (e.g. "
                              "days since a start) or to text first")
        declared = self._declared(df)
        self.columns = [self._fit_column(str(c), df[c], c in declared) for c in df.columns]
        return self

    def _declared(self, df) -> set:
        cols = list(df.columns)
        if self.categorical == "infer":
            return {c for c in cols if df[c].dtype.kind not in "fiu"}
        named = [] if self.categorical is None else [self.categorical] if isinstance(self.categorical, str) \
            else [str(c) for c in self.categorical]
        unknown = [c for c in named if c not in cols]
        if unknown:
            raise GenlabError(f"categorical names {', '.join(map(str, unknown))}, not columns of the table; "
                              f"columns: {', '.join(map(str, cols))}")
        auto = {c for c in cols if df[c].dtype.kind == "b" or str(df[c].dtype) == "category"}
        text = [str(c) for c in cols if df[c].dtype.kind not in "fiub" and c not in named and c not in auto]
        if text:
            raise GenlabError(f"column(s) {', '.join(text)} hold text but are not declared categorical: pass "
                              f"categorical={text!r} (or categorical='infer' for every non-numeric column)")
        return set(named) | auto

    def _fit_column(self, name: str, s, categorical: bool) -> ColumnCodec:
        dtype = str(s.dtype)
        miss = is_missing(s.to_numpy())
        if categorical:
            try:
                seen = [_plain(v) for v in s[~miss].unique()]
            except TypeError:
                raise GenlabError(f"column '{name}' holds values that cannot be categories (lists or dicts?); "
                                  "convert them to text first") from None
            with contextlib.suppress(TypeError):  # mixed types: keep the order of appearance
                seen = sorted(seen)
            col = ColumnCodec(name, "categorical", dtype, categories=seen + ([None] if miss.any() else []))
            if dtype == "category":  # the dtype's own categories and order come back on decoding
                col.levels, col.ordered = [_plain(v) for v in s.cat.categories], bool(s.cat.ordered)
            return col
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        x = x[~np.isnan(x)]
        if len(x) == 0:
            raise GenlabError(f"numeric column '{name}' has no values; drop it")
        if np.isinf(x).any():
            raise GenlabError(f"numeric column '{name}' holds inf; clean or drop those rows")
        # the fewest decimals that hold every value (relative tolerance); None: values of any precision, not rounded
        decimals = next((d for d in range(7) if np.allclose(x, np.round(x, d), rtol=1e-9, atol=0)), None)
        col = ColumnCodec(name, "numeric", dtype, lo=float(x.min()), hi=float(x.max()), integer=decimals == 0,
                          missing=bool(miss.any()), decimals=decimals)
        col.means, col.stds, col.weights = self._modes(x)
        return col

    def _modes(self, x: np.ndarray) -> tuple[list[float], list[float], list[float]]:
        std = float(x.std()) or 1.0
        k = min(self.max_modes, len(np.unique(x)))
        if not self.mode_specific or k < 2:
            return [float(x.mean())], [std], [1.0]
        import warnings

        from sklearn.mixture import BayesianGaussianMixture

        gm = BayesianGaussianMixture(n_components=k, weight_concentration_prior_type="dirichlet_process",
                                     weight_concentration_prior=1e-3, max_iter=200, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings on tiny columns: the fit is still usable
            gm.fit(x[:, None])
        keep = gm.weights_ > MODE_WEIGHT
        means = gm.means_[keep, 0]
        stds = np.sqrt(gm.covariances_[keep].reshape(-1)).clip(min=1e-3 * std)
        w = gm.weights_[keep] / gm.weights_[keep].sum()
        return means.tolist(), stds.tolist(), w.tolist()

    # ---- encoding
    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def encode(self, df, seed: int | None = None) -> np.ndarray:
        """(N, width) float64: per column its alpha, mode one-hot and missing block, or its category one-hot."""
        names = [c.name for c in self.columns]
        absent = [n for n in names if n not in map(str, df.columns)]
        if absent:
            raise GenlabError(f"the table lacks column(s) {', '.join(absent)} seen in training")
        df = df.rename(columns=str)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return np.concatenate([self._encode_column(c, df[c.name].to_numpy(), rng) for c in self.columns], 1)

    def _encode_column(self, c: ColumnCodec, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if c.type == "categorical":
            return np.eye(len(c.categories))[category_codes(c, v)]
        import pandas as pd

        try:
            x = pd.Series(v).astype("float64").to_numpy()
        except (TypeError, ValueError):
            raise GenlabError(f"numeric column '{c.name}' holds values that are not numbers") from None
        if np.isinf(x).any():
            raise GenlabError(f"numeric column '{c.name}' holds inf at row {int(np.argmax(np.isinf(x)))}")
        miss = np.isnan(x)
        if miss.any() and not c.missing:
            raise GenlabError(f"numeric column '{c.name}' has a missing value at row {int(np.argmax(miss))}, and "
                              "had none in training")
        x = np.where(miss, c.means[0], x)
        mu, sd, w = np.asarray(c.means), np.asarray(c.stds), np.asarray(c.weights)
        logp = np.log(w) - 0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd)  # log posterior of each mode, unnormed
        p = np.exp(logp - logp.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        k = (p.cumsum(1) > rng.random((len(x), 1))).argmax(1)  # a mode drawn from the posterior, as CTGAN
        alpha = (x - mu[k]) / (4 * sd[k])  # unclipped (CTGAN clips to 0.99): outliers round-trip exactly
        parts = [alpha[:, None], np.eye(len(mu))[k]]
        if c.missing:
            parts.append(np.stack([~miss, miss], 1).astype(np.float64))
        return np.concatenate(parts, 1)

    # ---- decoding
    def decode(self, z: np.ndarray):
        """(N, width) -> DataFrame with the training table's columns, dtypes and category values."""
        import pandas as pd

        if z.ndim != 2 or z.shape[1] != self.width:
            raise GenlabError(f"expected (N, {self.width}) encoded rows, got {z.shape}")
        out, i = {}, 0
        for c in self.columns:
            block = z[:, i:i + c.width]
            i += c.width
            if c.type == "categorical":
                vals = np.empty(len(z), dtype=object)
                vals[:] = [c.categories[j] for j in block.argmax(1)]
                out[c.name] = self._restore(pd.Series(vals), c)
                continue
            m = len(c.means)
            k = block[:, 1:1 + m].argmax(1)
            x = block[:, 0] * 4 * np.asarray(c.stds)[k] + np.asarray(c.means)[k]
            x = round_to(np.clip(x, c.lo, c.hi), c.decimals)  # as many decimals as the training values
            if c.missing:
                x = np.where(block[:, 1 + m + 1] > block[:, 1 + m], np.nan, x)
            out[c.name] = self._restore(pd.Series(x), c)
        return pd.DataFrame(out)

    @staticmethod
    def _restore(s, c: ColumnCodec):
        """The training column's dtype back; integer columns with missing values become pandas' nullable Int64."""
        import pandas as pd

        try:
            if c.type == "numeric" and c.dtype.startswith(("int", "uint")) and s.isna().any():
                return s.astype("Int64")
            if c.dtype == "category" and c.levels is not None:
                return s.astype(pd.CategoricalDtype(c.levels, ordered=c.ordered))
            return s.astype(c.dtype)
        except (TypeError, ValueError):
            return s

    # ---- persistence
    def to_dict(self) -> dict[str, Any]:
        return {"categorical": self.categorical, "mode_specific": self.mode_specific, "max_modes": self.max_modes,
                "seed": self.seed, "columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableCodec:
        codec = cls(d["categorical"], d["mode_specific"], d["max_modes"], d["seed"])
        codec.columns = [ColumnCodec(**c) for c in d["columns"]]
        return codec
