"""The autoencoder family's capabilities, persistence and behaviour, each checked on numbers."""

import math
import os

import numpy as np
import pytest
import torch

import genlab
from genlab.errors import CapabilityError, GenlabError
from genlab.models.latent import slerp


@pytest.fixture(scope="module")
def digits():
    return genlab.load_dataset("digits"), genlab.load_dataset("digits", "test")


def _train(kind, data, tmp_path, steps=300, **cfg):
    torch.manual_seed(0)
    model = genlab.create(kind, data.spec, **cfg)
    genlab.train(model, data, steps=steps, batch_size=64, lr=3e-3, warmup_steps=20, progress=False,
                 out=tmp_path / f"{kind}-{len(os.listdir(tmp_path))}")
    return model.eval()


def test_save_load_roundtrip_gives_identical_samples(digits, tmp_path):
    train, _ = digits
    model = _train("vae", train, tmp_path, steps=20, channels=(8, 16))
    model.save(tmp_path / "saved")
    assert sorted(os.listdir(tmp_path / "saved")) == ["config.json", "model.safetensors"]
    again = genlab.load(tmp_path / "saved")
    assert torch.equal(model.sample(8, seed=3), again.sample(8, seed=3))
    assert not torch.equal(model.sample(8, seed=3), model.sample(8, seed=4))


def test_capabilities_and_missing_capability_error(digits):
    model = genlab.create("ae", digits[0].spec)
    assert "log_prob" not in model.capabilities and "encode" in model.capabilities
    with pytest.raises(CapabilityError, match="ae has no log_prob; models with it: vae"):
        model.log_prob(digits[0].x[:2])
    with pytest.raises(CapabilityError, match="vae has no inpaint"):
        genlab.create("vae", digits[0].spec).inpaint(digits[0].x[:2], None)


def test_denoising_autoencoder_denoises_better_than_plain_autoencoder(digits, tmp_path):
    train, test = digits
    cfg = dict(arch="mlp", hidden=(128,), latent_dim=16)
    ae = _train("ae", train, tmp_path, steps=600, **cfg)
    dae = _train("dae", train, tmp_path, steps=600, noise="gaussian", noise_std=0.5, **cfg)
    torch.manual_seed(1)
    noisy = test.x + 0.5 * torch.randn_like(test.x)
    with torch.no_grad():
        err_ae = (ae.reconstruct(noisy) - test.x).pow(2).mean().item()
        err_dae = (dae.reconstruct(noisy) - test.x).pow(2).mean().item()
    assert err_dae < 0.8 * err_ae, (err_dae, err_ae)


def test_masking_noise_blanks_the_expected_fraction(digits):
    model = genlab.create("dae", digits[0].spec, noise="mask", mask_prob=0.3)
    torch.manual_seed(0)
    x = torch.ones(2000, 1, 8, 8)
    frac = (model.corrupt(x) == -1).float().mean().item()
    assert abs(frac - 0.3) < 0.01


def test_conditional_vae_samples_are_recognised_as_their_label(digits, tmp_path):
    from sklearn.linear_model import LogisticRegression

    train, test = digits
    clf = LogisticRegression(max_iter=2000).fit(train.x.flatten(1).numpy(), train.y.numpy())
    assert clf.score(test.x.flatten(1).numpy(), test.y.numpy()) > 0.9  # an independent judge of the classes
    model = _train("vae", train, tmp_path, steps=800, conditional=True, channels=(16, 32), latent_dim=8)
    labels = torch.arange(200) % 10
    x = model.sample(200, seed=0, labels=labels)
    acc = (clf.predict(x.flatten(1).numpy()) == labels.numpy()).mean()
    assert acc > 0.7, acc
    with pytest.raises(GenlabError, match="label 10 is out of range"):
        model.sample(4, labels=10)


