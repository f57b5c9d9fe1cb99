"""The synthetic-table report: one self-contained HTML page with fidelity, utility and privacy
(genlab.apps.table_metrics), each column's distribution real vs synthetic, the correlation matrices and the
distances to the closest record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_write_bytes
from .html import PAGE, figure_b64

BODY = """<!doctype html>
<html><head><meta charset="utf-8"><title>genlab synthetic table: {{ title }}</title>
<style>{{ style }} .bad{color:#b00;font-weight:600} .ok{color:#070}</style></head><body>
<h1>genlab synthetic table: {{ title }}</h1>
<p>{{ summary }}</p>
<h2>Fidelity</h2><table><tr><th>score</th><th>value</th><th>what it is</th></tr>
<tr><td>column shapes</td><td>{{ "%.3f"|format(f.column_shapes) }}</td><td>mean over columns of 1 - KS (numeric) or
1 - total variation (categorical)</td></tr>
<tr><td>column pair trends</td><td>{{ "%.3f"|format(f.column_pair_trends) }}</td><td>mean over pairs of correlation
similarity (numeric) or contingency similarity</td></tr>
<tr><td>overall</td><td>{{ "%.3f"|format(f.overall) }}</td><td>their mean; 1 = the same distribution</td></tr></table>
<h3>Per column</h3><table><tr><th>column</th><th>score</th></tr>
{% for k, v in columns %}<tr><td>{{ k }}</td><td>{{ "%.3f"|format(v) }}</td></tr>{% endfor %}</table>
{% if utility %}<h2>Utility: train on synthetic, test on real</h2><table><tr><th>trained on</th>
{% for m in umetrics %}<th>{{ m }}</th>{% endfor %}</tr>
{% for who in ["real", "synthetic"] %}<tr><td>{{ who }}</td>{% for m in umetrics %}
<td>{{ "%.3f"|format(utility[who][m]) }}</td>{% endfor %}</tr>{% endfor %}</table>
<p>target <code>{{ utility.target }}</code>; a histogram gradient-boosted model, scored on the holdout rows.</p>
{% endif %}
<h2>Privacy</h2><table><tr><th>measure</th><th>synthetic</th><th>holdout (reference)</th></tr>
<tr><td>median distance to the closest training record (Gower)</td><td>{{ "%.4f"|format(p.dcr_synthetic_median) }}</td>
<td>{{ "%.4f"|format(p.dcr_holdout_median) }}</td></tr>
<tr><td>5th percentile of that distance</td><td>{{ "%.4f"|format(p.dcr_synthetic_p05) }}</td>
<td>{{ "%.4f"|format(p.dcr_holdout_p05) }}</td></tr>
<tr><td>rows identical to a training row</td><td>{{ "%.1f%%"|format(100 * p.exact_copies) }}</td>
<td>{{ "%.1f%%"|format(100 * p.holdout_exact_copies) }}</td></tr>
<tr><td>membership-inference ROC-AUC (distance attack; 0.5 = no signal)</td><td>{{ "%.3f"|format(p.mia_auc) }}</td>
<td>-</td></tr></table>
{% if p.copies_flagged %}<p class="bad">Flagged: the synthesizer copies training rows
({{ "%.1f%%"|format(100 * p.exact_copies) }} of its rows are training rows). Do not share this table.</p>
{% else %}<p class="ok">No copying beyond what the holdout rows show by chance.</p>{% endif %}
{% if epsilon %}<p>Trained with differential privacy: ε = {{ "%.2f"|format(epsilon) }} at δ = {{ delta }}. ε covers
the model's training; the column ranges, category lists and mixture modes of the encoding are read from the data
without noise and must be public for ε to hold.</p>{% endif %}
<h2>Figures</h2><div class="grid">{% for name, img in figures %}
<figure><img src="data:image/png;base64,{{ img }}" alt="{{ name }}"><figcaption>{{ name }}</figcaption></figure>
{% endfor %}</div>
</body></html>
"""


def figures(real, syn, codec, metrics: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..apps.table_metrics import _cat, _num

    out = []
    cols = codec.columns
    k = min(4, len(cols))
    rows = (len(cols) + k - 1) // k
    fig, axes = plt.subplots(rows, k, figsize=(3.2 * k, 2.4 * rows), dpi=80, squeeze=False)
    for ax, c in zip(axes.flat, cols):
        if c.type == "numeric":
            a, b = _num(real[c.name]), _num(syn[c.name])
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            bins = np.histogram_bin_edges(a, bins=30)
            ax.hist(a, bins=bins, density=True, alpha=0.5, label="real")
            ax.hist(np.clip(b, bins[0], bins[-1]), bins=bins, density=True, alpha=0.5, label="synthetic")
        else:
            a, b = _cat(real[c.name]), _cat(syn[c.name])
            vals = np.union1d(a, b)[:20]
            pos = np.arange(len(vals))
            ax.bar(pos - 0.2, (a[:, None] == vals).mean(0), 0.4, label="real")
            ax.bar(pos + 0.2, (b[:, None] == vals).mean(0), 0.4, label="synthetic")
            ax.set_xticks(pos, [v[:10] for v in vals], rotation=45, fontsize=6)
        ax.set_title(f"{c.name} ({metrics['fidelity']['columns'][c.name]:.2f})", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(cols):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    out.append(("each column, real vs synthetic (score in brackets)", figure_b64(fig)))
    nums = [c.name for c in cols if c.type == "numeric"]
    if len(nums) >= 2:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=80)
        r = real[nums].astype("float64").corr().to_numpy()
        s = syn[nums].astype("float64").corr().to_numpy()
        panels = ((r, "real", "RdBu_r", (-1, 1)), (s, "synthetic", "RdBu_r", (-1, 1)),
                  (np.abs(r - s), "|difference|", "Reds", (0, 1)))
        for ax, (m, t, cmap, lim) in zip(axes, panels):
            im = ax.imshow(np.nan_to_num(m), cmap=cmap, vmin=lim[0], vmax=lim[1])
            ax.set_title(f"Pearson correlation: {t}", fontsize=8)
            ax.set_xticks(range(len(nums)), [n[:10] for n in nums], rotation=60, fontsize=6)
            ax.set_yticks(range(len(nums)), [n[:10] for n in nums], fontsize=6)
            fig.colorbar(im, ax=ax, shrink=0.7)
        out.append(("correlations of the numeric columns", figure_b64(fig)))
    p = metrics["privacy"]
    fig, ax = plt.subplots(figsize=(5, 2.8), dpi=80)
    hi = max(max(p["dcr_synthetic"], default=0), max(p["dcr_holdout"], default=0)) or 1
    bins = np.linspace(0, hi, 40)
    ax.hist(p["dcr_holdout"], bins=bins, density=True, alpha=0.5, label="holdout -> train")
    ax.hist(p["dcr_synthetic"], bins=bins, density=True, alpha=0.5, label="synthetic -> train")
    ax.set_xlabel("distance to the closest training record (Gower)", fontsize=8)
    ax.legend(fontsize=7)
    out.append(("distance to the closest record", figure_b64(fig)))
    return out


def write_table_report(path: str | Path, real, syn, codec, metrics: dict[str, Any], title: str,
                       summary: str, epsilon: float | None = None, delta: float | None = None) -> Path:
    import jinja2
    import markupsafe

    style = PAGE.split("<style>")[1].split("</style>")[0]
    util = metrics.get("utility")
    umetrics = [k for k in (util or {}).get("real", {})]
    html = jinja2.Environment(autoescape=True).from_string(BODY).render(
        title=title, summary=summary, style=markupsafe.Markup(style), f=metrics["fidelity"],
        columns=sorted(metrics["fidelity"]["columns"].items(), key=lambda kv: kv[1]), utility=util,
        umetrics=umetrics, p=metrics["privacy"], epsilon=epsilon, delta=delta,
        figures=figures(real, syn, codec, metrics))
    path = Path(path)
    atomic_write_bytes(path, html.encode())
    return path
