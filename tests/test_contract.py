"""The contract every registered kind keeps, run through the same cycle: create -> train a few steps -> save ->
load -> seeded samples -> sampling options listed and validated -> evaluate with the metrics that apply ->
capability errors for what it lacks. A new kind is covered by registering it (and, if it cannot be built on
`digits` or `moons` with its defaults, by a line in NEEDS, or in _needs for one built on another run)."""

from __future__ import annotations

import dataclasses
import functools
import math
import tempfile
from pathlib import Path

import pytest
import torch

import genlab
from genlab.data import availability
from genlab.errors import CapabilityError, GenlabError
from genlab.models import CAPABILITIES, REGISTRY, available
from genlab.models.base import CONDITIONING, TASKS
from genlab.runs import RunDir

NEEDS = {"cyclegan": {"target": "digits", "channels": 8, "d_channels": 8, "res_blocks": 1}}  # kinds with a must-set


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path_factory.getbasetemp() / "contract-cache"))


@functools.lru_cache(maxsize=1)
def _vqvae_run() -> Path:
    """A small VQ-VAE run on digits, for the kinds built on one (vq-ar)."""
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("vqvae", data.spec, channels=(16,), codebook_size=16, code_dim=4)
    out = Path(tempfile.mkdtemp(prefix="genlab-contract-")) / "vqvae"
    genlab.train(model, data, steps=5, batch_size=32, out=out, progress=False)
    return out


@functools.lru_cache(maxsize=1)
def _ddpm_run() -> Path:
    """A small ddpm run on digits, the teacher of the distilled kinds (progressive)."""
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("ddpm", data.spec, **{"net.channels": 8, "net.mults": (1, 2), "timesteps": 100})
    out = Path(tempfile.mkdtemp(prefix="genlab-contract-")) / "ddpm"
    genlab.train(model, data, steps=5, batch_size=32, out=out, progress=False)
    return out


@functools.lru_cache(maxsize=1)
def _vae_run() -> Path:
    """A small VAE run on digits with a 2 x 4 x 4 code map, for latent diffusion (ldm)."""
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, channels=(16,), latent_channels=2)
    out = Path(tempfile.mkdtemp(prefix="genlab-contract-")) / "vae"
    genlab.train(model, data, steps=5, batch_size=32, out=out, progress=False)
    return out


def _needs(kind: str) -> dict:
    if kind == "vq-ar":
        return {"vqvae": str(_vqvae_run()), "dim": 16, "layers": 1}
    if kind == "ldm":
        return {"first_stage": str(_vae_run()), "net.dim": 32, "net.depth": 1}
    if kind == "progressive":
        return {"teacher": str(_ddpm_run()), "start_steps": 4}
    if kind == "gpt":
        return {"dim": 16, "layers": 1, "heads": 2}
    return NEEDS.get(kind, {})


def _built(kind: str):
    """(data name, model) for the first of digits (images), moons (vectors) and python-docs (text, 16-character
    windows) the kind accepts."""
    errors = []
    for name in ("digits", "moons", "python-docs"):
        data = genlab.load_dataset(name, **({"block": 16} if name == "python-docs" else {}))
        try:
            torch.manual_seed(0)
            return name, data, genlab.create(kind, data.spec, **_needs(kind))
        except GenlabError as e:
            errors.append(str(e))
    pytest.fail(f"{kind} builds on none of digits, moons and python-docs: {errors}")


@pytest.mark.parametrize("kind", list(REGISTRY))
def test_every_kind_keeps_the_contract(kind, tmp_path):
    name, data, model = _built(kind)
    cls = REGISTRY[kind]
    assert model.conditioning in CONDITIONING and cls.task in TASKS
    assert model.output_data({"name": name, "opts": {}})["name"]

    run = genlab.train(model, data, steps=2, batch_size=16, out=tmp_path / kind, progress=False)
    assert run.step == 2 and RunDir(run.path).is_run

    loaded = genlab.load(run.path)
    assert type(loaded) is cls and dataclasses.asdict(loaded.config) == dataclasses.asdict(model.config)

    # seeded samples: same seed, same samples; shape and finiteness; cost reported
    a, b = loaded.generate(4, seed=1), loaded.generate(4, seed=1)
    assert a.x.shape == (4, *data.spec.shape) and torch.isfinite(a.x).all()
    lo, hi = data.spec.value_range
    assert lo <= float(a.x.min()) and float(a.x.max()) <= hi  # the range the data promises
    assert torch.equal(a.x, b.x)
    assert a.cost.nfe >= 1 and a.cost.candidates >= 1 and a.cost.seconds >= 0
    assert torch.equal(loaded.sample(4, seed=1), a.x)

    # sampling options: listed with their defaults, the defaults accepted, an unknown one refused in one line
    listed = next(m for m in available() if m["kind"] == kind)["sample_options"]
    assert listed == {f.name: f.default for f in dataclasses.fields(cls.SampleOptions)}
    assert loaded.sample_options(**listed) == loaded.sample_options()
    with pytest.raises(GenlabError, match=f"unknown {kind} sampling option 'no_such_option'"):
        loaded.sample(2, seed=0, no_such_option=1)

    # evaluation: every metric that applies, finite, kept under evals/ and as eval.json
    result = genlab.evaluate(run.path, n=20, k=2, device="cpu")
    assert result["metrics"] and result["task"] == cls.task
    for metric, value in result["metrics"].items():
        values = value.values() if isinstance(value, dict) else [value]
        assert all(math.isfinite(v) for v in values if isinstance(v, float)), (metric, value)
    assert RunDir(run.path).evals() == [result] and RunDir(run.path).latest_eval() == result

    # capability errors name the kinds that have the capability
    for cap in CAPABILITIES:
        if cap in loaded.capabilities:
            continue
        with pytest.raises(CapabilityError, match=f"{kind} has no {cap}; models with it: "):
            getattr(loaded, cap)(*((a.x, a.x) if cap in ("interpolate", "inpaint") else (a.x,)))


