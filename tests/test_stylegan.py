"""Style-based generator with progressive growing (kind `stylegan`): the modulated convolution against a per-sample
conv by brute force, the growing's continuity at the start of each fade-in, truncation, style mixing, and a short
run on real data whose FID falls."""

import math

import pytest
import torch
import torch.nn.functional as F

import genlab
from genlab.errors import GenlabError
from genlab.metrics.protocol import evaluate_samples
from genlab.models.stylegan import ModulatedConv2d


@pytest.fixture(scope="module")
def digits():
    return genlab.load_dataset("digits")


def _model(digits, **kw):
    torch.manual_seed(0)
    return genlab.create("stylegan", digits, **{"latent_dim": 16, "mapping": 2, "channels": (16, 8), **kw})


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_is_a_conv_per_sample_with_its_own_scaled_weights(demodulate):
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 4, 3, w_dim=6, demodulate=demodulate).double()
    with torch.no_grad():
        conv.bias.normal_()
    x, w = torch.randn(3, 5, 7, 7, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    out = conv(x, w)
    for b in range(3):  # StyleGAN2 eq. 1 and 3, one sample at a time
        s = conv.affine(w[b : b + 1])[0]
        weight = conv.weight * conv.scale * s[None, :, None, None]
        if demodulate:
            weight = weight / (weight.pow(2).sum((1, 2, 3), keepdim=True) + 1e-8).sqrt()
            assert torch.allclose(weight.pow(2).sum((1, 2, 3)), torch.ones(4, dtype=torch.float64))
        want = F.conv2d(x[b : b + 1], weight, conv.bias, padding=1)
        torch.testing.assert_close(out[b : b + 1], want)


def test_growing_schedule_and_continuity_at_the_start_of_each_fade_in(digits):
    m = _model(digits, grow_steps=10).double().eval()
    assert [m.schedule(s) for s in (0, 9, 10, 15, 20, 1000)] == [(0, 1.0), (0, 1.0), (1, 0.0), (1, 0.5), (1, 1.0),
                                                                 (1, 1.0)]
    assert m.top == 1 and _model(digits, progressive=False).schedule(0) == (1, 1.0)
    three = _model(digits, channels=(8, 8, 8), grow_steps=10)  # 2x2 -> 4x4 -> 8x8
    assert [three.schedule(s) for s in (25, 30, 35, 40, 10**6)] == [(1, 1.0), (2, 0.0), (2, 0.5), (2, 1.0), (2, 1.0)]
    with torch.no_grad():  # noise on, so that its draws' order is part of what must match
        for block in m.G.blocks:
            for layer in block:
                layer.strength.normal_()
    ws = m.styles(torch.randn(4, 16, dtype=torch.float64))
    g = lambda level, alpha: m.G.synthesize(ws, level, alpha, genlab.models.base.generator(3))  # noqa: E731
    # G: the grown generator at alpha = 0 is the smaller one, upsampled; at alpha = 1 the new layers alone
    torch.testing.assert_close(g(1, 0.0), F.interpolate(g(0, 1.0), scale_factor=2, mode="nearest"))
    assert (g(1, 0.5) - g(1, 0.0)).abs().max() > 1e-3
    # D: the grown discriminator at alpha = 0 scores an image as the smaller one scores it pooled
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(m.D(x, 1, 0.0)[0], m.D(F.avg_pool2d(x, 2), 0, 1.0)[0])
    # real images: pooled to the level, and blended with their half-resolution version while it fades in
    torch.testing.assert_close(m.real_at(x, 0, 1.0), F.avg_pool2d(x, 2))
    torch.testing.assert_close(F.avg_pool2d(m.real_at(x, 1, 0.0), 2), m.real_at(x, 0, 1.0))
    torch.testing.assert_close(m.real_at(x, 1, 0.25), 0.75 * F.interpolate(F.avg_pool2d(x, 2), scale_factor=2)
                               + 0.25 * x)


def test_truncation_pulls_styles_to_the_running_mean_of_w(digits):
    m = _model(digits, noise=False, mixing=0.0, w_avg_decay=0.9)
    x = digits.x[:32]
    want = torch.zeros(16)
    for seed in range(3):  # the generator phase's running mean, by hand with the same draws
        torch.manual_seed(seed)
        m(x, None, phase="generator", step=0)
        torch.manual_seed(seed)
        want = 0.9 * want + 0.1 * m.G.map(torch.randn(32, 16)).mean(0).detach()
    torch.testing.assert_close(m.w_avg, want)
    m.eval()
    same = m.sample(6, seed=1, psi=0.0)
    assert (same - same[:1]).abs().max() < 1e-6  # psi = 0: every sample is the average image
    full, half = m.sample(200, seed=1), m.sample(200, seed=1, psi=0.5)
    assert half.std(0).mean() < full.std(0).mean()  # closer to the average image, less varied
    z = torch.randn(5, 16)
    ws, half = m.styles(z), m.styles(z, psi=0.5, cutoff=1)
    torch.testing.assert_close(half[:, 0], 0.5 * (ws[:, 0] + m.w_avg))
    torch.testing.assert_close(half[:, 1:], ws[:, 1:])  # past the cutoff: untouched


def test_style_mixing_takes_coarse_styles_from_one_latent_and_fine_from_another(digits):
    m = _model(digits, progressive=False).eval()  # every layer in use
    a, b = torch.randn(4, 16), torch.randn(4, 16)
    n = m.G.n_ws
    assert n == 3  # one layer at 4x4, two at 8x8
    torch.testing.assert_close(m.mix(a, b, 0), m.mix(b, b, n))
    torch.testing.assert_close(m.mix(a, b, n), m.mix(a, a, 0))
    mixed = m.mix(a, b, 1)
    assert (mixed - m.mix(a, a, 0)).abs().max() > 1e-4 and (mixed - m.mix(b, b, 0)).abs().max() > 1e-4
    with pytest.raises(GenlabError, match="crossover must be in"):
        m.mix(a, b, 4)
    # in training, mixing gives each sample one latent's w before a crossover and another's after it
    m2 = _model(digits, mixing=1.0)
    torch.manual_seed(1)
    ws = m2._ws(8, "cpu", True, level=1)
    switches = (ws[:, 1:] - ws[:, :-1]).abs().amax((0, 2)) > 0
    assert switches.sum() == 1


def test_stylegan_trains_on_digits_and_grows(digits, tmp_path):
    """A short progressive run: FID in the shipped digits features falls far below the untrained generator's."""
    m = _model(digits, grow_steps=60)
    fid = lambda model: evaluate_samples(model.eval().sample(500, seed=0), "digits", ["fid"])["metrics"]["fid"]
    before = fid(m)
    genlab.train(m, digits, steps=300, out=tmp_path / "run", progress=False, sample_every=300, precision="fp32")
    trained = genlab.load(tmp_path / "run")
    assert trained.schedule(int(trained.seen)) == (1, 1.0)
    after = fid(trained)
    assert after < 0.7 * before, (after, before)  # measured 81.8 against 147.7
    assert math.isfinite(after)


def test_stylegan_bad_inputs(digits):
    with pytest.raises(GenlabError, match="cannot be halved 4 times"):
        genlab.create("stylegan", digits, channels=(8, 8, 8, 8, 8))
    with pytest.raises(GenlabError, match="mixing is a probability"):
        genlab.create("stylegan", digits, mixing=1.5)
    with pytest.raises(GenlabError, match="models image data"):
        genlab.create("stylegan", genlab.load_dataset("gaussians8"))
    with pytest.raises(GenlabError, match="psi.* must be a finite"):
        _model(digits).sample(2, psi=float("nan"))


def test_lazy_r1_is_applied_every_r1_every_steps_scaled_by_the_interval(digits):
    m = _model(digits, r1=0.5, r1_every=4, mixing=0.0).eval()
    plain_model = _model(digits, r1=0.0, mixing=0.0).eval()  # the same weights, no penalty
    x = digits.x[:16]
    for step, on in ((0, True), (1, False), (4, True)):
        torch.manual_seed(0)
        loss, logs = m(x, None, phase="discriminator", step=step)
        assert ("r1" in logs) == on
        if on:
            torch.manual_seed(0)
            plain, _ = plain_model(x, None, phase="discriminator", step=step)
            torch.testing.assert_close(loss, plain + 0.5 * 0.5 * 4 * logs["r1"])
