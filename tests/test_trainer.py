"""The Trainer: exact resume after a kill, determinism, budgets, EMA, the divergence guard, DDP."""

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

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
    deadline = time.time() + 900  # a guard against a hang only: a busy machine may be many times slower
    # step 0's checkpoint comes first
    while _checkpoint_step(state) < 100 and time.time() < deadline and proc.poll() is None:
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


# ---- the seams later families need: fit-start hook, EMA the model reads, weight-decay split, training in memory


def _moons_vae(seed=0):
    data = genlab.load_dataset("moons")
    torch.manual_seed(seed)
    return data, genlab.create("vae", data.spec, latent_dim=2)


def _start_batch(n, batch_size, seed):
    """The fixed batch on_fit_start is promised: the head of a permutation drawn by the seed alone."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:batch_size]


def test_fit_start_hook_sees_a_fixed_seeded_batch_and_sets_data_dependent_parameters():
    data, model = _moons_vae()
    seen = {}

    def init(x, y):  # ActNorm-like: set a bias and a scale from statistics of the batch
        seen.update(x=x.clone(), y=y.clone(), grad=torch.is_grad_enabled(), training=model.training)
        model.decoder[4].bias.copy_(x.mean(0))
        model.log_sigma.fill_(x.std().log().item())

    model.on_fit_start = init
    cfg = TrainConfig(steps=5, batch_size=64, seed=3, ema_decay=0.9, progress=False)
    tr = Trainer(model, data, cfg, None, {}, resume=False)
    x = data.x[_start_batch(len(data), 64, 3)]
    assert torch.equal(seen["x"], x) and torch.equal(seen["y"], data.y[_start_batch(len(data), 64, 3)])
    assert not seen["grad"] and seen["training"]
    assert torch.equal(model.decoder[4].bias.detach(), x.mean(0))
    assert model.log_sigma.item() == pytest.approx(math.log(x.double().std().item()), abs=1e-6)
    assert torch.equal(tr.ema.state["decoder.4.bias"], x.mean(0))  # the EMA starts from the initialised weights


def test_fit_start_hook_leaves_data_order_and_noise_streams_alone():
    """A hook that draws random numbers but changes nothing: the same weights, bitwise, as without it."""
    def run(hook):
        data, model = _moons_vae()
        if hook:
            model.on_fit_start = lambda x, y: torch.randn(1000)
        genlab.train(model, data, steps=10, batch_size=64, progress=False, out=None, sample_every=100)
        return model.state_dict()

    a, b = run(False), run(True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fit_start_hook_is_not_called_on_resume(tmp_path):
    calls = []
    data, model = _moons_vae()
    model.on_fit_start = lambda x, y: calls.append("new")
    opts = dict(batch_size=64, progress=False, out=tmp_path / "r", checkpoint_every=5, sample_every=100)
    genlab.train(model, data, steps=10, **opts)
    assert calls == ["new"]
    _, again = _moons_vae()
    again.on_fit_start = lambda x, y: calls.append("resume")
    genlab.train(again, data, steps=20, resume=True, **opts)
    assert calls == ["new"]


def test_fit_start_under_ddp_takes_rank_zero_parameters(tmp_path):
    """Each of 2 processes sets a bias to its rank + 1 in the hook; after it every process holds rank 0's value."""
    script = tmp_path / "ddp_hook.py"
    script.write_text("""
import os, torch, genlab
from genlab.training.trainer import TrainConfig, Trainer

def main():
    data = genlab.load_dataset("moons")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, latent_dim=2)
    rank = int(os.environ["RANK"])
    model.on_fit_start = lambda x, y: model.decoder[4].bias.fill_(rank + 1.0)
    tr = Trainer(model, data, TrainConfig(steps=2, batch_size=64, ema_decay=0.5, progress=False), None, {}, False)
    assert torch.equal(model.decoder[4].bias.detach(), torch.ones(2)), model.decoder[4].bias
    assert torch.equal(tr.ema.state["decoder.4.bias"], torch.ones(2))
    tr.fit()
    torch.save(torch.cat([p.detach().flatten() for p in model.parameters()]), f"weights{rank}.pt")
    print(f"ok {rank}")

main()
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)],
                       env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ok 0" in r.stdout and "ok 1" in r.stdout
    w0, w1 = (torch.load(tmp_path / f"weights{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(w0, w1)  # and the processes stay equal through training


def test_model_reads_the_trainers_ema_during_training(tmp_path):
    """After each step (before that step's EMA update) the model sees the EMA of the weights so far; at the end
    it holds the Trainer's EMA (the saved ema.safetensors) and matches an independent float64 computation."""
    data, model = _moons_vae()
    start = {k: v.detach().double().clone() for k, v in model.state_dict().items()}
    weights, seen = [], []

    def record(phase):
        weights.append({k: v.detach().double().clone() for k, v in model.state_dict().items()})
        seen.append({k: v.double().clone() for k, v in model.ema_state.items()})

    model.after_step = record
    k, decay = 8, 0.9
    genlab.train(model, data, steps=k, batch_size=64, ema_decay=decay, progress=False, out=tmp_path / "r",
                 sample_every=100)
    assert len(weights) == k
    ema = start
    for t in range(k):
        assert all(torch.allclose(seen[t][n], ema[n], rtol=0, atol=1e-6) for n in ema), t
        d = min(decay, (1 + t) / (10 + t))
        ema = {n: d * ema[n] + (1 - d) * weights[t][n] for n in ema}
    assert model.ema_state.keys() == model.state_dict().keys()
    assert all(torch.allclose(model.ema_state[n].double(), ema[n], rtol=0, atol=1e-6) for n in ema)
    saved = load_file(str(tmp_path / "r" / "ema.safetensors"))
    assert saved.keys() == model.ema_state.keys() and all(torch.equal(saved[n], model.ema_state[n]) for n in saved)
    # a plain attribute: in no state_dict, buffer list or optimizer; the saved weights are the model's own
    assert not any("ema" in n for n in model.state_dict()) and not any("ema" in n for n, _ in model.named_buffers())
    assert sorted(os.listdir(tmp_path / "r")) == [".lock", "checkpoint", "checkpoint.old", "config.json",
                                                  "ema.safetensors", "metrics.jsonl", "model.safetensors", "samples"]
    _, off = _moons_vae()
    genlab.train(off, data, steps=2, batch_size=64, progress=False, out=None)
    assert off.ema_state is None


def test_weight_decay_spares_norms_biases_and_embeddings():
    """wd > 0: decoupled decay (Loshchilov & Hutter 2019) only on matrices, as nanoGPT's configure_optimizers; with
    zero gradients Adam's update is 0, so a step leaves the spared tensors exactly as they were and multiplies a
    Linear weight by exactly 1 - lr * wd."""
    from genlab.training.trainer import make_optimizer

    torch.manual_seed(0)
    net = torch.nn.ModuleDict({"emb": torch.nn.Embedding(5, 4), "lin": torch.nn.Linear(4, 4),
                               "norm": torch.nn.LayerNorm(4)})
    params = list(net.parameters())
    cfg = TrainConfig(steps=1, lr=0.01, weight_decay=0.1, progress=False)
    opt = make_optimizer(net, params, cfg)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["params"] == [net["lin"].weight]
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(net.named_parameters())
    for n in ("emb.weight", "lin.bias", "norm.weight", "norm.bias"):
        assert torch.equal(after[n], before[n]), n
    assert torch.equal(after["lin.weight"], before["lin.weight"] * (1 - 0.01 * 0.1))
    assert not torch.equal(after["lin.weight"], before["lin.weight"])
    # weight_decay 0: one group, the structure genlab always had (old checkpoints resume)
    plain = make_optimizer(net, params, TrainConfig(steps=1, progress=False))
    assert len(plain.param_groups) == 1 and plain.param_groups[0]["params"] == params


def test_trainer_splits_weight_decay_in_every_family_optimizer():
    data = genlab.load_dataset("digits")
    model = genlab.create("ddpm", data.spec, channels=8, mults=(1, 2), timesteps=50, conditional=True)
    tr = Trainer(model, data, TrainConfig(steps=1, weight_decay=0.1, progress=False), None, {}, resume=False)
    (decay, keep), = [opt.param_groups for opt in tr.optimizers.values()]
    emb = model.net.cond.label.weight
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(p) for p in model.parameters() if p.dim() >= 2} - {id(emb)}
    assert any(p is emb for p in keep["params"]) and len(decay["params"]) + len(keep["params"]) == len(
        list(model.parameters()))
    gan = genlab.create("gan", genlab.load_dataset("gaussians8").spec, latent_dim=2, hidden=(8,))
    tr = Trainer(gan, genlab.load_dataset("gaussians8"), TrainConfig(steps=1, weight_decay=0.1, progress=False), None,
                 {}, resume=False)
    for name, opt in tr.optimizers.items():
        assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0], name
        assert all(p.dim() >= 2 for p in opt.param_groups[0]["params"])
        assert all(p.dim() < 2 for p in opt.param_groups[1]["params"])


