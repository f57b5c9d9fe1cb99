"""The applications on the command line: `genlab synth` (synthetic tables with their report), `genlab anomaly fit|score`
(anomaly scores to CSV), `genlab augment` (generative oversampling of a CSV's rare classes) and `genlab adapt`
(domain-adversarial adaptation between two datasets). Thin layers over genlab.apps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from .cli import app
from .errors import GenlabError

anomaly_app = typer.Typer(no_args_is_help=True, help="Anomaly detection: fit a detector, score rows.")
app.add_typer(anomaly_app, name="anomaly")

TABLE_HELP = "credit | wage | penguins | breast-cancer | wine, or csv:PATH (a path ending in .csv also works)"


def _options(sets: list[str]) -> dict:
    from .config import parse_overrides

    return parse_overrides(sets)


def _fresh(out: Path, overwrite: bool, what: str) -> None:
    """Refuse to write into a non-empty directory (or over a file) unless asked: nothing written is lost."""
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise GenlabError(f"{out} exists and is not empty; pick a new --out or pass --overwrite to replace the {what}")


def _budget(steps: int | None, minutes: float | None) -> dict:
    if steps is not None and minutes is not None:
        raise GenlabError("give --steps or --minutes, not both")
    for name, v in (("steps", steps), ("minutes", minutes)):
        if v is not None and not (v > 0 and np.isfinite(v)):
            raise GenlabError(f"--{name} must be a positive number, got {v}")
    return {"minutes": minutes} if minutes is not None else {"steps": steps} if steps is not None else {}


@app.command()
def synth(
    data: str = typer.Argument(..., help=TABLE_HELP),
    kind: str = typer.Option("vae", "--kind", help="vae | gan | ddpm | maf | nsf | copula (the Gaussian-copula "
                             "baseline)"),
    out: Path = typer.Option(..., "--out", help="a new directory: synthetic.csv, report.html, metrics.json, model/"),
    rows: int | None = typer.Option(None, "--rows", help="synthetic rows (default: as many as the training rows)"),
    target: str | None = typer.Option(None, "--target", help="the column the utility test predicts (default: the "
                                      "table's own, none for a CSV)"),
    categorical: str | None = typer.Option(None, "--categorical", help="COL,COL,...: columns to model as categories; "
                                           "'infer' = every non-numeric column (the default for named tables)"),
    holdout: float = typer.Option(0.2, "--holdout", help="share of rows kept out of training, for utility and privacy"),
    steps: int | None = typer.Option(None, help="training budget in steps (default 2000)"),
    minutes: float | None = typer.Option(None, help="training budget in minutes"),
    epsilon: float | None = typer.Option(None, "--epsilon", help="train with DP-SGD to this ε (vae, ddpm)"),
    delta: float | None = typer.Option(None, "--delta", help="DP δ (default 1 / (10 N))"),
    sets: list[str] = typer.Option([], "--set", help="a model option of the kind, key=value; repeatable"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace what --out holds"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train a synthesizer on a table; write synthetic rows and a report (fidelity, utility, privacy)."""
    from .apps.tabular import synthesize
    from .data.tables import TABLES, frame_of

    if rows is not None and rows < 1:
        raise GenlabError(f"--rows must be a positive number of rows, got {rows}")
    _fresh(out, overwrite, "synthetic table")
    df, default_target = frame_of(data)
    cats: list[str] | str | None = None
    if categorical == "infer" or (categorical is None and data in (*TABLES, "breast-cancer", "wine")):
        cats = "infer"
    elif categorical:
        cats = [c.strip() for c in categorical.split(",") if c.strip()]
    m = synthesize(df, out, rows=rows, target=target or default_target, holdout=holdout, title=data, kind=kind,
                   categorical=cats, options=_options(sets) or None, epsilon=epsilon, delta=delta,
                   random_state=seed, device=device, verbose=progress, **_budget(steps, minutes))
    f, p, u = m["fidelity"], m["privacy"], m.get("utility")
    util = ""
    if u:
        key = next(iter(u["real"]))
        util = f", utility {key} {u['synthetic'][key]:.3f} (real {u['real'][key]:.3f})"
    flag = " COPIES TRAINING ROWS" if p["copies_flagged"] else ""
    print(f"synth: fidelity {f['overall']:.3f}{util}, membership AUC {p['mia_auc']:.3f}{flag}; "
          f"{out / 'synthetic.csv'}, {out / 'report.html'}")


