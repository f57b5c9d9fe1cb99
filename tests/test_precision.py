"""Numeric precision: what `auto` resolves to (on faked hardware), every family in bf16, exact resume of a bf16
run, fp16's gradient scaler through a checkpoint, and likelihoods that stay exact under autocast."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from helpers import one_line_error
from safetensors.torch import load_file

import genlab
from genlab import precision
from genlab.errors import GenlabError
from genlab.models import REGISTRY
from genlab.precision import resolve


@pytest.fixture
def fake_cpu(monkeypatch):
    """Set the CPU flags (and machine) that precision.py sees."""

    def fake(flags: set[str], machine: str = "x86_64"):
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
        monkeypatch.setattr(precision.platform, "machine", lambda: machine)

    return fake


def test_auto_is_bf16_only_where_the_cpu_has_it(fake_cpu):
    for flags, machine, want in (({"avx2", "avx512f", "avx512_bf16"}, "x86_64", "bf16"),
                                 ({"avx2", "amx_bf16", "amx_tile"}, "x86_64", "bf16"),
                                 ({"avx2", "avx512f", "avx512_vnni"}, "x86_64", "fp32"),  # AVX-512 without BF16
                                 (set(), "x86_64", "fp32"),  # no /proc/cpuinfo: never assumed
                                 ({"asimd", "bf16", "i8mm"}, "aarch64", "bf16"),
                                 ({"asimd", "fphp"}, "aarch64", "fp32"),
                                 ({"bf16"}, "x86_64", "fp32")):  # an ARM flag name on x86 says nothing
        fake_cpu(flags, machine)
        assert resolve("auto", "cpu")[0] == want, (flags, machine)
    fake_cpu({"avx512_bf16"})
    assert resolve("auto", "cpu") == ("bf16", "auto: this CPU has native bfloat16 (avx512_bf16)")
    assert resolve("fp32", "cpu")[0] == "fp32"
    fake_cpu(set())
    assert resolve("bf16", "cpu") == ("bf16", "asked for; this CPU has no native bfloat16, so it is emulated and "
                                              "likely slower")


def test_auto_on_cuda_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for supported, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, s=supported, **k: s)
        assert resolve("auto", "cuda")[0] == want
    assert resolve("fp16", "cuda")[0] == "fp16"
    assert resolve("auto", "mps")[0] == "fp32"


def test_impossible_precisions_are_one_line_errors(cli, tmp_path):
    with pytest.raises(GenlabError, match="precision fp16 needs a CUDA GPU"):
        resolve("fp16", "cpu")
    with pytest.raises(GenlabError, match="precision must be one of auto, fp32, bf16, fp16, got 'half'"):
        resolve("half", "cpu")
    out = tmp_path / "run"
    for value, pattern in (("fp16", "precision fp16 needs a CUDA GPU (it trains with a gradient scaler); on cpu use "
                                    "bf16 or fp32"),
                           ("half", "precision must be one of auto, fp32, bf16, fp16, got 'half'")):
        one_line_error(*cli("train", "vae", "--data", "digits", "--steps", "2", "--device", "cpu", "--precision",
                            value, "--out", out, "--no-progress")[::2], pattern)
        assert not out.exists()  # a run refused before its first step leaves nothing
    data = genlab.load_dataset("digits")
    genlab.train(genlab.create("vae", data.spec, channels=(8, 16)), data, steps=1, out=out, progress=False)
    one_line_error(*cli("sample", out, "--n", "2", "--precision", "fp16", "--out", tmp_path / "s.png")[::2],
                   "precision fp16 needs a CUDA GPU")
    one_line_error(*cli("eval", out, "--n", "20", "--precision", "bf17")[::2], "precision must be one of")


def test_train_says_which_precision_it_chose_and_records_it(cli, tmp_path):
    code, out, err = cli("train", "vae", "--data", "digits", "--steps", "2", "--set", "channels=[8,16]",
                         "--precision", "fp32", "--out", tmp_path / "a")
    assert code == 0, err
    assert "genlab: training in fp32 (asked for)" in err and "trained vae for 2 steps in fp32" in out
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    assert meta["train"]["precision"] == "fp32" and meta["precision"] == "fp32"
    code, out, err = cli("train", "vae", "--data", "digits", "--steps", "2", "--set", "channels=[8,16]",
                         "--out", tmp_path / "b")
    assert code == 0, err
    chosen, why = resolve("auto", "cpu")
    assert f"genlab: training in {chosen} ({why})" in err
    assert json.loads((tmp_path / "b" / "config.json").read_text())["precision"] == chosen


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("device,precision", [("cpu", "bf16"), pytest.param("cuda", "bf16", marks=cuda),
                                              pytest.param("cuda", "fp16", marks=cuda)])
@pytest.mark.parametrize("kind", list(REGISTRY))
def test_every_kind_trains_and_samples_in_low_precision(kind, device, precision, tmp_path):
    """Autocast (on a GPU with fp16's gradient scaler too), float32 master weights, float32 samples."""
    from test_contract import _built

    _, data, model = _built(kind)
    if model.family == "diffusion":  # 5 sampling steps: bf16 is emulated, and slow, on CPUs without it
        model.config = dataclasses.replace(model.config, sampler=dataclasses.replace(model.config.sampler, steps=5))
    run = genlab.train(model, data, steps=3, batch_size=16, out=tmp_path / kind, progress=False, device=device,
                       precision=precision, sample_every=10)  # one sample grid, at the end: bf16 may be emulated
    assert run.precision == precision
    losses = [v for r in run.history for k, v in r.items() if k == "loss" or k.endswith("/loss")]
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses)
    weights = load_file(str(tmp_path / kind / "model.safetensors"))  # float32 master weights
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}
    s = genlab.load(tmp_path / kind, device=device).generate(4, seed=1, precision=precision)
    want = torch.int64 if data.spec.kind == "text" else torch.float32  # text samples are token ids
    assert s.x.dtype == want and torch.isfinite(s.x).all() and s.precision == precision
    if device != "cpu":
        return
    # bf16 and fp32 samples are close but not the same numbers: the networks did run in bf16; flows invert in
    # float32 in every precision (their docstrings say so), so theirs are the same numbers; autoregressive pixels
    # are levels drawn by inverse CDF from the same uniforms, so bf16's slightly different probabilities rarely
    # change one
    f = genlab.load(tmp_path / kind).generate(4, seed=1, precision="fp32")
    if model.family != "autoregressive":
        assert torch.equal(s.x, f.x) == (model.family == "flow")


