"""Synthetic tables: a generative model of a mixed-type table (numeric and categorical columns, missing values),
sampled back as a table with the original columns, dtypes and category values.

    synth = TabularSynthesizer(kind="vae", categorical="infer", minutes=2).fit(df)
    fake = synth.sample(1000)                 # a DataFrame like df
    synthesis_report(df_train, fake, df_holdout, target="species")   # fidelity, utility, privacy

kind: any genlab kind that samples vectors (vae ~ TVAE, gan ~ CTGAN without its conditional sampler, ddpm ~
TabDDPM with Gaussian diffusion on one-hot blocks, maf / nsf flows), trained on the table as `TableCodec` encodes
it; or "copula", the Gaussian-copula baseline (empirical marginals, one correlation matrix of normal scores:
`GaussianCopula`). epsilon: differentially private training with Opacus' DP-SGD for vae and ddpm (ε at `delta`,
default 1 / (10 N)), reported as `epsilon_`; the VAE's decoder sigma then stays at its initial value. ε covers the
model's training only: the codec's column ranges, category lists and mixture modes are read from the data
without noise (as CTGAN's and SDV's preprocessing does), so they must be public knowledge for ε to hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..errors import GenlabError
from .anomaly import budget_of, seed_of
from .table_codec import TableCodec, category_codes, round_to

# CTGAN's recipe (Xu et al. 2019): WGAN-GP with PacGAN's packing of 10 rows; genlab's default non-saturating GAN
# without it collapses on a table (fidelity 0.46 against 0.86 on ISLR Credit: docs/BENCHMARKS.md §29)
KIND_OPTIONS = {"gan": {"loss": "wgan-gp", "pac": 10}}
DP_KINDS = ("vae", "ddpm")  # one loss, one optimiser, layers Opacus computes per-row gradients of


def as_frame(X):
    """A DataFrame as is; a 2-D array as numeric columns x0, x1, ..."""
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        from .table_codec import as_named

        return as_named(X)
    a = np.asarray(X)
    if a.ndim != 2:
        raise GenlabError(f"a table must be a DataFrame or (N, D) rows, got shape {a.shape}")
    return pd.DataFrame(a, columns=[f"x{i}" for i in range(a.shape[1])])


class GaussianCopula:
    """The Gaussian-copula baseline on a TableCodec's columns (Patki et al. 2016, the Synthetic Data Vault):
    each column to normal scores through its empirical CDF (a category through its frequency interval, a missing
    value as a category of a numeric column's missing block), one correlation matrix, and back through the
    empirical quantiles. Fit on the raw columns, not the mode-specific encoding."""

    def fit(self, df, codec: TableCodec, seed: int) -> GaussianCopula:
        from scipy.stats import norm

        rng = np.random.default_rng(seed)
        self.marginals, cols = [], []
        for c in codec.columns:
            v = df[c.name].to_numpy()
            if c.type == "categorical":
                idx = category_codes(c, v)
                p = np.bincount(idx, minlength=len(c.categories)) / len(v)
                lo = np.r_[0, np.cumsum(p)[:-1]]
                u = lo[idx] + p[idx] * rng.random(len(v))  # uniform inside the category's interval
                self.marginals.append(("categorical", lo.tolist()))
            else:
                x = np.asarray(v, dtype=np.float64)
                miss = np.isnan(x)
                known = np.sort(x[~miss])
                share = miss.mean()  # the missing values take the interval [0, share)
                left = np.searchsorted(known, x[~miss], side="left")
                right = np.searchsorted(known, x[~miss], side="right")  # ties share their whole interval
                r = (left + (right - left) * rng.random((~miss).sum())) / len(known)
                u = np.empty(len(x))
                u[~miss] = share + (1 - share) * r
                u[miss] = share * rng.random(miss.sum())
                self.marginals.append(("numeric", {"values": known.tolist(), "missing": float(share)}))
            cols.append(norm.ppf(np.clip(u, 1e-6, 1 - 1e-6)))
        z = np.stack(cols, 1)
        self.corr = np.corrcoef(z, rowvar=False) if z.shape[1] > 1 else np.ones((1, 1))
        self.corr = np.nan_to_num(self.corr) + 1e-6 * np.eye(len(self.corr))
        return self

    def sample(self, n: int, codec: TableCodec, seed: int):
        import pandas as pd
        from scipy.stats import norm

        rng = np.random.default_rng(seed)
        u = norm.cdf(rng.multivariate_normal(np.zeros(len(self.corr)), self.corr, size=n, method="cholesky"))
        out = {}
        for j, (c, (kind, m)) in enumerate(zip(codec.columns, self.marginals)):
            if kind == "categorical":
                idx = np.searchsorted(np.asarray(m), u[:, j], side="right") - 1
                vals = np.empty(n, dtype=object)
                vals[:] = [c.categories[i] for i in idx]
                out[c.name] = TableCodec._restore(pd.Series(vals), c)
            else:
                known, share = np.asarray(m["values"]), m["missing"]
                r = np.clip((u[:, j] - share) / max(1 - share, 1e-12), 0, 1)
                x = np.quantile(known, r)
                x = np.where(u[:, j] < share, np.nan, round_to(x, c.decimals))
                out[c.name] = TableCodec._restore(pd.Series(x), c)
        return pd.DataFrame(out)

    def to_dict(self) -> dict[str, Any]:
        return {"marginals": self.marginals, "corr": self.corr.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GaussianCopula:
        g = cls()
        g.marginals, g.corr = [tuple(m) for m in d["marginals"]], np.asarray(d["corr"])
        return g


class TabularSynthesizer(BaseEstimator):
    """kind: a genlab kind that samples vectors, or "copula"; steps / minutes: the training budget; options: the
    kind's config options; categorical: columns to model as categories (dtype category/bool ones always are;
    "infer" = every non-numeric column); mode_specific: CTGAN's mode-specific normalisation of numeric columns
    (False: standardise); epsilon / delta / max_grad_norm: DP-SGD (Abadi et al. 2016) through Opacus."""

    def __init__(self, kind: str = "vae", steps: int = 2000, minutes: float | None = None, batch_size: int = 256,
                 options: dict[str, Any] | None = None, categorical: list[str] | str | None = None,
                 mode_specific: bool = True, epsilon: float | None = None, delta: float | None = None,
                 max_grad_norm: float = 1.0, random_state: int | None = 0, device: str = "auto",
                 verbose: bool = False):
        self.kind = kind
        self.steps = steps
        self.minutes = minutes
        self.batch_size = batch_size
        self.options = options
        self.categorical = categorical
        self.mode_specific = mode_specific
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def fit(self, X, y=None) -> TabularSynthesizer:
        """Learn the table X (a DataFrame, or (N, D) numbers); y is ignored."""
        import genlab
        from genlab.data import from_arrays

        df = as_frame(X)
        self.seed_ = seed_of(self.random_state)
        if self.epsilon is not None:
            self._check_dp(len(df))
        self.codec_ = TableCodec(self.categorical, self.mode_specific, seed=self.seed_).fit(df)
        self.n_rows_ = len(df)
        self.epsilon_ = self.delta_ = None
        if self.kind == "copula":
            self.copula_ = GaussianCopula().fit(df, self.codec_, self.seed_)
            return self
        z = self.codec_.encode(df)
        data, _ = from_arrays(z, test_fraction=0, name="table")
        torch.manual_seed(self.seed_)
        options = {**KIND_OPTIONS.get(self.kind, {}), **(self.options or {})}
        self.model_ = genlab.create(self.kind, data.spec, **options)
        if self.epsilon is not None:
            from .private import train_private

            self.epsilon_, self.delta_ = train_private(self, data)
            return self
        batch = min(self.batch_size, len(data))
        pac = getattr(self.model_.config, "pac", 1)
        batch = max(pac, batch - batch % pac)  # PacGAN judges whole packs
        genlab.train(self.model_, data, **budget_of(self), batch_size=batch, seed=self.seed_, device=self.device,
                     progress=self.verbose)
        return self

    def _check_dp(self, n: int) -> None:
        if self.kind not in DP_KINDS:
            raise GenlabError(f"differentially private training is for {', '.join(DP_KINDS)} (one loss, one "
                              f"optimiser); {self.kind} has more: drop epsilon or pick one of those")
        if not (isinstance(self.epsilon, (int, float)) and 0 < self.epsilon < float("inf")):
            raise GenlabError(f"epsilon must be a positive finite number, got {self.epsilon!r}")
        if self.delta is not None and not (0 < self.delta < 1):
            raise GenlabError(f"delta must be in (0, 1), got {self.delta!r}")
        if (self.options or {}).get("free_bits", 0):
            raise GenlabError("free_bits ties the rows of a batch together (a floor on the batch-mean KL), so per-row "
                              "clipping no longer bounds a row's influence: drop it for DP training")

    def sample(self, n: int, seed: int | None = None):
        """n synthetic rows as a DataFrame with the training table's columns, dtypes and categories."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "codec_")
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise GenlabError(f"n must be a positive whole number of rows, got {n!r}")
        seed = self.seed_ if seed is None else seed
        if self.kind == "copula":
            return self.copula_.sample(int(n), self.codec_, seed)
        x = self.model_.sample(int(n), seed=seed)
        return self.codec_.decode(np.asarray(self.model_.spec.to_original(x), dtype=np.float64))

    # ---- persistence: the model as a genlab saved model, the codec (and copula) as JSON
    def save(self, directory: str | Path) -> Path:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "codec_")
        d = Path(directory)
        if self.kind != "copula":
            self.model_.save(d)
        d.mkdir(parents=True, exist_ok=True)
        meta = {"params": self.get_params(), "seed": self.seed_, "n_rows": self.n_rows_, "epsilon": self.epsilon_,
                "delta": self.delta_, "codec": self.codec_.to_dict(),
                "copula": self.copula_.to_dict() if self.kind == "copula" else None}
        (d / "synthesizer.json").write_text(json.dumps(meta, indent=1, default=str))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> TabularSynthesizer:
        from genlab.models import load_model

        d = Path(directory)
        if not (d / "synthesizer.json").is_file():
            raise GenlabError(f"{d} holds no table synthesizer (no synthesizer.json); write one with "
                              "TabularSynthesizer(...).fit(df).save(DIR)")
        meta = json.loads((d / "synthesizer.json").read_text())
        s = cls(**meta["params"])
        s.seed_, s.n_rows_, s.epsilon_, s.delta_ = meta["seed"], meta["n_rows"], meta["epsilon"], meta["delta"]
        s.codec_ = TableCodec.from_dict(meta["codec"])
        if s.kind == "copula":
            s.copula_ = GaussianCopula.from_dict(meta["copula"])
        else:
            s.model_ = load_model(d)
        return s


