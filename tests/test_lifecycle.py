"""A run's lifecycle through the CLI: what is already written is never lost or overwritten; an interrupted,
killed, damaged or diverged run resumes as its messages say; bad input is refused in one line."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import one_line_error, train_cli
from safetensors.torch import load_file

from genlab.cli import fresh_dir


def _hashes(root):
    """sha256 of every file but the writer's lock (which holds the pid of the last process to take it)."""
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


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


# ---- interruption and resume, through the command line in child processes
ROOT = Path(__file__).resolve().parents[1]
RUN = ["train", "vae", "--data", "mnist5k", "--steps", "200", "--batch-size", "32", "--seed", "3", "--set",
       "channels=[8,16]", "--set", "train.ema_decay=0.9", "--set", "train.log_every=1", "--set",
       "train.checkpoint_every=1000", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _genlab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "genlab", *map(str, args)], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, **kw)


def _start(out):
    return subprocess.Popen([sys.executable, "-m", "genlab", *RUN, "--out", str(out)], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(run, step: int, proc) -> None:
    """Until metrics.jsonl has logged `step` (log_every=1), or the process ended."""
    f = run / "metrics.jsonl"
    deadline = time.time() + 900  # a guard against a hang only: a busy machine may be many times slower
    while time.time() < deadline and proc.poll() is None:
        if f.is_file() and len(f.read_text().splitlines()) >= step:
            return
        time.sleep(0.005)


def _same_weights(a, b) -> bool:
    for name in ("model.safetensors", "ema.safetensors"):
        wa, wb = load_file(str(a / name)), load_file(str(b / name))
        if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
            return False
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert _genlab(*RUN, "--out", out).returncode == 0
    return out


# SIGKILL and SIGINT in the default run; SIGTERM (handled as SIGINT is) and the other steps in the slow run (-m slow)
@pytest.mark.parametrize("how,at", [("kill", 1), pytest.param("kill", 57, marks=pytest.mark.slow),
                                    pytest.param("int", 1, marks=pytest.mark.slow), ("int", 83),
                                    pytest.param("term", 41, marks=pytest.mark.slow)])
def test_interrupted_runs_resume_to_the_same_weights(reference, tmp_path, how, at):
    out = tmp_path / "run"
    proc = _start(out)
    _wait_for_step(out, at, proc)
    proc.send_signal({"kill": signal.SIGKILL, "int": signal.SIGINT, "term": signal.SIGTERM}[how])
    _, err = proc.communicate(timeout=900)
    assert proc.returncode != 0, "the run finished before the signal; make its steps slower"
    step = json.loads((out / "checkpoint" / "state.json").read_text())["step"]
    if how == "kill":
        assert proc.returncode == -signal.SIGKILL and step == 0  # the step-0 checkpoint: resumable from the start
        if at == 1:  # and usable as a run before it resumes
            shown = _genlab("sample", out, "--n", "2", "--out", tmp_path / "early.png")
            assert shown.returncode == 0, shown.stderr
    else:
        code = 128 + (signal.SIGINT if how == "int" else signal.SIGTERM)
        name = "SIGINT" if how == "int" else "SIGTERM"
        assert proc.returncode == code and step >= at
        assert err.strip() == (f"genlab: stopped by {name} at step {step}; the checkpoint is in {out / 'checkpoint'}"
                               f": continue with genlab train --resume --out {out}")
    done = _genlab("train", "--resume", "--out", out, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert _same_weights(reference, out)


def test_a_second_writer_is_refused_while_the_first_finishes_unharmed(tmp_path, cli):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "genlab", *RUN, "--steps", "1500", "--out", str(out)], env=ENV,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(out, 20, proc)
    config = (out / "config.json").read_text()
    for extra in (["--resume"], ["--overwrite", "vae", "--data", "mnist5k", "--steps", "5"]):
        code, _, err = cli("train", *extra, "--out", out, "--no-progress")
        assert proc.poll() is None, "the first run ended before the second writer came"
        one_line_error(code, err, "is being written by another genlab process (pid ")
    assert proc.wait(timeout=1800) == 0
    assert (out / "config.json").read_text() == config and load_file(str(out / "model.safetensors"))
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 1501))


def test_resume_changes_what_may_change_and_records_it(reference, tmp_path, cli):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    before = _hashes(out)
    for args, pattern in ((["--set", "latent_dim=4"], "--resume cannot change the model option latent_dim (the "
                                                       "run's weights were made with 16, got 4)"),
                          (["--set", "beta=3"], "--resume cannot change the model option beta"),
                          (["--data", "digits"], "--resume cannot change the data (the run trains on mnist5k"),
                          (["--batch-size", "64"], "--resume cannot change the training option batch_size"),
                          (["--overwrite"], "--resume and --overwrite contradict each other")):
        one_line_error(*cli("train", "--resume", "--out", out, "--no-progress", *args)[::2], pattern)
    assert _hashes(out) == before
    code, _, err = cli("train", "--resume", "--out", out, "--no-progress", "--lr", "0.01", "--steps", "210")
    assert code == 0, err
    meta = json.loads((out / "config.json").read_text())
    assert meta["train"]["lr"] == 0.01 and meta["train"]["steps"] == 210
    (entry,) = meta["history"]
    assert entry["step"] == 200 and entry["changed"] == {"lr": [0.001, 0.01], "steps": [200, 210]}