def _run(tmp_path, name, steps, resume=False, **kw):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, channels=(8, 16), latent_dim=4)
    return genlab.train(model, data, steps=steps, batch_size=32, lr=3e-3, warmup_steps=0, schedule="constant",
                        ema_decay=0.9, out=tmp_path / name, resume=resume, progress=False, **kw)


def _same(a, b, file):
    wa, wb = load_file(str(a / file)), load_file(str(b / file))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_bf16_run_resumes_exactly(tmp_path):
    one = _run(tmp_path, "one", 30, precision="bf16")
    _run(tmp_path, "two", 15, precision="bf16")
    two = _run(tmp_path, "two", 30, resume=True, precision="bf16")
    assert two.step == 30 and two.precision == "bf16"
    assert _same(one.path, two.path, "model.safetensors") and _same(one.path, two.path, "ema.safetensors")
    fp32 = _run(tmp_path, "fp32", 30, precision="fp32")
    assert not _same(one.path, fp32.path, "model.safetensors")  # bf16 did change the arithmetic


def test_fp16_keeps_its_gradient_scaler_through_a_checkpoint(tmp_path, monkeypatch):
    """CUDA's fp16 path, exercised on the CPU (whose autocast and GradScaler also take float16)."""
    from genlab.models import base
    from genlab.training import trainer

    for module in (trainer, base):  # the trainer's steps and its sample grids
        monkeypatch.setattr(module, "resolve", lambda p, d: ("fp16", "test"))
    one = _run(tmp_path, "one", 30)
    _run(tmp_path, "two", 15)
    state = torch.load(tmp_path / "two" / "checkpoint" / "optim.pt", weights_only=True)
    assert state["grad_scaler"]["scale"] > 0 and "model" in state
    two = _run(tmp_path, "two", 30, resume=True)
    assert two.precision == "fp16" and _same(one.path, two.path, "model.safetensors")


