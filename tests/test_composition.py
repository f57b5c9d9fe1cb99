"""Composition: a model built on another run as a frozen component, recorded by path and sha256 and checked on
load. The kind here is test-only (a diagonal Gaussian over a frozen autoencoder's codes, decoded by it); latent
diffusion and priors on a VQ-VAE use the same mechanism."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from helpers import one_line_error
from torch import nn

import genlab
from genlab.errors import GenlabError
from genlab.io import file_sha256, load_tensors
from genlab.models import REGISTRY
from genlab.models.base import GenerativeModel, generator, randn
from genlab.runs import RunDir


@dataclass
class CodeGaussianConfig:
    autoencoder: str = ""  # run directory of a trained autoencoder


class CodeGaussian(GenerativeModel):
    kind = "code-gaussian"
    family = "test"
    Config = CodeGaussianConfig

    def __init__(self, spec, config):
        super().__init__(spec, config)
        latent = self.component("autoencoder").config.latent_dim
        self.mean = nn.Parameter(torch.zeros(latent))
        self.log_std = nn.Parameter(torch.zeros(latent))

    def forward(self, x, y, phase="model", step=0):
        z = self.frozen("autoencoder").encode(x)
        loss = (0.5 * ((z - self.mean) / self.log_std.exp()) ** 2 + self.log_std).mean()
        return loss, {"loss": loss}

    def _sample(self, n, *, seed, labels, options, progress):
        z = self.mean + self.log_std.exp() * randn((n, len(self.mean)), generator(seed), self.device)
        return self.frozen("autoencoder").decode(z), {}


@pytest.fixture
def ae_run(tmp_path, monkeypatch):
    monkeypatch.setitem(REGISTRY, CodeGaussian.kind, CodeGaussian)
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    ae = genlab.create("ae", data.spec, latent_dim=3, channels=(8, 16))
    genlab.train(ae, data, steps=20, batch_size=64, out=tmp_path / "ae", progress=False)
    return tmp_path / "ae"


def test_a_component_is_frozen_recorded_and_not_saved_with_the_model(ae_run, tmp_path):
    data = genlab.load_dataset("digits")
    before = load_tensors(ae_run / "model.safetensors")
    model = genlab.create("code-gaussian", data.spec, autoencoder=str(ae_run))
    run = genlab.train(model, data, steps=150, batch_size=128, lr=0.05, warmup_steps=0, out=tmp_path / "prior",
                       progress=False)
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    meta = RunDir(run.path).meta
    assert meta["components"] == {"autoencoder": {"path": str(ae_run.resolve()), "kind": "ae",
                                                  "sha256": file_sha256(ae_run / "model.safetensors")}}
    assert sorted(load_tensors(run.path / "model.safetensors")) == ["log_std", "mean"]
    after = model.frozen("autoencoder").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the component did not train
    codes = model.frozen("autoencoder").encode(data.x)
    assert torch.allclose(model.mean.detach(), codes.mean(0), atol=0.15 * float(codes.std(0).max()))
    loaded = genlab.load(run.path)
    assert torch.equal(loaded.sample(5, seed=2), model.eval().sample(5, seed=2))


def test_a_changed_or_missing_component_is_a_one_line_error(ae_run, tmp_path, cli):
    data = genlab.load_dataset("digits")
    model = genlab.create("code-gaussian", data.spec, autoencoder=str(ae_run))
    genlab.train(model, data, steps=2, batch_size=32, out=tmp_path / "prior", progress=False)
    ae = genlab.load(ae_run)
    with torch.no_grad():
        next(ae.parameters()).add_(1.0)
    ae.save(ae_run)  # the autoencoder run was retrained or edited since
    with pytest.raises(GenlabError, match="component autoencoder of .* has changed since this model was built"):
        genlab.load(tmp_path / "prior")
    one_line_error(*cli("sample", tmp_path / "prior", "--n", "2")[::2], "has changed since")
    ae_run.rename(tmp_path / "elsewhere")
    one_line_error(*cli("sample", tmp_path / "prior", "--n", "2")[::2], "component autoencoder=")