def test_slerp_closed_form_and_interpolation_endpoints(digits):
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    mid = slerp(a, b, torch.tensor([0.5]))[0, 0]
    # angle 90°: weights sin(45°)/sin(90°) on each end
    assert torch.allclose(mid, torch.tensor([math.sqrt(0.5), 2 * math.sqrt(0.5)]), atol=1e-6)
    model = genlab.create("vae", digits[0].spec).eval()
    x = digits[1].x[:3]
    for method in ("lerp", "slerp"):
        path = model.interpolate(x[:2], x[1:3], steps=5, method=method)
        with torch.no_grad():
            assert torch.allclose(path[:, 0], model.reconstruct(x[:2]), atol=1e-5)
            assert torch.allclose(path[:, -1], model.reconstruct(x[1:3]), atol=1e-5)


def test_traversal_moves_one_dimension_and_centre_is_the_prior_mean(digits):
    model = genlab.create("vae", digits[0].spec, latent_dim=4).eval()
    grid = model.traverse(dims=[0, 2], steps=5, span=2.0)
    assert grid.shape == (2, 5, 1, 8, 8)
    with torch.no_grad():
        centre = model.decode(torch.zeros(1, 4))
    assert torch.allclose(grid[:, 2], centre.expand(2, -1, -1, -1), atol=1e-6)
    assert not torch.allclose(grid[0, 0], grid[0, -1])
    with pytest.raises(GenlabError, match="out of range"):
        model.traverse(dims=[7])


def test_autoencoder_prior_fit_matches_empirical_codes(digits, tmp_path):
    train, _ = digits
    model = _train("ae", train, tmp_path, steps=400, arch="mlp", hidden=(64,), latent_dim=3, code_momentum=0.05)
    with torch.no_grad():
        z = model.encode(train.x)
    emp_mean, emp_cov = z.mean(0), torch.cov(z.T)
    scale = emp_cov.diagonal().sqrt()
    assert torch.all((model.code_mean - emp_mean).abs() < 0.25 * scale)
    assert torch.allclose(model.code_cov.diagonal(), emp_cov.diagonal(), rtol=0.3)


def test_kl_annealing_schedule(digits):
    model = genlab.create("vae", digits[0].spec, beta=2.0, kl_warmup_steps=100)
    assert model.kl_weight(0) == pytest.approx(0.02) and model.kl_weight(49) == pytest.approx(1.0)
    assert model.kl_weight(99) == 2.0 and model.kl_weight(500) == 2.0
    assert genlab.create("vae", digits[0].spec, beta=3.0).kl_weight(0) == 3.0


def test_bernoulli_without_binarisation_refuses_likelihood(digits):
    model = genlab.create("vae", digits[0].spec, likelihood="bernoulli", binarize=False)
    with pytest.raises(GenlabError, match="defines no likelihood"):
        model.log_prob(digits[0].x[:2])


def test_vector_vae_trains_on_a_2d_set_and_samples_in_original_units(tmp_path):
    data = genlab.load_dataset("moons")
    model = _train("vae", data, tmp_path, steps=300, latent_dim=2, hidden=(64, 64))
    x = data.spec.to_original(model.sample(2000, seed=0))
    ref = data.spec.to_original(data.x)
    assert np.allclose(x.mean(0), ref.mean(0), atol=0.25) and np.allclose(x.std(0), ref.std(0), rtol=0.3)


def test_tensorboard_logging(digits, tmp_path):
    pytest.importorskip("tensorboard")
    torch.manual_seed(0)
    model = genlab.create("ae", digits[0].spec, arch="mlp", hidden=(16,))
    genlab.train(model, digits[0], steps=10, batch_size=64, progress=False, out=tmp_path / "tb", tensorboard=True,
                 log_every=5)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tb" / "tb"))
    for f in ("config.json", "model.safetensors", "checkpoint/model.safetensors"):  # readable like any file
        assert os.stat(tmp_path / "tb" / f).st_mode & 0o044 == 0o044, f


def test_public_api_names_stay_callable_after_submodule_imports():
    import importlib

    import genlab.cli  # noqa: F401 (imports genlab.training and genlab.metrics.protocol)

    importlib.import_module("genlab.training.trainer")
    for name in ("load_dataset", "create", "train", "load", "evaluate"):
        assert callable(getattr(genlab, name)), name
    assert callable(genlab.evaluate) and callable(genlab.train)  # twice: __getattr__ results must not be shadowed