def test_likelihoods_are_exact_under_autocast():
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, channels=(8, 16), latent_dim=4).eval()
    genlab.train(model, data, steps=20, batch_size=64, progress=False, precision="fp32")
    x = data.x[:64]
    exact = {}
    for k in (1, 8):
        torch.manual_seed(1)
        exact[k] = model.log_prob(x, k=k)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(model.log_prob(x, k=k), exact[k])  # bitwise: autocast is off inside
    z = model.encode(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # while the decoder alone does change under autocast
        low = model._decode_raw(z, None)
    high = model._decode_raw(z, None)
    assert low.dtype == torch.float32 and not torch.equal(low, high)
    assert (low - high).abs().max() < 0.1  # bf16 keeps about 3 significant digits


def test_a_resume_in_python_keeps_the_runs_own_options(tmp_path):
    """resume=True without the options: the run's seed, precision, batch size, lr and schedule stand (as in the
    CLI), so the weights are bitwise those of an uninterrupted run and only the budget is recorded as changed."""
    one = _run(tmp_path, "one", 30, precision="bf16", seed=3)
    _run(tmp_path, "two", 15, precision="bf16", seed=3)
    data = genlab.load_dataset("digits")
    two = genlab.train(genlab.load(tmp_path / "two"), data, steps=30, out=tmp_path / "two", resume=True,
                       progress=False)
    assert two.step == 30 and two.precision == "bf16"
    assert _same(one.path, two.path, "model.safetensors")
    meta = json.loads((tmp_path / "two" / "config.json").read_text())
    assert [h["changed"] for h in meta["history"]] == [{"steps": [15, 30]}]
    assert meta["train"]["seed"] == 3 and meta["train"]["lr"] == 3e-3


# ---------------------------------------------------------------- on a real CUDA GPU (skipped without one)

@cuda
def test_auto_on_this_gpu():
    assert resolve("auto", "cuda")[0] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")


@cuda
def test_likelihoods_are_exact_under_cuda_autocast():
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, channels=(8, 16), latent_dim=4)
    genlab.train(model, data, steps=20, batch_size=64, progress=False, precision="fp32", device="cuda")
    model.eval()
    x = data.x[:64].cuda()
    for dtype in (torch.bfloat16, torch.float16):
        torch.manual_seed(1)
        want = model.log_prob(x, k=8)
        torch.manual_seed(1)
        with torch.autocast("cuda", dtype=dtype):
            got = model.log_prob(x, k=8)
        assert torch.equal(got, want), dtype


@cuda
def test_a_bf16_run_resumes_exactly_on_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    one = _run(tmp_path, "one", 30, precision="bf16", device="cuda")
    _run(tmp_path, "two", 15, precision="bf16", device="cuda")
    two = _run(tmp_path, "two", 30, resume=True, precision="bf16", device="cuda")
    assert two.step == 30 and two.precision == "bf16"
    assert _same(one.path, two.path, "model.safetensors") and _same(one.path, two.path, "ema.safetensors")


def test_auto_sampling_keeps_fp32_where_a_family_samples_no_faster_in_bf16(fake_cpu):
    """PixelCNN's per-pixel sampler measured 0.8-0.9x in bf16 (BENCHMARKS.md §18): `auto` samples it in float32,
    an explicit bf16 is still honoured, and other families follow the hardware."""
    from genlab.metrics.protocol import draw_samples

    fake_cpu({"avx512_bf16"})
    data = genlab.load_dataset("digits")
    pixel = genlab.create("pixelcnn", data.spec, hidden=8, blocks=1)
    vae = genlab.create("vae", data.spec, channels=(8, 16))
    assert pixel.generate(2, seed=0).precision == "fp32"
    assert draw_samples(pixel, 2, precision="auto").precision == "fp32"
    assert pixel.generate(2, seed=0, precision="bf16").precision == "bf16"
    assert vae.generate(2, seed=0).precision == "bf16"
    fake_cpu(set())
    assert vae.generate(2, seed=0).precision == "fp32"
