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


def test_a_table_too_small_to_split_is_refused_at_once(tmp_path, cli):
    import warnings

    import genlab
    from genlab.data.dataset import min_items, split_indices

    f = tmp_path / "t.csv"
    f.write_text("a,b\n1.0,x\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warning leaks before the error
        one_line_error(*cli("train", "vae", "--data", f"csv:{f}", "--steps", "2", "--out", tmp_path / "r")[::2],
                       "has 1 row(s); a table needs at least 8")
    assert min_items(0.2) == 8 and min(map(len, split_indices(8, 0.2))) == 2 == min(map(len, split_indices(9, 0.2)))
    assert min(map(len, split_indices(7, 0.2))) == 1
    f.write_text("a,b\n" + "".join(f"{i}.5,{'xy'[i % 2]}\n" for i in range(8)))
    test = genlab.load_dataset(f"csv:{f}", "test")
    assert len(test) == 2 and len(genlab.load_dataset(f"csv:{f}")) == 6


def test_sampling_flags_are_generic_and_checked(tmp_path, cli):
    run = train_cli("vae", tmp_path / "v", "--data", "moons", "--set", "latent_dim=2")
    one_line_error(*cli("sample", run, "--seeed", "1")[::2], "no such option: --seeed")
    one_line_error(*cli("sample", run, "--mean")[::2], "option --mean needs a value")
    one_line_error(*cli("eval", run, "--steps", "5")[::2], "vae takes no --steps; --steps is for DDPMs")
    code, out, err = cli("sample", run, "--n", "3", "--mean", "false", "--out", tmp_path / "a.npz")
    assert code == 0, err
    code, out, err = cli("sample", run, "--n", "3", "--opt", "mean=false", "--out", tmp_path / "b.npz")
    assert code == 0, err
    import numpy as np

    a, b = np.load(tmp_path / "a.npz")["x"], np.load(tmp_path / "b.npz")["x"]
    assert np.array_equal(a, b)
