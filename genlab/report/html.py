"""`genlab report RUN`: one self-contained HTML page (config, curves, samples over training, metrics).
Every user string is escaped (jinja2 autoescape); images are embedded, so the file can be mailed alone."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from ..errors import GenlabError
from ..io import atomic_write_bytes

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>genlab report: {{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f5f5f5} .grid{display:flex;flex-wrap:wrap;gap:1em} figure{margin:0} figcaption{font-size:.8em;color:#555}
img{image-rendering:pixelated;max-width:100%} code{background:#f3f3f3;padding:0 .2em}
</style></head><body>
<h1>genlab report: {{ title }}</h1>
<p>kind <code>{{ kind }}</code> on <code>{{ dataset }}</code> &middot; {{ steps }} steps &middot;
{{ seconds }} s of training &middot; genlab {{ version }}</p>
{% if metrics %}<h2>Evaluation</h2><table><tr><th>metric</th><th>value</th></tr>
{% for k, v in metrics %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>{% endif %}
{% if curves %}<h2>Training curves</h2><img src="data:image/png;base64,{{ curves }}" alt="training curves">{% endif %}
{% if figures %}<h2>Figures</h2><div class="grid">{% for name, img in figures %}
<figure><img src="data:image/png;base64,{{ img }}" alt="{{ name }}"><figcaption>{{ name }}</figcaption></figure>
{% endfor %}</div>{% endif %}
{% if samples %}<h2>Samples over training</h2><div class="grid">{% for name, img in samples %}
<figure><img src="data:image/png;base64,{{ img }}" width="200" alt="{{ name }}"><figcaption>{{ name }}</figcaption>
</figure>{% endfor %}</div>{% endif %}
<h2>Configuration</h2>{% for section, items in config %}<h3>{{ section }}</h3><table>
{% for k, v in items %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>{% endfor %}
</body></html>
"""


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def figure_b64(fig) -> str:
    """A matplotlib figure as base64 PNG for an <img src="data:..."> (the figure is closed)."""
    return base64.b64encode(figure_png(fig)).decode()


def diagnostic_bars(history: list[dict[str, Any]], plots: dict[str, tuple[str, bool]]) -> list[tuple[str, list]]:
    """(caption, values) for each list-valued diagnostic a family declares in `plots` (key -> (caption, sort
    descending)): its last logged value, sorted when asked."""
    out = []
    for key, (caption, sort) in plots.items():
        last = next((r[key] for r in reversed(history) if isinstance(r.get(key), list)), None)
        if last:
            out.append((caption, sorted(last, reverse=True) if sort else list(last)))
    return out


def curves_png(history: list[dict[str, Any]], plots: dict[str, tuple[str, bool]] | None = None) -> bytes | None:
    """One panel per logged number (loss terms, lr, throughput, active units) against the step; under them, the
    family's list-valued diagnostics at the end of training as bars (diagnostic_bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skip = {"step", "epoch", "time"}
    keys = [k for k in dict.fromkeys(k for r in history for k in r) if k not in skip
            and all(isinstance(r.get(k), (int, float)) for r in history if k in r)]
    bars = diagnostic_bars(history, plots or {})
    if not keys and not bars:
        return None
    cols = max(1, min(3, len(keys)))
    rows = (len(keys) + cols - 1) // cols
    fig = plt.figure(figsize=(4 * cols, 2.6 * rows + 2.4 * len(bars)), dpi=90)
    grid = fig.add_gridspec(rows + len(bars), cols)
    for i, k in enumerate(keys):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        pts = [(r["step"], r[k]) for r in history if k in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2)
        ax.set_title(k, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for j, (caption, vals) in enumerate(bars):
        ax = fig.add_subplot(grid[rows + j, :])
        ax.bar(range(len(vals)), vals, color="#1f77b4")
        ax.set_title(caption, fontsize=9)
        ax.tick_params(labelsize=7)
    return figure_png(fig)


def write_report(run: str | Path, out: str | Path | None = None) -> Path:
    import jinja2

    from ..metrics.protocol import summary_rows
    from ..runs import RunDir

    rd = RunDir(run)
    run = rd.path
    if not rd.is_run:
        raise GenlabError(f"{run} is not a genlab run (no config.json and metrics.jsonl)")
    meta = rd.meta
    history = rd.history
    from ..models import REGISTRY

    cls = REGISTRY.get(meta.get("kind"))
    plots = cls.for_data(rd.spec).diagnostic_plots if cls is not None and "spec" in meta else {}
    curves = curves_png(history, plots) if history else None
    samples = rd.sample_grids()
    if len(samples) > 12:  # keep the page light: an even spread, always with the last
        idx = sorted({round(i * (len(samples) - 1) / 11) for i in range(12)})
        samples = [samples[i] for i in idx]
    figures = sorted((run / "figures").glob("*.png")) if (run / "figures").is_dir() else []
    ev = rd.latest_eval()
    config = [("model", sorted(meta.get("config", {}).items())), ("training", sorted(meta.get("train", {}).items())),
              ("data", sorted(meta.get("data", {}).items()))]
    last = history[-1] if history else {}
    html = jinja2.Environment(autoescape=True).from_string(PAGE).render(
        title=run.name, kind=meta.get("kind"), dataset=meta.get("data", {}).get("name"), steps=last.get("step", 0),
        seconds=round(last.get("time", 0.0), 1), version=meta.get("genlab_version"), metrics=summary_rows(ev),
        curves=base64.b64encode(curves).decode() if curves else None,
        figures=[(f.stem, _b64(f)) for f in figures],
        samples=[(f.stem.replace("_", " "), _b64(f)) for f in samples], config=config)
    path = Path(out) if out else run / "report.html"
    atomic_write_bytes(path, html.encode())
    return path
