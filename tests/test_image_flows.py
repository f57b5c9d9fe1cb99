"""Image flows (realnvp, glow) and their layers: log-determinants against autograd Jacobians, exact inverses,
ActNorm's data-dependent start, the dequantised likelihood's bookkeeping, training on real digits."""

from __future__ import annotations

import math

import pytest
import torch

import genlab
from genlab.errors import GenlabError
from genlab.nn.flows import ActNorm, AffineCoupling, InvConv1x1, VariationalDequantizer, squeeze, unsqueeze
from genlab.precision import autocast
from genlab.runs import RunDir

SMALL = {"realnvp": {"hidden": 8, "blocks": 1}, "glow": {"hidden": 8, "steps": 2}}


def _perturb(module, scale):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def _jacobian_logdet(fn, x):
    """log|det| of the Jacobian of fn at each example of x (B, C, H, W), by autograd: (B,)."""
    out = []
    for xi in x:
        J = torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], xi).reshape(xi.numel(), xi.numel())
        out.append(torch.linalg.slogdet(J).logabsdet)
    return torch.stack(out)


LAYERS = {
    "actnorm": lambda: ActNorm(4),
    "invconv": lambda: InvConv1x1(4),
    "coupling-channel-0": lambda: AffineCoupling(4, "channel", 0, 8, 1),
    "coupling-channel-1": lambda: AffineCoupling(4, "channel", 1, 8, 1),
    "coupling-checkerboard": lambda: AffineCoupling(4, "checkerboard", 1, 8, 1),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_each_layer_log_determinant_and_inverse(name):
    torch.manual_seed(0)
    layer = _perturb(LAYERS[name](), 0.3).double().eval()
    x = torch.randn(3, 4, 4, 4, dtype=torch.float64)
    y, ladj = layer(x)
    assert (y - x).abs().max() > 0.1  # a real map, not the identity it starts as
    assert torch.allclose(ladj, _jacobian_logdet(lambda v: layer(v)[0], x), atol=1e-8)
    assert (layer.inverse(y) - x).abs().max() < 1e-10


def test_squeeze_is_a_permutation_and_unsqueeze_its_inverse():
    x = torch.arange(2 * 3 * 4 * 6.0).view(2, 3, 4, 6)
    s = squeeze(x)
    assert s.shape == (2, 12, 2, 3) and torch.equal(s.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    assert torch.equal(unsqueeze(s), x)
    assert torch.equal(s[0, :4, 0, 0], torch.tensor([0.0, 1, 6, 7]))  # one 2x2 patch -> 4 channels


@pytest.mark.parametrize("kind", ["realnvp", "glow"])
def test_whole_flow_log_determinant_equals_the_autograd_jacobian(kind):
    torch.manual_seed(0)
    digits = genlab.load_dataset("digits")
    model = _perturb(genlab.create(kind, digits.spec, **SMALL[kind]), 0.02).double().eval()
    y = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    zs, ladj = model.flow_forward(y)
    assert sum(z[0].numel() for z in zs) == 64
    flat = lambda v: torch.cat([z.flatten(1) for z in model.flow_forward(v)[0]], 1)  # noqa: E731
    J = _jacobian_logdet(lambda v: flat(v).view(-1, 1, 8, 8), y)
    assert ladj.abs().max() > 0.1 and torch.allclose(ladj, J, atol=1e-7)
    assert (model.flow_inverse(zs) - y).abs().max() < 1e-10
    # and the logit step: its log|dy/du| against a finite difference
    u = torch.rand(1, 1, 8, 8, dtype=torch.float64) * 2 - 1
    _, ld = model._logit(u)
    eps = 1e-6
    fd = ((model._logit(u + eps)[0] - model._logit(u - eps)[0]) / (2 * eps)).log().sum()
    assert abs(float(ld[0]) - float(fd)) < 1e-5


@pytest.fixture(scope="module")
def digit_runs(tmp_path_factory):
    data = genlab.load_dataset("digits")
    out = {}
    for kind in ("realnvp", "glow"):
        torch.manual_seed(0)
        model = genlab.create(kind, data.spec, **SMALL[kind])
        path = tmp_path_factory.mktemp("imgflows") / kind
        genlab.train(model, data, steps=150, batch_size=64, warmup_steps=20, out=path, progress=False,
                     precision="fp32")
        out[kind] = path
    return out


@pytest.mark.parametrize("kind", ["realnvp", "glow"])
def test_trains_on_digits_and_inverts_its_codes(kind, digit_runs):
    hist = RunDir(digit_runs[kind]).history
    assert hist[-1]["nll_bpd"] < hist[0]["nll_bpd"] - 0.5, (hist[0]["nll_bpd"], hist[-1]["nll_bpd"])
    model = genlab.load(digit_runs[kind])
    x = RunDir.open(digit_runs[kind]).dataset("test").x[:64]
    centre = (torch.round((x + 1) / 2 * 16) + 0.5) / 17 * 2 - 1  # digits: 17 levels; encode takes bin centres
    assert (model.decode(model.encode(x)) - centre).abs().max() < 1e-4
    bpd = -model.log_prob(x).mean() / (64 * math.log(2))
    assert bpd < hist[0]["nll_bpd"] - 0.5  # the test likelihood improved as the training one did
    s = model.sample(16, seed=0, temperature=0.7)
    assert torch.isfinite(s).all() and torch.equal(s, model.sample(16, seed=0, temperature=0.7))


def test_actnorm_starts_from_the_first_batch():
    torch.manual_seed(0)
    layer = ActNorm(3)
    x = 5 + 3 * torch.randn(64, 3, 4, 4)
    layer.pending = True
    y, _ = layer(x)
    assert y.mean((0, 2, 3)).abs().max() < 1e-5 and (y.std((0, 2, 3)) - 1).abs().max() < 1e-4
    assert not layer.pending  # once


@pytest.mark.parametrize("kind", ["realnvp", "glow"])
def test_likelihood_is_float32_under_bf16_autocast(kind, digit_runs):
    model = genlab.load(digit_runs[kind])
    x = RunDir.open(digit_runs[kind]).dataset("test").x[:32]
    torch.manual_seed(5)
    ref = model.log_prob(x)
    torch.manual_seed(5)  # the same dequantisation noise
    with autocast("bf16", model.device):
        assert torch.equal(model.log_prob(x), ref)


@pytest.mark.parametrize("kind", ["realnvp", "glow"])
def test_channels_last_layout_gives_the_same_density_and_inverse(kind, digit_runs):
    model = genlab.load(digit_runs[kind])
    x = RunDir.open(digit_runs[kind]).dataset("test").x[:32]
    torch.manual_seed(5)
    ref, codes = model.log_prob(x), model.encode(x)
    model.to(memory_format=torch.channels_last)  # the layout the trainer and the protocol use for image flows
    torch.manual_seed(5)
    assert torch.allclose(model.log_prob(x.contiguous(memory_format=torch.channels_last)), ref, atol=1e-3)
    assert torch.allclose(model.encode(x.contiguous(memory_format=torch.channels_last)), codes, atol=1e-4)
    assert torch.allclose(model.decode(codes), model.to(memory_format=torch.contiguous_format).decode(codes),
                          atol=1e-5)


def test_bad_input_is_one_line():
    with pytest.raises(GenlabError, match="glow models images; moons is vector data"):
        genlab.create("glow", genlab.load_dataset("moons").spec)
    assert genlab.create("realnvp", genlab.load_dataset("moons").spec).spec.kind == "vector"  # its vector form
    with pytest.raises(GenlabError, match="dequantization must be uniform or variational"):
        genlab.create("glow", genlab.load_dataset("digits").spec, dequantization="learned")
    with pytest.raises(GenlabError, match="needs height and width divisible by 16"):
        genlab.create("glow", genlab.load_dataset("digits").spec, levels=4)


def test_capabilities_do_not_depend_on_the_batch_right_after_training(tmp_path):
    """A model straight from `train` is in training mode; its batch norms must not use batch statistics (nor
    update their running ones) when it is asked for codes, likelihoods or samples."""
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("realnvp", data.spec, **SMALL["realnvp"])
    genlab.train(model, data, steps=5, batch_size=32, out=None, progress=False, precision="fp32")
    assert model.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = data.x[:64]
    assert torch.equal(model.encode(x[:4]), model.encode(x)[:4])
    assert torch.equal(model.sample(4, seed=0), model.sample(4, seed=0))
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(GenlabError, match="alpha must be in"):
        genlab.create("realnvp", data.spec, alpha=0)


def test_variational_dequantizer_density_by_the_autograd_jacobian():
    """log q(v | x) = log N(eps) - log|det dv/deps|, with the determinant checked against autograd."""
    torch.manual_seed(0)
    deq = _perturb(VariationalDequantizer(1, 8, couplings=2), 0.3).double()
    x = torch.randint(0, 17, (3, 1, 4, 4)).double() / 16 * 2 - 1
    eps = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    v, ladj = deq.transform(eps, x)
    assert ((v > 0) & (v < 1)).all()
    for i in range(3):
        J = _jacobian_logdet(lambda e, xi=x[i:i + 1]: deq.transform(e, xi.expand(len(e), -1, -1, -1))[0],
                             eps[i:i + 1])
        assert torch.allclose(ladj[i:i + 1], J, atol=1e-8)
    assert (v - torch.sigmoid(eps)).abs().max() > 0.05  # not the plain sigmoid it would be untrained


def test_variational_dequantization_trains_and_keeps_the_noise_in_each_bin(tmp_path):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("glow", data.spec, **SMALL["glow"], dequantization="variational")
    run = genlab.train(model, data, steps=150, batch_size=64, warmup_steps=20, out=tmp_path / "v", progress=False,
                       precision="fp32")
    assert run.history[-1]["nll_bpd"] < run.history[0]["nll_bpd"] - 0.5
    x = data.x[:64]
    u, log_q = model._dequantised(x)
    assert torch.equal(torch.floor((u + 1) / 2 * 17).clamp(max=16), torch.round((x + 1) / 2 * 16))  # same bin
    assert torch.isfinite(log_q).all() and log_q.std() > 0
    loaded = genlab.load(tmp_path / "v")
    assert loaded.dequantizer is not None and torch.isfinite(loaded.log_prob(x)).all()