def test_damaged_checkpoints_fall_back_or_say_so(reference, tmp_path, cli):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    code, _, err = cli("train", "--resume", "--out", out, "--no-progress", "--steps", "230")
    assert code == 0, err  # after that resume: checkpoint = step 230, checkpoint.old = step 200
    (out / "checkpoint" / "optim.pt").write_bytes((out / "checkpoint" / "optim.pt").read_bytes()[:100])
    (out / "model.safetensors").write_bytes(b"\0" * 10)
    (out / ".checkpoint-x1").mkdir()
    (out / ".tmp-y2.json").write_text("{")
    code, _, err = cli("train", "--resume", "--out", out, "--no-progress", "--steps", "230")
    assert code == 0 and "optim.pt is damaged (" in err and "resuming from the previous checkpoint" in err
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 230
    assert load_file(str(out / "model.safetensors"))  # rewritten whole
    assert not (out / ".checkpoint-x1").exists() and not (out / ".tmp-y2.json").exists()
    for d in ("checkpoint", "checkpoint.old"):
        (out / d / "state.json").write_text("not json")
    one_line_error(*cli("train", "--resume", "--out", out, "--no-progress")[::2], "state.json is damaged")


def test_a_diverged_run_resumes_as_its_message_says(tmp_path):
    out = tmp_path / "run"
    first = _genlab("train", "vae", "--data", "digits", "--steps", "30", "--lr", "1e12", "--set",
                    "train.grad_clip=0", "--no-progress", "--out", out)
    assert first.returncode == 1 and len(first.stderr.strip().splitlines()) == 1, first.stderr
    advice = first.stderr.strip().split("resume from it with a lower learning rate, ")[1]
    assert advice == f"genlab train --resume --out {out} --lr LR"
    again = _genlab(*advice.replace("LR", "1e-3").split()[1:], "--set", "train.grad_clip=1", "--no-progress")
    assert again.returncode == 0, again.stderr


def test_a_run_that_fails_on_its_options_leaves_no_folder(tmp_path, cli):
    out = tmp_path / "run"
    one_line_error(*cli("train", "cyclegan", "--data", "digits", "--set", "target=no-such-data", "--steps", "2",
                        "--no-progress", "--out", out)[::2], "unknown dataset 'no-such-data'")
    assert not out.exists()
    code, _, err = cli("train", "cyclegan", "--data", "digits", "--set", "target=digits", "--set", "channels=4",
                       "--set", "d_channels=4", "--set", "res_blocks=1", "--steps", "2", "--no-progress", "--out", out)
    assert code == 0, err


def test_the_progress_bar_shows_mean_losses(tmp_path, monkeypatch):
    import genlab
    from genlab.training import trainer

    shown = []
    monkeypatch.setattr(trainer._Progress, "update", lambda self, step, elapsed, loss, rate: shown.append(loss))
    data = genlab.load_dataset("gaussians8")
    model = genlab.create("gan", data.spec, hidden=(16, 16))
    run = genlab.train(model, data, steps=40, out=tmp_path / "g", log_every=20, batch_size=64)
    logged = [r["discriminator/loss"] for r in run.history]
    assert len(shown) == len(logged) >= 2 and shown == pytest.approx(logged)  # means, not sums over the window


def test_a_metrics_line_cut_short_by_a_kill_is_dropped(tmp_path, cli):
    run = train_cli("ae", tmp_path / "r", "--data", "digits")
    f = run / "metrics.jsonl"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines) + '\n{"step": 31, "lo')
    code, _, err = cli("report", run, "--no-figures")
    assert code == 0, err
    code, _, err = cli("train", "--resume", "--out", run, "--steps", "35", "--no-progress")
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in f.read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 35 and 30 in steps and 31 not in steps
    f.write_text(lines[0] + "\n{oops\n" + "\n".join(lines[1:]) + "\n")
    one_line_error(*cli("report", run, "--no-figures")[::2], "metrics.jsonl line 2 is damaged")


def test_command_line_parse_errors_are_one_line(tmp_path, cli):
    run = train_cli("ae", tmp_path / "r", "--data", "digits")
    one_line_error(*cli("sample", run, "--n", "abc")[::2], "Invalid value for '--n'")
    one_line_error(*cli("sample")[::2], "Missing argument")
    one_line_error(*cli("no-such-command")[::2], "No such command")
    one_line_error(*cli("train", "ae", "--data", "digits", "--steps", "1.5")[::2], "Invalid value for '--steps'")


def test_a_sample_count_beyond_memory_is_refused_before_any_work(tmp_path, cli):
    run = train_cli("ae", tmp_path / "r", "--data", "digits")
    one_line_error(*cli("sample", run, "--n", str(10**12))[::2], "more than half of this machine's")


def test_the_first_signal_is_noted_and_the_second_stops_at_once():
    from genlab.training.trainer import _StopSignals

    def send(sig, noted=lambda: False):  # to this (the main) thread; its Python handler runs within the wait
        signal.pthread_kill(threading.main_thread().ident, sig)
        deadline = time.time() + 60
        while not noted() and time.time() < deadline:
            time.sleep(0.01)  # a handler that raises (KeyboardInterrupt) ends the wait at once

    # Python's handler, as in a terminal: a job started in the background by a shell begins with SIGINT ignored
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGINT)
        with _StopSignals() as stop:
            send(signal.SIGTERM, lambda: stop.signum != 0)
            assert stop.signum == signal.SIGTERM  # noted: the loop saves a checkpoint at the end of its step
            assert signal.getsignal(signal.SIGINT) is before  # handlers back: a second signal acts at once
            with pytest.raises(KeyboardInterrupt):
                send(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGINT, outer)
