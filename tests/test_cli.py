"""The CLI end to end, and every bad input of the foundation issue: one line on stderr, exit code 2,
nothing already written lost."""

import json

import numpy as np
import pytest
from helpers import FAST, one_line_error, train_cli


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A small conditional VAE run on digits, shared by the tests below."""
    return train_cli("vae", tmp_path_factory.mktemp("runs") / "vae", "--data", "digits", "--set", "conditional=true",
                     "--set", "channels=[8,16]")


def test_train_sample_eval_report(cli, vae_run, tmp_path):
    assert (vae_run / "model.safetensors").is_file() and (vae_run / "metrics.jsonl").is_file()
    meta = json.loads((vae_run / "config.json").read_text())
    assert meta["kind"] == "vae" and meta["data"]["name"] == "digits" and meta["train"]["steps"] == 30
    code, out, _ = cli("sample", vae_run, "--n", "20", "--label", "3", "--out", tmp_path / "s.npz")
    assert code == 0
    x = np.load(tmp_path / "s.npz")["x"]
    assert x.shape == (20, 8, 8, 1) and x.dtype == np.uint8
    code, out, _ = cli("sample", vae_run, "--n", "16", "--out", tmp_path / "s.png")
    assert code == 0 and (tmp_path / "s.png").stat().st_size > 100
    code, out, _ = cli("eval", vae_run, "--k", "5")
    ev = json.loads((vae_run / "eval.json").read_text())["metrics"]["nll"]
    assert code == 0 and ev["n"] == 359 and ev["iwae_k5_nats"] <= ev["elbo_nats"] + 1.0
    code, out, _ = cli("report", vae_run)
    html = (vae_run / "report.html").read_text()
    assert code == 0 and "Training curves" in html and "reconstructions" in html and "<script" not in html


def test_report_escapes_user_strings(cli, tmp_path):
    from genlab.report.html import write_report

    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"kind": "vae", "config": {"note": "<script>alert(1)</script>"},
                                                 "data": {"name": "<b>x</b>"}}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    html = write_report(run).read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<b>x" not in html


def test_listings(cli):
    code, out, _ = cli("datasets")
    assert code == 0 and "fashion-mnist" in out and "mnist5k" in out and "folder:PATH" in out
    code, out, _ = cli("models")
    assert code == 0 and all(k in out for k in ("ae", "dae", "vae", "log_prob"))


def test_bad_inputs_unknown_names(cli, tmp_path):
    one_line_error(*cli("train", "vae", "--data", "nosuchdata", *FAST, "--out", tmp_path / "a")[::2], "unknown dataset")
    one_line_error(*cli("train", "gann", "--data", "digits", *FAST, "--out", tmp_path / "b")[::2], "unknown model kind")
    one_line_error(*cli("train", "vae", "--data", "digits", "--set", "bogus=1", *FAST)[::2], "unknown vae option")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bad_inputs_paths(cli, tmp_path):
    one_line_error(*cli("train", "vae", "--data", f"folder:{tmp_path / 'missing'}", *FAST)[::2], "not found")
    one_line_error(*cli("train", "vae", "--data", f"csv:{tmp_path / 'missing.csv'}", *FAST)[::2], "not found")


def test_bad_inputs_images(cli, tmp_path):
    from PIL import Image

    corrupt, mixed = tmp_path / "corrupt", tmp_path / "mixed"
    corrupt.mkdir()
    mixed.mkdir()
    for i in range(3):
        Image.new("L", (8, 8), 9).save(corrupt / f"{i}.png")
        Image.new("L", (8 + 8 * (i % 2), 8), 9).save(mixed / f"{i}.png")
    (corrupt / "bad.png").write_bytes(b"garbage")
    one_line_error(*cli("train", "ae", "--data", f"folder:{corrupt}", *FAST)[::2], "cannot read image")
    one_line_error(*cli("train", "ae", "--data", f"folder:{mixed}", *FAST)[::2], "mixed image sizes")


def test_bad_inputs_nan_in_csv(cli, tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("a,b\n1,2\n3,nan\n5,6\n7,8\n")
    one_line_error(*cli("train", "vae", "--data", f"csv:{p}", *FAST)[::2], "column 'b'")


def test_bad_inputs_labels_and_config_values(cli, vae_run, tmp_path):
    one_line_error(*cli("sample", vae_run, "--label", "12")[::2], "label 12 is out of range")
    one_line_error(*cli("train", "vae", "--data", "digits", "--lr", "-0.1", *FAST)[::2], "lr must be > 0")
    one_line_error(*cli("train", "vae", "--data", "digits", "--set", "beta=-1", *FAST)[::2], "beta must be >= 0")
    one_line_error(*cli("train", "vae", "--data", "digits", "--set", "latent_dim=x", *FAST)[::2], "expects an integer")
    one_line_error(*cli("sample", vae_run, "--guidance", "2")[::2], "takes no --guidance")
    one_line_error(*cli("sample", vae_run, "--drs", "80")[::2], "--drs is for GANs")


def test_bad_inputs_not_a_run(cli, tmp_path, vae_run):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("keep me")
    one_line_error(*cli("train", "--resume", "--out", tmp_path / "junk")[::2], "is not a genlab run")
    one_line_error(*cli("sample", tmp_path / "junk")[::2], "is not a genlab run")
    assert (tmp_path / "junk" / "notes.txt").read_text() == "keep me"
    before = (vae_run / "model.safetensors").read_bytes()
    one_line_error(*cli("train", "vae", "--data", "digits", *FAST, "--out", vae_run)[::2], "holds a run")
    assert (vae_run / "model.safetensors").read_bytes() == before


def test_unconditional_model_rejects_labels(cli, tmp_path):
    out = tmp_path / "ae"
    assert cli("train", "ae", "--data", "digits", *FAST, "--out", out)[0] == 0
    one_line_error(*cli("sample", out, "--label", "1")[::2], "is unconditional")
    one_line_error(*cli("sample", out, "--prompt", "a cat")[::2], "takes no prompt")


def test_eval_bad_inputs(cli, vae_run, tmp_path):
    one_line_error(*cli("eval", vae_run, "--n", "1")[::2], "--n must be >= 2")
    one_line_error(*cli("eval", vae_run, "--metrics", "fid,bogus")[::2], "unknown metric 'bogus'")
    one_line_error(*cli("eval", vae_run, "--extractor", tmp_path / "none.safetensors")[::2], "not found")
    ae = tmp_path / "ae"
    assert cli("train", "ae", "--data", "digits", *FAST, "--out", ae)[0] == 0
    one_line_error(*cli("eval", ae, "--metrics", "nll")[::2], "ae has no log_prob")
    one_line_error(*cli("eval", ae, "--metrics", "cls_acc")[::2], "needs a class- or text-conditional model")
    one_line_error(*cli("eval", tmp_path / "nowhere")[::2], "is not a genlab run")


def test_progress_flag_is_honoured_on_resume(cli, tmp_path):
    out = tmp_path / "p"
    code, stdout, _ = cli("train", "ae", "--data", "digits", "--steps", "20", "--batch-size", "64", "--out", out,
                          "--set", "train.checkpoint_every=10")
    assert code == 0 and "train" in stdout and "img/s" in stdout  # the bar is drawn by default
    code, stdout, _ = cli("train", "--resume", "--out", out, "--steps", "30", "--no-progress")
    assert code == 0 and "img/s" not in stdout, stdout  # the saved run's progress=true must not win
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 30
