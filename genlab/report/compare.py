"""`genlab compare RUN...`: one table across runs, read only through their run directories.

The columns are those of Xiao et al. (2022, Table 1: FID, recall, network evaluations, time per sample) plus
genlab's: KID, precision, density, coverage, 2-D modes, likelihood in bits/dim, parameters and training time.
One row per evaluation kept in RUN/evals/ (a diffusion run evaluated with three samplers gives three rows); an
evaluation with likelihood only is folded into the run's sample rows. Rows whose sample metrics come from a
different protocol (version, reference data and split, sample count, feature extractor, sampling precision)
get another letter in the
`protocol` column and a note under the table: their FIDs are not comparable (FID is biased by the sample count).

Writes compare.html (offline, escaped: the table, quality vs sampling time, precision vs recall, the trilemma
chart and a mosaic of each run's latest samples), compare.md and compare.csv.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GenlabError
from ..io import atomic_write_bytes

# (key, header, what it is); the CSV and Markdown follow this order
COLUMNS = [
    ("run", "run", "run directory name, with the sampling options of the evaluation"),
    ("kind", "kind", "model family"),
    ("data", "data", "training data"),
    ("protocol", "protocol", "rows with the same letter were evaluated the same way (see the notes)"),
    ("fid", "FID ↓", "Fréchet distance of feature Gaussians"),
    ("kid", "KID ↓", "kernel inception distance (unbiased MMD²)"),
    ("precision", "precision ↑", "Kynkäänniemi et al. 2019, k = 3"),
    ("recall", "recall ↑", "Kynkäänniemi et al. 2019, k = 3"),
    ("density", "density ↑", "Naeem et al. 2020, k = 5"),
    ("coverage", "coverage ↑", "Naeem et al. 2020, k = 5"),
    ("modes", "modes ↑", "2-D mixtures: modes captured / total, and % high-quality samples"),
    ("nll_bpd", "NLL bits/dim ↓", "test negative log-likelihood; '≤' marks a bound (ELBO or IWAE)"),
    ("samples_per_s", "samples/s ↑", "sampling throughput on the machine that evaluated"),
    ("nfe", "NFE", "network evaluations per sample"),
    ("params", "parameters", "weights in model.safetensors"),
    ("train_minutes", "training min", "wall-clock training time"),
    ("steps", "steps", "training steps"),
]
SAMPLE_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "modes")
BOOKKEEPING = {"n", "seed", "metrics", "k", "extractor", "precision"}  # eval options that are not sampling options


@dataclass
class Comparison:
    rows: list[dict[str, Any]]
    protocols: dict[str, str]  # letter -> description
    notes: list[str] = field(default_factory=list)
    samples: list[tuple[str, Path]] = field(default_factory=list)  # (run name, latest sample grid)


def weights_count(path: Path) -> int | None:
    """Number of weights in a safetensors file, from its header alone (8-byte length, then JSON)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error):
        return None
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def _protocol_of(ev: dict[str, Any]) -> str:
    ext = ev.get("extractor") or {}
    parts = [f"protocol v{ev.get('protocol')}", f"{ev.get('dataset')} {ev.get('split', 'test')} split",
             f"{ev.get('n_samples')} samples against {ev.get('n_reference')}"]
    if ext:
        parts.append(f"features of {ext.get('name')} ({str(ext.get('sha256', ''))[:12]})")
    precision = (ev.get("options") or {}).get("precision")
    if precision:
        parts.append(f"sampled in {precision}")
    return ", ".join(parts)


def _nll(m: dict[str, Any]) -> tuple[float | None, str]:
    """(bits/dim, '' for exact or '≤' for a bound): the tightest bound where there are several."""
    if "nll_bpd" in m:
        return m["nll_bpd"], ""
    bounds = [v for k, v in m.items() if k.endswith("_bpd")]
    return (min(bounds), "≤") if bounds else (None, "")


def _names(paths: list[Path]) -> list[str]:
    """The shortest path suffix that tells the runs apart: 'vae', or 'a/vae' and 'b/vae'."""
    full = [p.resolve() for p in paths]
    if len(set(full)) < len(full):
        twice = next(str(p) for p in paths if full.count(p.resolve()) > 1)
        raise GenlabError(f"{twice} is given twice; name each run once")
    for depth in range(1, max(len(p.parts) for p in full) + 1):
        names = ["/".join(p.parts[-depth:]) for p in full]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in full]