def test_evaluations_with_other_options_live_side_by_side(tmp_path):
    data = genlab.load_dataset("moons")
    torch.manual_seed(0)
    model = genlab.create("ddpm", data.spec, hidden=(16, 16), timesteps=50)
    genlab.train(model, data, steps=2, batch_size=16, out=tmp_path / "r", progress=False)
    ev = lambda n, sampler: genlab.evaluate(tmp_path / "r", n=n, sample_opts={"sampler": sampler, "steps": 5},
                                            precision="fp32")
    a, b, c = ev(30, "ddim"), ev(30, "dpm++"), ev(40, "ddim")
    kept = RunDir(tmp_path / "r").evals()
    assert len(kept) == 3 and all(r in kept for r in (a, b, c))
    assert a["sampling"]["nfe_per_sample"] == 5 and a["metrics"] != b["metrics"]
    assert sorted(p.name for p in (tmp_path / "r" / "evals").iterdir()) == [
        "v1-n=30-seed=0-sampler=ddim-steps=5.json", "v1-n=30-seed=0-sampler=dpm++-steps=5.json",
        "v1-n=40-seed=0-sampler=ddim-steps=5.json"]
    again = ev(30, "ddim")  # same key: replaced
    assert len(RunDir(tmp_path / "r").evals()) == 3 and again["metrics"] == a["metrics"]


def test_sampling_cost_counts_network_evaluations(tmp_path):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("ddpm", data.spec, channels=8, mults=(1, 2), timesteps=50, conditional=True)
    calls = []
    model.net.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    s = model.generate(6, seed=0, sampler="ddim", steps=7, guidance=2.0)
    assert s.cost.nfe == 14 and sum(calls) == 6 * 14  # guided: both predictions at each of 7 steps
    calls.clear()
    s = model.generate(6, seed=0, sampler="ddim", steps=7, guidance=1.0)
    assert s.cost.nfe == 7 and sum(calls) == 6 * 7
    assert s.labels.tolist() == [0, 1, 2, 3, 4, 5] and s.options.steps == 7


@pytest.mark.skipif(availability("fashion-mnist") is not None, reason="needs Debian's dataset-fashion-mnist")
def test_cyclegan_eval_scores_translations_against_the_target_domain(tmp_path, cli):
    from genlab.metrics.protocol import draw_samples, evaluate_samples

    data = genlab.load_dataset("mnist5k")
    torch.manual_seed(0)
    model = genlab.create("cyclegan", data.spec, target="fashion-mnist", channels=8, d_channels=8, res_blocks=1)
    genlab.train(model, data, steps=2, batch_size=4, out=tmp_path / "c", progress=False)
    code, out, err = cli("eval", tmp_path / "c", "--n", "50", "--metrics", "fid,kid", "--device", "cpu",
                         "--precision", "fp32")  # the same numbers as below (bf16's depend on the memory layout)
    assert code == 0, err
    assert "reference: fashion-mnist test split (the translate target; trained on mnist5k)" in out
    result = RunDir(tmp_path / "c").latest_eval()
    assert result["dataset"] == "fashion-mnist" and result["trained_on"] == "mnist5k"
    x = draw_samples(genlab.load(tmp_path / "c"), 50, seed=0, precision="fp32").x
    target = evaluate_samples(x, "fashion-mnist", ["fid"])["metrics"]["fid"]
    source = evaluate_samples(x, "mnist5k", ["fid"])["metrics"]["fid"]
    assert result["metrics"]["fid"] == pytest.approx(target, rel=1e-6) and abs(target - source) > 1


def test_every_option_says_what_it_does():
    from genlab.config import field_help
    from genlab.training.trainer import TrainConfig

    for kind, cls in REGISTRY.items():
        helps = cls.option_help()
        assert not [k for k in cls.option_defaults() if not helps.get(k)], kind
        sample_help = field_help(cls.SampleOptions)
        assert not [k for k in cls.sample_option_defaults() if not sample_help.get(k)], kind
    train_help = field_help(TrainConfig)
    assert not [f for f in TrainConfig.__dataclass_fields__ if not train_help.get(f)]