def _numeric_table(source: str, drop: str | None) -> tuple[np.ndarray, list[str]]:
    """A CSV's (or a built-in table's) numeric columns as (N, D) floats; --drop removes columns (ids, labels)."""
    from .data.tables import frame_of

    df, _ = frame_of(source)
    gone = [c.strip() for c in (drop or "").split(",") if c.strip()]
    missing = [c for c in gone if c not in df.columns]
    if missing:
        raise GenlabError(f"--drop names {', '.join(missing)}, not columns; columns: {', '.join(map(str, df.columns))}")
    df = df.drop(columns=gone)
    text = [str(c) for c in df.columns if df[c].dtype.kind not in "fiub"]
    if text:
        raise GenlabError(f"column(s) {', '.join(text)} are not numeric: --drop them, or one-hot encode them first")
    x = df.to_numpy(dtype=np.float64)
    if np.isnan(x).any():
        r = int(np.argwhere(np.isnan(x))[0][0])
        raise GenlabError(f"the table has a missing value at row {r}; fill or drop those rows first")
    return x, [str(c) for c in df.columns]


@anomaly_app.command("fit")
def anomaly_fit(
    data: str = typer.Argument(..., help="a CSV of numeric columns (csv:PATH or PATH.csv), or a built-in table"),
    out: Path = typer.Option(..., "--out", help="a new directory for the detector"),
    kind: str = typer.Option("vae", "--kind", help="a kind with a reconstruction (ae, dae, vae) or a likelihood (maf, "
                             "nsf, realnvp, ...)"),
    score: str = typer.Option("auto", "--score", help="auto | reconstruction | nll"),
    contamination: float = typer.Option(0.1, "--contamination", help="expected share of anomalies, for the threshold"),
    drop: str | None = typer.Option(None, "--drop", help="COL,COL: columns to leave out (ids, labels)"),
    steps: int | None = typer.Option(None, help="training budget in steps (default 1000)"),
    minutes: float | None = typer.Option(None, help="training budget in minutes"),
    sets: list[str] = typer.Option([], "--set", help="a model option of the kind, key=value; repeatable"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    overwrite: bool = typer.Option(False, "--overwrite"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Fit an anomaly detector on (mostly) normal rows; save it with its threshold."""
    from .apps.anomaly import AnomalyDetector

    _fresh(out, overwrite, "detector")
    x, cols = _numeric_table(data, drop)
    det = AnomalyDetector(kind=kind, score=score, contamination=contamination, options=_options(sets) or None,
                          random_state=seed, device=device, verbose=progress, **_budget(steps, minutes)).fit(x)
    det.save(out)
    (out / "columns.json").write_text(json.dumps({"columns": cols, "drop": drop}))
    print(f"anomaly: {kind} ({det.score_}) fit on {len(x)} rows; threshold {det.threshold_:.4g} flags "
          f"{det.labels_.mean():.1%} of them; detector in {out}")


@anomaly_app.command("score")
def anomaly_score(
    detector: Path = typer.Argument(..., help="a directory written by genlab anomaly fit"),
    data: str = typer.Argument(..., help="rows to score: a CSV with the columns the detector was fit on"),
    out: Path = typer.Option(..., "--out", help="CSV to write: row, score (higher = more anomalous), anomaly (0/1)"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Score rows with a fitted detector; write one line per row."""
    from .apps.anomaly import AnomalyDetector
    from .io import write_csv

    _fresh(out, overwrite, "scores")
    det = AnomalyDetector.load(detector)
    meta = json.loads((detector / "columns.json").read_text()) if (detector / "columns.json").is_file() else {}
    x, cols = _numeric_table(data, meta.get("drop"))
    if meta.get("columns") and cols != meta["columns"]:
        raise GenlabError(f"{data} has columns {', '.join(cols)}; the detector was fit on {', '.join(meta['columns'])}")
    s = det.decision_function(x)
    write_csv(out, {"row": np.arange(len(s)), "score": s, "anomaly": (s > det.threshold_).astype(int)})
    print(f"anomaly: {int((s > det.threshold_).sum())} of {len(s)} rows above the threshold; scores in {out}")


@app.command()
def augment(
    data: str = typer.Argument(..., help="a CSV (csv:PATH or PATH.csv) or a built-in table, numeric features"),
    target: str = typer.Option(..., "--target", help="the class column"),
    out: Path = typer.Option(..., "--out", help="CSV to write: the original rows, then the new ones"),
    kind: str = typer.Option("vae", "--kind", help="a kind that samples (vae, gan, ddpm, maf, nsf, ...)"),
    strategy: str = typer.Option("auto", "--strategy", help="auto | minority | not majority | all | a ratio "
                                 "minority/majority for two classes"),
    mode: str = typer.Option("per-class", "--mode", help="per-class | conditional"),
    steps: int | None = typer.Option(None, help="training budget per model in steps (default 1000)"),
    minutes: float | None = typer.Option(None, help="training budget per model in minutes"),
    sets: list[str] = typer.Option([], "--set", help="a model option of the kind, key=value; repeatable"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    overwrite: bool = typer.Option(False, "--overwrite"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Oversample the rare classes of a table with generative models; write the balanced table."""
    from .apps.oversample import GenerativeOversampler
    from .data.tables import frame_of

    _fresh(out, overwrite, "table")
    df, _ = frame_of(data)
    if target not in df.columns:
        raise GenlabError(f"target '{target}' is not a column; columns: {', '.join(map(str, df.columns))}")
    y = df[target].to_numpy()
    x, cols = _numeric_table(data, target)
    try:
        ratio = float(strategy)
    except ValueError:
        ratio = None
    sampler = GenerativeOversampler(kind=kind, sampling_strategy=strategy if ratio is None else ratio, mode=mode,
                                    options=_options(sets) or None, random_state=seed, device=device,
                                    verbose=progress, **_budget(steps, minutes))
    xr, yr = sampler.fit_resample(x, y)
    import pandas as pd

    res = pd.DataFrame(xr, columns=cols)
    res[target] = yr
    from .io import atomic_write_bytes

    atomic_write_bytes(out, res.to_csv(index=False).encode())
    added = ", ".join(f"{c}: +{n}" for c, n in sampler.sampling_strategy_.items()) or "nothing"
    print(f"augment: {len(x)} rows -> {len(xr)} ({added}); {out}")


@app.command()
def adapt(
    source: str = typer.Argument(..., help="a labelled dataset, e.g. mnist5k"),
    target: str = typer.Argument(..., help="a dataset of the same classes in another domain, e.g. digits (images "
                                 "are resized to the source's size)"),
    weight: float = typer.Option(1.0, "--lambda", help="the top weight of the reversed domain gradient"),
    ramp: int = typer.Option(1000, "--ramp", help="steps over which that weight rises from 0"),
    steps: int | None = typer.Option(None, help="training budget per model in steps (default 3000)"),
    minutes: float | None = typer.Option(None, help="training budget per model in minutes"),
    out: Path | None = typer.Option(None, "--out", help="also write the accuracies to this JSON file"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Domain-adversarial adaptation (DANN): train on SOURCE's labels and TARGET's unlabelled train split, beside
    the same network on SOURCE alone; print both accuracies on each test split."""
    from .apps.domain import adapt_datasets
    from .io import atomic_write_json

    if not (np.isfinite(weight) and weight > 0):
        raise GenlabError(f"--lambda must be a positive weight, got {weight}")
    if ramp < 0:
        raise GenlabError(f"--ramp must be >= 0 steps, got {ramp}")
    if out is not None and out.suffix.lower() != ".json":
        raise GenlabError(f"--out {out} is not a .json file")
    budget = _budget(steps, minutes) or {"steps": 3000}
    res = adapt_datasets(source, target, adapt=weight, ramp=ramp, random_state=seed, device=device,
                         verbose=progress, **budget)
    print(f"{'':12} {source + ' test':>18} {target + ' test':>18}")
    for name in ("source-only", "dann"):
        print(f"{name:12} {res[name]['source_acc']:18.4f} {res[name]['target_acc']:18.4f}")
    if out is not None:
        atomic_write_json(out, res)
        print(f"wrote {out}")