def _labels(name: str, evals: list[dict[str, Any]]) -> list[str]:
    """A row label per evaluation: the run's name with the sampling options, and with any other option (seed,
    sample count, metrics) that differs between this run's evaluations."""
    opts = [{k: v for k, v in (ev.get("options") or {}).items() if v is not None} for ev in evals]
    differ = {k for o in opts for k in o if len({str(p.get(k)) for p in opts}) > 1}
    out = []
    for o in opts:
        shown = {k: v for k, v in o.items() if k not in BOOKKEEPING or k in differ}
        out.append(name + (" (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")" if shown else ""))
    return out


def compare_runs(runs: list[str | Path]) -> Comparison:
    """Rows of the comparison table for run directories (each needs at least one evaluation)."""
    from ..runs import RunDir

    if not runs:
        raise GenlabError("give at least one run directory to compare")
    rows, protocols, notes, samples = [], {}, [], []
    opened = [RunDir.open(p) for p in runs]
    for rd, name in zip(opened, _names([rd.path for rd in opened])):
        evals = rd.evals() or ([rd.latest_eval()] if rd.latest_eval() else [])
        if not evals:
            raise GenlabError(f"{rd.path} has no evaluation; run `genlab eval {rd.path}` first")
        history = rd.history if rd.is_run else []
        opts = rd.data["opts"]  # data options (binarised, a target column, ...) make other data
        data = rd.data["name"] + (" (" + ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) + ")" if opts else "")
        base = {"run_dir": name, "kind": rd.kind, "data": data,
                "params": weights_count(rd.path / "model.safetensors"),
                "train_minutes": round(history[-1].get("time", 0.0) / 60, 4) if history else None,
                "last_step": history[-1].get("step") if history else None}
        nll = [ev["metrics"]["nll"] for ev in evals if "nll" in ev.get("metrics", {})]
        nll_bpd, nll_mark = _nll(nll[-1]) if nll else (None, "")
        with_samples = [ev for ev in evals if ev.get("sampling")] or evals[-1:]
        for ev, label in zip(with_samples, _labels(name, with_samples)):
            m = ev.get("metrics", {})
            # the steps the evaluated weights had (evaluations older than this field: the run's last step)
            steps = ev.get("trained_steps", base["last_step"])
            row = {**base, "run": label, "protocol": "", "nll_bpd": nll_bpd, "nll_mark": nll_mark, "steps": steps}
            if ev.get("sampling"):
                desc = _protocol_of(ev)
                letter = next((k for k, v in protocols.items() if v == desc), None)
                if letter is None:
                    letter = chr(ord("A") + len(protocols)) if len(protocols) < 26 else f"P{len(protocols)}"
                    protocols[letter] = desc
                row["protocol"] = letter
                row.update({k: m.get(k) for k in ("fid", "kid", "precision", "recall", "density", "coverage")})
                if isinstance(m.get("modes"), dict):
                    md = m["modes"]
                    row["modes"] = f"{md['modes']}/{md['total_modes']}, {100 * md['high_quality']:.0f}%"
                s = ev["sampling"]
                row["samples_per_s"], row["nfe"] = _rate(s), s.get("nfe_per_sample")
            rows.append(row)
        if grids := rd.sample_grids():
            samples.append((name, grids[-1]))
    if len(protocols) > 1:
        notes.append(f"{len(protocols)} evaluation protocols: FID, KID, precision, recall, density and coverage "
                     "compare only between rows with the same letter (FID is biased by the sample count).")
    nll_rows = [r for r in rows if r["nll_bpd"] is not None]
    if nll_rows and len({r["nll_mark"] for r in nll_rows}) > 1:
        notes.append("NLL: '≤' rows are upper bounds (ELBO or IWAE), the others exact; a bound above an exact "
                     "value does not say the model is worse.")
    if len({r["data"] for r in rows}) > 1:
        notes.append("the runs were trained on different data.")
    stale = sorted({r["run_dir"] for r in rows if None not in (r["steps"], r["last_step"])
                    and r["steps"] != r["last_step"]})
    if stale:
        notes.append(f"{', '.join(stale)}: some rows were evaluated before the run trained further (see steps).")
    return Comparison(rows, protocols, notes, samples)


