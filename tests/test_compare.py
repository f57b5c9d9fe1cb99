"""`genlab compare`: the table equals the runs' own files, protocols are never mixed silently, the page is offline
and escaped, and bad input is one line."""

import csv
import io
import json
import re
from html.parser import HTMLParser

import html5lib
import pytest
import torch

import genlab
from genlab.cli import main
from genlab.errors import GenlabError
from genlab.metrics.protocol import evaluate
from genlab.report.compare import compare_runs, to_markdown, trilemma_axes, write_comparison

from .helpers import one_line_error, render_in_chromium

SHOWN = ["fid", "pr", "dc", "modes"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A VAE (with a likelihood bound) and a DDPM evaluated with two samplers, then once more with fewer samples."""
    root = tmp_path_factory.mktemp("cmp")
    data = genlab.load_dataset("gaussians8")
    torch.manual_seed(0)
    vae, ddpm = root / "vae<i>", root / "ddpm"
    fast = dict(steps=60, batch_size=256, progress=False, sample_every=60)  # one sample grid, at the end
    genlab.train(genlab.create("vae", data.spec, latent_dim=2, hidden=(32, 32)), data, out=vae, **fast)
    genlab.train(genlab.create("ddpm", data.spec, hidden=(64, 64)), data, out=ddpm, **fast)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENLAB_CACHE", str(root / "cache"))
        evaluate(vae, n=500, k=2, metrics=SHOWN + ["nll"])  # KID left out: its 100 subsets cost seconds
        evaluate(ddpm, n=500, metrics=SHOWN, sample_opts={"sampler": "ddim", "steps": 10})
        evaluate(ddpm, n=500, metrics=SHOWN, sample_opts={"sampler": "dpm++", "steps": 5})
    return root, vae, ddpm


def test_rows_equal_the_runs_files(runs):
    root, vae, ddpm = runs
    c = compare_runs([vae, ddpm])
    assert [r["run_dir"] for r in c.rows] == ["vae<i>", "ddpm", "ddpm"]  # one row per evaluation with samples
    assert {r["run"] for r in c.rows[1:]} == {"ddpm (sampler=ddim, steps=10)", "ddpm (sampler=dpm++, steps=5)"}
    for r, (run, key) in zip(c.rows, [(vae, None), (ddpm, "ddim"), (ddpm, "dpm++")]):
        ev = next(json.loads(f.read_text()) for f in sorted((run / "evals").glob("*.json"))
                  if key is None or f"sampler={key}" in f.name)
        for m in ("fid", "precision", "recall", "density", "coverage"):
            assert r[m] == ev["metrics"][m]
        assert r["kid"] is None
        assert r["samples_per_s"] == pytest.approx(ev["sampling"]["samples_per_s"], rel=0.01)
        assert r["nfe"] == ev["sampling"]["nfe_per_sample"]
        assert r["modes"].startswith(f"{ev['metrics']['modes']['modes']}/8")
        model = genlab.load(run)
        assert r["params"] == sum(p.numel() for p in model.state_dict().values())  # from the header alone
        assert r["steps"] == 60 and r["train_minutes"] > 0
    nll = json.loads((vae / "eval.json").read_text())["metrics"]["nll"]
    assert c.rows[0]["nll_bpd"] == min(nll["elbo_bpd"], nll["iwae_k2_bpd"]) and c.rows[0]["nll_mark"] == "≤"
    assert c.rows[1]["nll_bpd"] is None
    assert {r["protocol"] for r in c.rows} == {"A"} and c.notes == []  # same data, n and reference: comparable


def test_other_sample_counts_get_another_letter_and_a_note(runs, tmp_path):
    root, vae, ddpm = runs
    import shutil

    other = tmp_path / "vae-300"
    shutil.copytree(vae, other)
    shutil.rmtree(other / "evals")
    evaluate(other, n=300, k=2, metrics=SHOWN)
    c = compare_runs([vae, other])
    assert [r["protocol"] for r in c.rows] == ["A", "B"]
    assert "300 samples" in c.protocols["B"] and "500 samples" in c.protocols["A"]
    assert any("compare only between rows with the same letter" in n for n in c.notes)
    assert "protocol B: " in to_markdown(c)


def test_names_tell_runs_apart_and_stale_rows_are_noted(runs, tmp_path):
    import shutil

    root, vae, ddpm = runs
    a, b = tmp_path / "a" / "vae", tmp_path / "b" / "vae"
    shutil.copytree(vae, a)
    shutil.copytree(vae, b)
    with open(b / "metrics.jsonl", "a") as f:  # b trained on after its evaluation
        f.write(json.dumps({"step": 99, "loss": 1.0, "time": 9.0}) + "\n")
    c = compare_runs([a, b])
    assert [r["run_dir"] for r in c.rows] == ["a/vae", "b/vae"] and [r["steps"] for r in c.rows] == [60, 60]
    assert any(n.startswith("b/vae: some rows were evaluated before the run trained further") for n in c.notes)
    with pytest.raises(GenlabError, match="is given twice"):
        compare_runs([a, tmp_path / "a" / ".." / "a" / "vae"])


def test_written_files_agree_and_the_page_is_offline_and_escaped(runs, tmp_path):
    root, vae, ddpm = runs
    c = compare_runs([vae, ddpm])
    paths = write_comparison(c, tmp_path / "out")
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert [float(r["fid"]) for r in rows] == [r["fid"] for r in c.rows]
    md = paths["md"].read_text().splitlines()
    assert md[0].startswith("| run | kind | data | protocol | FID ↓ | precision")  # no KID column: none measured
    assert len([ln for ln in md if ln.startswith("| ")]) == 4
    html = paths["html"].read_text()

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.srcs = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.srcs += [v for k, v in attrs if k in ("src", "href")]

    p = Tags()
    p.feed(html)
    assert p.tags.count("tr") == 1 + 3 + 16  # the header, 3 rows, a glossary line for each column but KID
    assert p.tags.count("img") >= 5  # 3 plots + 2 sample grids
    assert all(s.startswith("data:image/png;base64,") for s in p.srcs)  # nothing fetched from outside
    assert "vae<i>" not in html and "vae&lt;i&gt;" in html
    html5lib.HTMLParser(strict=True).parse(html)  # no parse error anywhere (a browser would render it as written)
    import base64

    plots = {k: v for k, v in paths.items() if k not in ("html", "md", "csv")}
    assert sorted(plots) == ["precision vs recall", "quality vs sampling time", "trilemma"]
    for name, png in plots.items():  # the page's plots, also as files
        assert png.name == f"compare-{name.replace(' ', '-')}.png"
        assert f'src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}"' in html
    assert not re.search(r"<(script|link)\b", html)


def test_the_page_renders_in_chromium_offline(runs, tmp_path):
    root, vae, ddpm = runs
    paths = write_comparison(compare_runs([vae, ddpm]), tmp_path / "out")
    dom, console, images, broken = render_in_chromium(paths["html"])
    assert console == []  # no script errors, no failed loads (every host is unreachable)
    assert images >= 5 and broken == 0  # 3 plots + 2 sample grids, every one decoded
    assert dom.count("<tr") == 1 + 3 + 16 and "vae&lt;i&gt;" in dom


def test_plot_text_is_plain_with_math_parsing_off(runs, monkeypatch):
    """Run names are never parsed as mathtext, so no label may rely on it: the log axis once printed its ticks
    as raw '$\\mathdefault{10^{-4}}$'."""
    import matplotlib.text

    from genlab.report import html
    from genlab.report.compare import figures

    root, vae, ddpm = runs
    texts = []

    def capture(fig):
        fig.canvas.draw()  # tick labels exist once drawn
        texts.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        return ""

    monkeypatch.setattr(html, "figure_b64", capture)
    assert len(figures(compare_runs([vae, ddpm]))) == 3
    ticks = [t for t in texts if re.fullmatch(r"[0-9.e+-]+", t)]
    assert len(ticks) >= 3 and not [t for t in texts if "$" in t or "mathdefault" in t]


def test_slow_samplers_keep_their_rate():
    from genlab.report.compare import _rate

    assert _rate({"n": 500, "seconds": 3585.15, "samples_per_s": 0.1}) == pytest.approx(500 / 3585.15, rel=1e-3)
    assert _rate({"n": 500, "seconds": 0.17, "samples_per_s": 3028.4}) == 3028.4  # under a second: the stored rate


def test_trilemma_axes_by_hand():
    rows = [{"run": "a", "precision": 0.5, "samples_per_s": 1000.0, "coverage": 0.9},
            {"run": "b", "precision": 1.0, "samples_per_s": 10.0, "coverage": 0.5},
            {"run": "c", "precision": 0.25, "samples_per_s": 100.0, "coverage": None, "recall": 0.3},
            {"run": "d", "precision": None, "samples_per_s": 5.0}]
    assert trilemma_axes(rows) == [("a", 0.5, 1.0, 0.9), ("b", 1.0, 0.5, 0.5), ("c", 0.25, 0.75, 0.3)]


def test_bad_input_is_one_line(runs, tmp_path, capsys):
    root, vae, ddpm = runs
    bare = tmp_path / "bare"
    genlab.load(vae).save(bare)
    for argv, pattern in [(["compare", str(bare), "--out", str(tmp_path / "o")], "has no evaluation"),
                          (["compare", str(tmp_path / "nothing")], "is not a genlab run"),
                          (["compare"], "Missing argument")]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        one_line_error(e.value.code, capsys.readouterr().err, pattern)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as e:
        main(["compare", str(vae), "--out", str(tmp_path / "file")])
    one_line_error(e.value.code, capsys.readouterr().err, "is a file")