def split_frame(df, holdout: float, seed: int):
    """(train, holdout) rows of df, shuffled by seed; holdout in (0, 0.5]."""
    if not (isinstance(holdout, (int, float)) and 0 < holdout <= 0.5):
        raise GenlabError(f"holdout must be a share in (0, 0.5], got {holdout!r}")
    idx = np.random.default_rng(seed).permutation(len(df))
    k = int(round(holdout * len(df)))
    if k < 2 or len(df) - k < 2:
        raise GenlabError(f"the table has {len(df)} rows: too few to hold out {holdout:.0%} of them and train on the "
                          "rest (2 rows each at least)")
    return df.iloc[idx[k:]].reset_index(drop=True), df.iloc[idx[:k]].reset_index(drop=True)


def synthesize(df, out: str | Path, *, rows: int | None = None, target: str | None = None, holdout: float = 0.2,
               title: str = "table", **params) -> dict[str, Any]:
    """Fit a TabularSynthesizer(**params) on (1 - holdout) of df's rows, sample `rows` (default: as many as it
    trained on) and write to `out`: synthetic.csv, metrics.json, report.html and the synthesizer (model/). The
    holdout rows are the reference for utility and privacy. Returns the metrics."""
    from ..io import atomic_write_bytes
    from ..report.table import write_table_report
    from . import table_metrics

    out = Path(out)
    synth = TabularSynthesizer(**params)
    train, hold = split_frame(as_frame(df), holdout, seed_of(synth.random_state))
    if target is not None and target not in train.columns:
        raise GenlabError(f"target '{target}' is not a column; columns: {', '.join(map(str, train.columns))}")
    synth.fit(train)
    fake = synth.sample(rows or len(train))
    metrics = table_metrics.evaluate(train, fake, hold, synth.codec_, target, seed=synth.seed_)
    metrics["epsilon"], metrics["delta"] = synth.epsilon_, synth.delta_
    out.mkdir(parents=True, exist_ok=True)
    synth.save(out / "model")
    atomic_write_bytes(out / "synthetic.csv", fake.to_csv(index=False).encode())
    slim = {**metrics, "privacy": {k: v for k, v in metrics["privacy"].items() if not isinstance(v, list)},
            "params": {k: v for k, v in synth.get_params().items()}}
    atomic_write_bytes(out / "metrics.json", json.dumps(slim, indent=1, default=str).encode())
    dp = f", DP ε = {synth.epsilon_:.2f}" if synth.epsilon_ else ""
    summary = (f"{synth.kind} trained on {len(train)} rows ({len(hold)} held out), {len(fake)} synthetic rows"
               f"{dp}; seed {synth.seed_}")
    write_table_report(out / "report.html", train, fake, synth.codec_, metrics, title, summary,
                       synth.epsilon_, synth.delta_)
    return metrics