def _rate(sampling: dict[str, Any]) -> float | None:
    """Samples per second; from n and the seconds where those are the more precise (earlier evaluations kept one
    decimal of the rate: 0.1 for 500 samples in 3,585 s)."""
    n, sec = sampling.get("n"), sampling.get("seconds")
    if n and sec and sec >= 1:
        return float(f"{n / sec:.4g}")
    return sampling.get("samples_per_s")


def _fmt(key: str, row: dict[str, Any]) -> str:
    v = row.get(key)
    if v is None or v == "":
        return "–" if key not in ("run", "kind", "data", "protocol") else str(v or "")
    if key == "nll_bpd":
        return f"{row['nll_mark']} {v:.3f}".strip()
    if key == "params":
        return f"{v / 1e6:.2f}M" if v >= 1e5 else f"{v:,}"
    if key == "kid":
        return f"{v:.4f}"
    if key == "samples_per_s":
        return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"
    if key == "nfe":
        return f"{v:g}"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:,.1f}"
    return str(v)


def shown_columns(c: Comparison) -> list[tuple[str, str, str]]:
    """The columns at least one row has a value for."""
    return [col for col in COLUMNS if col[0] == "run" or any(r.get(col[0]) not in (None, "") for r in c.rows)]


def to_markdown(c: Comparison) -> str:
    keys = [k for k, _, _ in shown_columns(c)]
    head = {k: h for k, h, _ in COLUMNS}
    lines = ["| " + " | ".join(head[k] for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(k, r).replace("|", "\\|") for k in keys) + " |" for r in c.rows]
    lines += [""] + [f"- protocol {k}: {v}" for k, v in c.protocols.items()] + [f"- {n}" for n in c.notes]
    return "\n".join(lines) + "\n"


def to_csv(c: Comparison) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    keys = [k for k, _, _ in COLUMNS]
    w.writerow(["run_dir", *keys, "nll_is_bound", "protocol_description"])
    for r in c.rows:
        bound = "" if r.get("nll_bpd") is None else r.get("nll_mark") == "≤"
        w.writerow([r["run_dir"], *("" if r.get(k) is None else r.get(k) for k in keys), bound,
                    c.protocols.get(r.get("protocol"), "")])
    return buf.getvalue()


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def trilemma_axes(rows: list[dict[str, Any]]) -> list[tuple[str, float, float, float]]:
    """(label, quality, speed, coverage) in [0, 1] for the rows with a precision and a samples/s: quality =
    precision (the share of samples on the data's manifold, Kynkäänniemi et al. 2019), speed = 1 for the fastest
    row and 0.25 less per decade slower (0 at 10^4 times slower), coverage = Naeem et al.'s coverage (recall
    where it is missing). Precision and coverage are absolute: a row's do not depend on the other rows."""
    rs = [r for r in rows if r.get("precision") is not None and _positive(r.get("samples_per_s"))]
    if not rs:
        return []
    fastest = max(r["samples_per_s"] for r in rs)
    clip = lambda v: float(min(max(v, 0.0), 1.0))
    out = []
    for r in rs:
        cov = r.get("coverage") if r.get("coverage") is not None else r.get("recall") or 0.0
        speed = max(0.0, 1 + math.log10(r["samples_per_s"] / fastest) / 4)
        out.append((r["run"], clip(r["precision"]), speed, clip(cov)))
    return out


def _legend_below(ax) -> None:
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)


def figures(c: Comparison) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context({"text.parse_math": False}):  # a '$' in a run name or a prompt is text
        return _figures(c)


