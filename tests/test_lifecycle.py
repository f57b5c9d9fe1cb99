"""A run's lifecycle through the CLI: what is already written is never lost or overwritten."""

from __future__ import annotations

import hashlib

from helpers import one_line_error, train_cli

from genlab.cli import fresh_dir


def _hashes(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_demo_never_writes_over_an_existing_run(tmp_path, cli):
    run = train_cli("ae", tmp_path / "run", "--data", "digits")
    before = _hashes(run)
    one_line_error(*cli("demo", "--out", run, "--steps", "2")[::2], "holds a genlab run; the demo writes only")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    one_line_error(*cli("demo", "--out", tmp_path / "other", "--steps", "2")[::2], "is not empty")
    assert _hashes(run) == before and (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_the_demo_default_directory_is_always_new(tmp_path):
    assert fresh_dir(tmp_path, "demo") == tmp_path / "demo"
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo-2").mkdir()
    assert fresh_dir(tmp_path, "demo") == tmp_path / "demo-3"


def test_numeric_options_must_be_finite(tmp_path, cli):
    base = ["train", "vae", "--data", "digits", "--no-progress", "--out", tmp_path / "r"]
    for args, pattern in ((["--minutes", "inf"], "option 'minutes' must be a finite number"),
                          (["--epochs", "inf"], "option 'epochs' must be a finite number"),
                          (["--steps", "10", "--lr", "inf"], "option 'lr' must be a finite number"),
                          (["--steps", "10", "--lr", "nan"], "option 'lr' must be a finite number"),
                          (["--steps", "10", "--set", "beta=inf"], "option 'beta' must be a finite number"),
                          (["--steps", "10", "--set", "latent_dim=inf"], "option 'latent_dim' expects an integer")):
        one_line_error(*cli(*base, *args)[::2], pattern)
    assert not (tmp_path / "r").exists()


def test_sampling_options_must_be_finite(tmp_path, cli):
    run = train_cli("ddpm", tmp_path / "d", "--data", "digits", "--set", "conditional=true", "--set", "channels=8",
                    "--set", "timesteps=50", "--set", "sample_steps=5")
    for args, pattern in ((["--guidance", "nan"], "option 'guidance' must be a finite number"),
                          (["--guidance", "-1"], "guidance must be >= 0, got -1"),
                          (["--opt", "eta=nan"], "option 'eta' must be a finite number"),
                          (["--steps", "0"], "steps must be between 1 and")):
        one_line_error(*cli("sample", run, "--n", "2", *args)[::2], pattern)
    assert not (run / "samples" / "sample_seed0.png").exists()
