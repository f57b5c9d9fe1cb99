"""`genlab bench trilemma`: every family at one budget, resumable after a kill, one comparison."""

import json

import pytest

from genlab.bench import representatives, trilemma
from genlab.cli import main
from genlab.data import load_dataset
from genlab.io import file_sha256
from genlab.models import REGISTRY

from .helpers import one_line_error

FAST = dict(minutes=0.02, n=300, metrics=["fid", "pr", "dc", "modes"])


def test_one_representative_per_family_that_fits_the_data():
    vec = representatives(load_dataset("gaussians25").spec)
    img = representatives(load_dataset("digits").spec)
    for plan in (vec, img):
        families = [REGISTRY[k].family for k, _ in plan]
        assert len(families) == len(set(families))
    assert [k for k, _ in vec] == ["vae", "ddpm", "gan", "maf"]
    assert [k for k, _ in img] == ["vae", "ddpm", "gan", "realnvp", "pixelcnn"]
    assert [s["sampler"] for s in dict(vec)["ddpm"]] == ["ddpm", "ddim", "dpm++"]


def test_a_killed_benchmark_resumes_to_the_full_comparison(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    import genlab.metrics.protocol as protocol
    from genlab.models import DDPM

    # two of the declared samplers, shorter: 1000 ancestral steps would be most of this test's time
    monkeypatch.setattr(DDPM, "bench_samplers", classmethod(lambda cls, spec: (
        {"sampler": "ddpm", "steps": 100}, {"sampler": "ddim", "steps": 10})))

    real, calls = protocol.evaluate, []

    def killed_on_the_third(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(protocol, "evaluate", killed_on_the_third)
    out = tmp_path / "tri"
    with pytest.raises(KeyboardInterrupt):
        trilemma("gaussians25", out=out, **FAST)
    state = json.loads((out / "bench.json").read_text())
    assert state["done"] == ["train vae", "eval vae", "train ddpm", "eval ddpm sampler=ddpm steps=100"]
    vae_weights = file_sha256(out / "vae" / "model.safetensors")
    (out / "gan").mkdir()  # as a kill before a run's first checkpoint leaves it: a config and nothing else
    (out / "gan" / "config.json").write_text("{}")
    import genlab.bench as bench
    from genlab.errors import TrainingDiverged

    real_stage = bench._run_stage

    def gan_diverges(run, kind, opts, *a):
        if kind == "gan" and opts is None:
            raise TrainingDiverged("the loss became nan at step 7")
        return real_stage(run, kind, opts, *a)

    monkeypatch.setattr(bench, "_run_stage", gan_diverges)
    c = trilemma("gaussians25", out=out, **FAST)  # one family failing does not stop the others
    assert [r["run_dir"] for r in c.rows] == ["vae", "ddpm", "ddpm", "maf"]
    assert "train gan failed: the loss became nan at step 7" in c.notes
    assert set(json.loads((out / "bench.json").read_text())["failed"]) == {"train gan", "eval gan"}
    monkeypatch.setattr(bench, "_run_stage", real_stage)
    c = trilemma("gaussians25", out=out, **FAST)  # a resume tries the failed stages again
    assert file_sha256(out / "vae" / "model.safetensors") == vae_weights  # done stages are not redone
    assert len(calls) == 3 + 3  # the killed evaluation again, then the rest
    assert c.notes == []
    assert [r["run"] for r in c.rows] == ["vae", "ddpm (sampler=ddim, steps=10)", "ddpm (sampler=ddpm, steps=100)",
                                          "gan", "maf"]
    assert {r["protocol"] for r in c.rows} == {"A"} and all(r["modes"].count("/25") == 1 for r in c.rows)
    for r in c.rows:  # the same wall-clock budget for every family, spent
        assert json.loads((out / r["run_dir"] / "config.json").read_text())["train"]["minutes"] == 0.02
        assert r["train_minutes"] >= 0.02, r
    assert (out / "compare.html").is_file() and (out / "compare.md").read_text().count("\n| ") == 5


def test_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    (tmp_path / "tri").mkdir()
    (tmp_path / "tri" / "bench.json").write_text(json.dumps({"data": "gaussians25", "minutes": 5, "seed": 0,
                                                             "n": None, "metrics": None, "extractor": None,
                                                             "done": []}))
    base = ["bench", "trilemma", "--data", "gaussians25"]
    for argv, pattern in [
        ([*base, "--minutes", "0", "--out", str(tmp_path / "a")], "--minutes must be a positive number"),
        ([*base, "--minutes", "nan", "--out", str(tmp_path / "a")], "--minutes must be a positive number"),
        ([*base, "--minutes", "1", "--out", str(tmp_path / "busy")], "is not empty and holds no trilemma"),
        ([*base, "--minutes", "1", "--out", str(tmp_path / "tri")], "minutes=5, not 1.0"),
        ([*base, "--minutes", "1", "--kinds", "pixelcnn", "--out", str(tmp_path / "a")], "not a representative"),
        (["bench", "trilemma", "--data", "nope", "--minutes", "1"], "unknown dataset"),
        ([*base, "--minutes", "1", "--metrics", "modes,nll", "--out", str(tmp_path / "a")],
         "nll does not apply to gan on gaussians25"),
        ([*base, "--minutes", "1", "--metrics", "fidd", "--out", str(tmp_path / "a")], "unknown metric 'fidd'"),
        ([*base, "--minutes", "1", "--n", "1", "--out", str(tmp_path / "a")], "--n must be >= 2"),
        ([*base, "--minutes", "1", "--kinds", ",", "--out", str(tmp_path / "a")], "--kinds is empty"),
        ([*base, "--minutes", "1", "--out", str(tmp_path / "busy" / "x")], "is a file"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        one_line_error(e.value.code, capsys.readouterr().err, pattern)
    assert json.loads((tmp_path / "tri" / "bench.json").read_text())["minutes"] == 5  # untouched
    assert not (tmp_path / "a").exists()  # every error came before anything was written


def test_a_stopped_benchmark_names_the_command_that_continues_it(tmp_path, monkeypatch):
    """The hint repeats every option the benchmark was started with: a resume with other options is refused."""
    import genlab.bench as bench
    from genlab.errors import Interrupted

    def stopped(*a, **k):
        raise Interrupted("stopped by SIGTERM at step 3: the checkpoint is in X", 15)

    monkeypatch.setattr(bench, "_run_stage", stopped)
    out = tmp_path / "a b"
    with pytest.raises(Interrupted) as e:
        trilemma("gaussians25", minutes=20.0, out=out, n=500, seed=3, metrics=["fid", "pr"], kinds=["gan", "vae"])
    assert e.value.exit_code == 143
    assert e.value.cli == (f"stopped by SIGTERM at step 3: continue the benchmark with genlab bench trilemma --data "
                           f"gaussians25 --minutes 20 --out '{out}' --seed 3 --n 500 --metrics fid,pr --kinds gan,vae")