def _figures(c: Comparison) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    from .html import figure_b64

    out = []
    rs = [r for r in c.rows if r.get("fid") is not None and _positive(r.get("samples_per_s"))]
    if rs:
        fig, ax = plt.subplots(figsize=(5.5, 4), dpi=90)
        for r in rs:
            ax.scatter(1 / r["samples_per_s"], r["fid"], s=30, label=f"{r['run']} [{r['protocol']}]")
        ax.set(xscale="log", xlabel="seconds per sample (log)", ylabel="FID (lower is better)",
               title="quality vs sampling time")
        # plain tick labels: the log axis writes its own as mathtext, which parse_math=False prints raw
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(alpha=0.3)
        _legend_below(ax)
        out.append(("quality vs sampling time", figure_b64(fig)))
    pr = [r for r in c.rows if r.get("precision") is not None and r.get("recall") is not None]
    if pr:
        fig, ax = plt.subplots(figsize=(5, 4), dpi=90)
        for r in pr:
            ax.scatter(r["recall"], r["precision"], s=30, label=r["run"])
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="recall (coverage of the data)",
               ylabel="precision (samples on the data)", title="precision vs recall")
        ax.grid(alpha=0.3)
        _legend_below(ax)
        out.append(("precision vs recall", figure_b64(fig)))
    tri = trilemma_axes(c.rows)
    if tri:
        angles = [math.pi / 2 + i * 2 * math.pi / 3 for i in range(3)]
        fig = plt.figure(figsize=(5, 5), dpi=90)
        ax = fig.add_subplot(projection="polar")
        for label, *vals in tri:
            ax.plot(angles + angles[:1], vals + vals[:1], lw=1.5, label=label)
            ax.fill(angles + angles[:1], vals + vals[:1], alpha=0.08)
        ax.set_xticks(angles, ["quality\n(precision)", "speed\n(-0.25 per decade)", "coverage"], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_yticks([0.25, 0.5, 0.75, 1.0], ["", "", "", ""])
        _legend_below(ax)
        ax.set_title("the generative trilemma (outer is better)", fontsize=9)
        out.append(("trilemma", figure_b64(fig)))
    return out


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>genlab compare</title>
<style>{{ style }} td.num{text-align:right}</style></head><body>
<h1>genlab compare: {{ rows|length }} rows from {{ runs }} runs</h1>
<table><tr>{% for k, h, what in columns %}<th title="{{ what }}">{{ h }}</th>{% endfor %}</tr>
{% for r in rows %}<tr>{% for k, h, what in columns %}<td{% if k not in text %} class="num"{% endif %}>{{ r[k] }}</td>
{% endfor %}</tr>{% endfor %}</table>
<ul>{% for k, v in protocols %}<li>protocol {{ k }}: {{ v }}</li>{% endfor %}
{% for n in notes %}<li><b>{{ n }}</b></li>{% endfor %}</ul>
{% if figures %}<h2>Figures</h2><div class="grid">{% for name, img in figures %}
<figure><img src="data:image/png;base64,{{ img }}" alt="{{ name }}"><figcaption>{{ name }}</figcaption></figure>
{% endfor %}</div>{% endif %}
{% if samples %}<h2>Samples (the latest grid of each run)</h2><div class="grid">{% for name, img in samples %}
<figure><img src="data:image/png;base64,{{ img }}" width="220" alt="{{ name }}"><figcaption>{{ name }}</figcaption>
</figure>{% endfor %}</div>{% endif %}
<h2>Columns</h2><table>{% for k, h, what in columns %}<tr><td>{{ h }}</td><td>{{ what }}</td></tr>{% endfor %}</table>
</body></html>
"""


def write_comparison(c: Comparison, out: str | Path) -> dict[str, Path]:
    """compare.html, compare.md and compare.csv in the directory `out`, and each plot of the page as a PNG
    (compare-trilemma.png, ...) for a user's own documents; returns {"html", "md", "csv", plot name: path}."""
    import base64

    import jinja2
    import markupsafe

    from .html import PAGE as REPORT
    from .html import _b64

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenlabError(f"--out {out} is a file; give a directory for compare.html, compare.md and compare.csv")
    columns = shown_columns(c)
    keys = [k for k, _, _ in columns]
    figs = figures(c)
    style = REPORT.split("<style>")[1].split("</style>")[0]
    html = jinja2.Environment(autoescape=True).from_string(PAGE).render(
        style=markupsafe.Markup(style), columns=columns, text={"run", "kind", "data", "protocol", "modes"},
        rows=[{k: _fmt(k, r) for k in keys} for r in c.rows], runs=len({r["run_dir"] for r in c.rows}),
        protocols=list(c.protocols.items()), notes=c.notes, figures=figs,
        samples=[(name, _b64(p)) for name, p in c.samples])
    paths = {"html": out / "compare.html", "md": out / "compare.md", "csv": out / "compare.csv"}
    atomic_write_bytes(paths["html"], html.encode())
    atomic_write_bytes(paths["md"], to_markdown(c).encode())
    atomic_write_bytes(paths["csv"], to_csv(c).encode())
    for name, img in figs:
        paths[name] = out / f"compare-{name.replace(' ', '-')}.png"
        atomic_write_bytes(paths[name], base64.b64decode(img))
    return paths
