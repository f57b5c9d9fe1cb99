"""The Trainer: exact resume after a kill, determinism, budgets, EMA, the divergence guard, DDP."""

import json
import math
import os
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

import genlab
from genlab.errors import GenlabError, TrainingDiverged
from genlab.training.trainer import EMA, TrainConfig, Trainer

from .conftest import PY, ROOT

TRAIN = ["train", "vae", "--data", "mnist5k", "--steps", "200", "--batch-size", "32", "--seed", "7",
         "--set", "channels=[8,16]", "--set", "train.checkpoint_every=100", "--set", "train.ema_decay=0.95",
         "--set", "train.log_every=10", "--no-progress"]


def _weights_equal(a, b, name):
    wa, wb = load_file(str(a / name)), load_file(str(b / name))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _strip_time(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "images_per_s")} for r in rows]


def _checkpoint_step(state) -> int:
    try:
        return json.loads(state.read_text())["step"]
    except (OSError, ValueError, KeyError):  # not written yet, or being swapped in
        return -1


def test_resume_after_kill_is_exact(tmp_path):
    """200 steps in one go == 100 steps, SIGKILL, --resume, the rest: identical weights, EMA and logs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([PY, "-m", "genlab", *TRAIN, "--out", str(one)], check=True, env=env, cwd=ROOT,
                   capture_output=True)
    proc = subprocess.Popen([PY, "-m", "genlab", *TRAIN, "--out", str(two)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = two / "checkpoint" / "state.json"
    deadline = time.time() + 120
    while _checkpoint_step(state) < 100 and time.time() < deadline:  # step 0's checkpoint comes first
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(state.read_text())["step"] == 100, "the kill came after the run finished; make steps slower"
    subprocess.run([PY, "-m", "genlab", "train", "--resume", "--out", str(two), "--no-progress"], check=True,
                   env=env, cwd=ROOT, capture_output=True)
    assert json.loads(state.read_text())["step"] == 200
    assert _weights_equal(one, two, "model.safetensors")
    assert _weights_equal(one, two, "ema.safetensors")
    assert _strip_time(one / "metrics.jsonl") == _strip_time(two / "metrics.jsonl")


def _small_run(tmp_path, name, **kw):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, channels=(8, 16), latent_dim=4)
    opts = dict(steps=60, batch_size=64, lr=3e-3, warmup_steps=10, progress=False, out=tmp_path / name)
    opts.update(kw)
    return genlab.train(model, data, **{k: v for k, v in opts.items() if v is not None or k not in ("steps",)})


def test_same_seed_same_numbers_and_loss_drops(tmp_path):
    a, b = _small_run(tmp_path, "a"), _small_run(tmp_path, "b")
    assert _weights_equal(a.path, b.path, "model.safetensors")
    c = _small_run(tmp_path, "c", seed=1)
    assert not _weights_equal(a.path, c.path, "model.safetensors")
    h = a.history
    assert h[-1]["nelbo"] < 0.8 * h[0]["nelbo"], (h[0]["nelbo"], h[-1]["nelbo"])


def test_epoch_and_minute_budgets(tmp_path):
    run = _small_run(tmp_path, "e", steps=None, epochs=2)  # 1438 images // 64 = 22 steps per epoch
    assert run.step == 44 and run.history[-1]["epoch"] == 2.0
    run = _small_run(tmp_path, "m", steps=None, minutes=0.05)  # a busy machine trains fewer steps, never less time
    state = json.loads((run.path / "checkpoint" / "state.json").read_text())
    assert state["elapsed"] >= 3.0 and run.seconds >= 3.0 and run.step >= 1 and state["step"] == run.step


def test_lr_schedule_warmup_then_cosine(tmp_path):
    data = genlab.load_dataset("digits")
    model = genlab.create("ae", data.spec)
    cfg = TrainConfig(steps=1000, lr=1.0, warmup_steps=10, min_lr_ratio=0.1, progress=False)
    tr = Trainer(model, data, cfg, tmp_path, {}, resume=False)
    tr.step = 4
    cosine = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 1000))
    assert tr.lr_factor(tr.progress()) == pytest.approx(0.5 * cosine)  # warm-up 5/10 times the cosine
    tr.step = 500
    assert tr.lr_factor(tr.progress()) == pytest.approx(0.1 + 0.9 * 0.5)
    tr.step = 1000
    assert tr.lr_factor(tr.progress()) == pytest.approx(0.1)


def test_ema_matches_closed_form():
    lin = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(lin, decay=0.9)
    values = [1.0, 2.0, -3.0, 0.5]
    w0 = lin.weight.item()
    for v in values:
        lin.weight.data.fill_(v)
        ema.update(lin)
    expected = 0.9**4 * w0 + sum(0.1 * 0.9 ** (3 - i) * v for i, v in enumerate(values))
    assert ema.state["weight"].item() == pytest.approx(expected, rel=1e-6)
    # with warm-up: decay_t = min(0.9, (1 + t) / (10 + t)) = 0.1, 2/11, 3/12, 4/13
    ema = EMA(lin, decay=0.9)
    expected = lin.weight.item()
    for t, v in enumerate(values):
        lin.weight.data.fill_(v)
        ema.update(lin, step=t)
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * v
    assert ema.state["weight"].item() == pytest.approx(expected, rel=1e-6)


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("ae", data.spec, arch="mlp", hidden=(16,))
    genlab.train(model, data, steps=20, batch_size=64, progress=False, out=tmp_path / "r", checkpoint_every=10)
    good = load_file(str(tmp_path / "r" / "model.safetensors"))
    from genlab.training.checkpoint import read_checkpoint

    ck = read_checkpoint(tmp_path / "r" / "checkpoint")
    # resume with a model whose first layer blows up, so the very next loss is not finite
    broken = genlab.create("ae", data.spec, arch="mlp", hidden=(16,))
    broken.encoder[0].register_forward_hook(lambda m, i, o: o * float("inf"))
    with pytest.raises(TrainingDiverged, match="became (nan|inf) at step 20.*checkpoint \\(step 20\\)"):
        genlab.train(broken, data, steps=40, batch_size=64, progress=False, out=tmp_path / "r", resume=True,
                     checkpoint_every=10)
    after = load_file(str(tmp_path / "r" / "model.safetensors"))
    assert all(torch.equal(good[k], after[k]) for k in good)  # nothing written after the divergence
    assert read_checkpoint(tmp_path / "r" / "checkpoint")["state"] == ck["state"]


def test_existing_run_is_never_overwritten(tmp_path):
    _small_run(tmp_path, "x", steps=5)
    before = (tmp_path / "x" / "model.safetensors").read_bytes()
    with pytest.raises(GenlabError, match="holds a run; pass resume=True to continue it, overwrite=True"):  # API words
        _small_run(tmp_path, "x", steps=5)
    assert (tmp_path / "x" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(batch_size=0), dict(ema_decay=1.0), dict(steps=10, epochs=1)])
def test_invalid_training_options(tmp_path, bad):
    with pytest.raises(GenlabError):
        _small_run(tmp_path, "bad", **bad)


def test_torchrun_two_processes_match_single_process(tmp_path):
    """2-process DDP (gloo) with global batch 64 vs one process with batch 64: same weights to 1e-5."""
    args = ["train", "ae", "--data", "digits", "--steps", "40", "--batch-size", "64", "--seed", "3",
            "--set", "arch=mlp", "--set", "hidden=[64]", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([PY, "-m", "genlab", *args, "--out", str(tmp_path / "single")], check=True, env=env, cwd=ROOT,
                   capture_output=True)
    r = subprocess.run([PY, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "-m", "genlab",
                        *args, "--out", str(tmp_path / "ddp")], env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    a = load_file(str(tmp_path / "single" / "model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    diff = max((a[k] - b[k]).abs().max().item() for k in a if k.startswith(("encoder", "decoder")))
    print(f"\nmax |single - ddp| weight difference after 40 steps: {diff:.2e}")
    assert diff < 1e-5, diff
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2