def test_one_group_checkpoint_of_a_decayed_run_resumes_into_the_split():
    """A checkpoint from before the split (one AdamW group decaying every tensor) loads into the two groups with
    each tensor's Adam moments kept."""
    from genlab.training.trainer import _regroup, make_optimizer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    params = list(net.parameters())
    old = torch.optim.AdamW(params, lr=0.01, weight_decay=0.1)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn_like(p)
        old.step()
    new = make_optimizer(net, params, TrainConfig(steps=1, lr=0.01, weight_decay=0.1, progress=False))
    with pytest.warns(UserWarning, match="no weight decay"):
        new.load_state_dict(_regroup(old.state_dict(), new, params))
    assert [g["weight_decay"] for g in new.param_groups] == [0.1, 0.0]
    for p in params:
        assert torch.equal(new.state[p]["exp_avg"], old.state[p]["exp_avg"])
        assert torch.equal(new.state[p]["exp_avg_sq"], old.state[p]["exp_avg_sq"])


def test_training_in_memory_writes_nothing_and_equals_a_run_on_disk(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    opts = dict(ema_decay=0.9, log_every=10, sample_every=30)  # the disk run also samples (from the EMA) twice
    mem = _small_run(tmp_path, "unused", out=None, **opts)
    assert os.listdir(cwd) == [] and not (tmp_path / "unused").exists()
    assert mem.path is None and mem.step == 60
    h = mem.history
    assert [r["step"] for r in h] == [10, 20, 30, 40, 50, 60]
    assert h[-1]["nelbo"] < 0.8 * h[0]["nelbo"], (h[0]["nelbo"], h[-1]["nelbo"])
    disk = _small_run(tmp_path, "disk", **opts)
    w = load_file(str(tmp_path / "disk" / "model.safetensors"))
    got = mem.model.state_dict()
    assert w.keys() == got.keys() and all(torch.equal(w[k], got[k]) for k in w)
    ema = load_file(str(tmp_path / "disk" / "ema.safetensors"))
    assert all(torch.equal(ema[k], mem.model.ema_state[k]) for k in ema)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("time", "images_per_s")} for r in rows]
    assert strip(h) == strip(disk.history)
    assert os.listdir(cwd) == []


def test_training_in_memory_refuses_what_needs_a_directory(tmp_path):
    with pytest.raises(GenlabError, match="resume needs out=RUN_DIR"):
        _small_run(tmp_path, "x", out=None, resume=True)
    with pytest.raises(GenlabError, match="tensorboard=true writes into the run directory"):
        _small_run(tmp_path, "x", out=None, tensorboard=True)


def test_cli_without_out_still_names_a_run_directory(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("train", "ae", "--data", "digits", "--steps", "2", "--batch-size", "32", "--set", "arch=mlp",
                         "--set", "hidden=[16]", "--no-progress")
    assert code == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("ae-digits-") and (run / "model.safetensors").is_file()
    assert f"run directory: {Path('runs') / run.name}" in out
