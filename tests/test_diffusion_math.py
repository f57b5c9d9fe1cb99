"""Diffusion formulas against independent computations: the iterated forward chain, Bayes' rule done on a
grid, the closed-form DDIM map for Gaussian data, and the guidance combination."""

import math

import pytest
import torch
from helpers import gaussian_posterior_on_a_grid
from torch import nn

import genlab
from genlab.data.spec import DataSpec
from genlab.errors import GenlabError
from genlab.models.diffusion import SAMPLERS, NoiseSchedule
from genlab.models.diffusion.samplers import start_timesteps, timesteps


@pytest.mark.parametrize("kind", ["linear", "cosine", "sigmoid"])
def test_schedule_is_float64_and_monotone(kind):
    s = NoiseSchedule(kind, 1000)
    assert s.betas.dtype == s.alphas_cumprod.dtype == torch.float64
    assert (s.betas > 0).all() and (s.betas <= 0.999).all()
    assert (s.alphas_cumprod.diff() < 0).all() and s.alphas_cumprod[-1] < 1e-3
    if kind == "linear":
        assert s.betas[0] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(0.02)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_iterated_forward_chain_matches_closed_form(kind):
    s = NoiseSchedule(kind, 1000)
    # exact propagation of the mean coefficient and the variance through x_t = sqrt(1-b) x_{t-1} + sqrt(b) e
    coef, var = 1.0, 0.0
    for t in range(1000):
        b = float(s.betas[t])
        coef, var = coef * math.sqrt(1 - b), (1 - b) * var + b
        if t in (0, 10, 250, 999):
            assert coef == pytest.approx(math.sqrt(s.alphas_cumprod[t]), rel=1e-10)
            assert var == pytest.approx(1 - float(s.alphas_cumprod[t]), rel=1e-10, abs=1e-14)
    # Monte Carlo: 200k chains of 300 steps from x0 = 1.5 vs q(x_300 | x0) of the closed form
    g = torch.Generator().manual_seed(0)
    x = torch.full((200_000,), 1.5, dtype=torch.float64)
    for t in range(300):
        b = s.betas[t]
        x = (1 - b).sqrt() * x + b.sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
    a = s.alphas_cumprod[299]
    se = (1 - a).sqrt() / math.sqrt(len(x))
    assert abs(x.mean() - a.sqrt() * 1.5) < 4 * se
    assert abs(x.var() - (1 - a)) < 4 * (1 - a) * math.sqrt(2 / len(x))


@pytest.mark.parametrize("t", [1, 50, 500, 999])
def test_posterior_matches_bayes_rule_on_a_grid(t):
    s = NoiseSchedule("linear", 1000)
    x0, xt = torch.tensor([0.7], dtype=torch.float64), torch.tensor([-0.4], dtype=torch.float64)
    mean, var = s.posterior(x0, xt, torch.tensor([t]))
    # p(x_{t-1} | x_t, x0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x0), normalised numerically on a fine grid
    a_prev, b = float(s.alphas_cumprod[t - 1]), float(s.betas[t])
    m, v = gaussian_posterior_on_a_grid(xt.item(), x0.item(), 1 - b, a_prev)
    assert mean.item() == pytest.approx(m, abs=1e-7)
    assert var.item() == pytest.approx(v, rel=1e-5)


def vector_spec(d: int) -> DataSpec:
    return DataSpec(name="gauss", kind="vector", shape=(d,), mean=[0.0] * d, std=[1.0] * d)


class ExactEps(nn.Module):
    """E[eps | x_t] for data N(mu, diag(s^2)): sqrt(1-a) (x_t - sqrt(a) mu) / (a s^2 + 1 - a)."""

    def __init__(self, schedule, mu, s):
        super().__init__()
        self.schedule, self.mu, self.s = schedule, mu, s
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, t, y=None):
        a = self.schedule.abar(t, x)
        return (1 - a).sqrt() * (x - a.sqrt() * self.mu) / (a * self.s**2 + 1 - a)


def exact_model(mu, s, sched="linear"):
    model = genlab.create("ddpm", vector_spec(len(mu)), schedule=sched, target="eps")
    model.net = ExactEps(model.schedule, mu, s)
    return model.eval()


def test_ddim_maps_noise_to_the_analytic_x0_for_gaussian_data():
    mu, s = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0])
    model = exact_model(mu, s)
    sch = model.schedule
    x_T = torch.randn((500, 2), generator=torch.Generator().manual_seed(3))
    for steps in (5, 50):
        out = model.sample(500, seed=3, sampler="ddim", steps=steps, eta=0.0)
        # each DDIM step maps the deviation d_t = x_t - sqrt(a_t) mu linearly: d_s = k d_t, with
        # k = (sqrt(a_s a_t) s^2 + sqrt((1 - a_s)(1 - a_t))) / (a_t s^2 + 1 - a_t); the last step lands on t = 0
        ts = timesteps(1000, steps) + [0]
        k = torch.ones(2, dtype=torch.float64)
        for i, t in enumerate(ts[:-1]):
            a, a_s = sch.alphas_cumprod[t], sch.alphas_cumprod[ts[i + 1]]
            s2 = s.double() ** 2
            k = k * ((a_s * a).sqrt() * s2 + ((1 - a_s) * (1 - a)).sqrt()) / (a * s2 + 1 - a)
        sa = sch.alphas_cumprod.sqrt().float()
        expected = sa[0] * mu + k.float() * (x_T - sa[ts[0]] * mu)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    # the probability-flow ODE's exact map is x0 = mu + s * z_T, z_T the standardised x_T; 1000 DDIM steps
    # approach it, and DPM-Solver++(2M) gets closer in 20 steps than DDIM does
    a_T = sch.alphas_cumprod[-1].float()
    flow = mu + s * (x_T - a_T.sqrt() * mu) / (a_T * s**2 + 1 - a_T).sqrt()
    err = lambda sampler, n: (model.sample(500, seed=3, sampler=sampler, steps=n) - flow).abs().max().item()
    assert err("ddim", 1000) < 0.02
    assert err("dpm++", 20) < err("ddim", 20) / 3
    # PLMS's multistep eps: 0.13 at 10 steps, 0.019 at 20 (DDIM 0.89, 0.46): an order above DDIM's first
    assert err("plms", 20) < err("ddim", 20) / 10
    assert err("plms", 10) / err("plms", 20) > 4 > err("ddim", 10) / err("ddim", 20)


def test_ddpm_sampler_equals_ddim_with_eta_one():
    mu, s = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0])
    model = exact_model(mu, s)
    a = model.sample(64, seed=1, sampler="ddpm", steps=40)
    b = model.sample(64, seed=1, sampler="ddim", steps=40, eta=1.0)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_samplers_match_the_data_distribution_with_exact_eps():
    mu, s = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0])
    model = exact_model(mu, s)
    for sampler, steps in (("ddpm", 1000), ("ddim", 1000), ("dpm++", 100)):
        x = model.sample(4000, seed=0, sampler=sampler, steps=steps)
        torch.testing.assert_close(x.mean(0), mu, atol=0.1, rtol=0)
        torch.testing.assert_close(x.std(0), s, atol=0, rtol=0.05)


def test_inpainting_follows_the_gaussian_conditional():
    """Data N(0, [[1, r], [r, 1]]); inpaint x2 given x1: the conditional is N(r x1, 1 - r^2)."""
    r = 0.9
    cov = torch.tensor([[1.0, r], [r, 1.0]])
    model = genlab.create("ddpm", vector_spec(2), schedule="linear", target="eps")

    class ExactEpsCorrelated(ExactEps):
        def forward(self, x, t, y=None):
            a = self.schedule.abar(t, x)[:, :1]
            cov_t = a[:, :, None] * cov + (1 - a)[:, :, None] * torch.eye(2)  # (B, 2, 2)
            return (1 - a).sqrt() * torch.linalg.solve(cov_t, x.unsqueeze(-1)).squeeze(-1)

    model.net = ExactEpsCorrelated(model.schedule, None, None)
    model.eval()
    x = torch.tensor([[1.5, 0.0]]).expand(3000, 2)
    out = model.inpaint(x, torch.tensor([0.0, 1.0]), seed=0, steps=50, resample=10)
    assert (out[:, 0] == 1.5).all()  # the known entry is kept exactly
    # RePaint approximates the conditional (measured: mean 1.30, std 0.35 here); replacement alone, without
    # resampling, stays near the prior (mean 0.90): the bias RePaint was made to remove
    plain = model.inpaint(x, torch.tensor([0.0, 1.0]), seed=0, steps=50, resample=1)
    assert out[:, 1].mean().item() == pytest.approx(r * 1.5, abs=0.1)
    assert abs(plain[:, 1].mean().item() - r * 1.5) > 4 * abs(out[:, 1].mean().item() - r * 1.5)
    assert out[:, 1].std().item() == pytest.approx(math.sqrt(1 - r**2), rel=0.25)
    # the multistep samplers under RePaint's repeats: PLMS replaces the repeated timestep's eps (measured mean
    # 1.29, std 0.53); DPM-Solver++ steps first order on a repeat (1.29, 0.39; extrapolating from the previous
    # trajectory's x0 gave std 2.2)
    for sampler in ("plms", "dpm++"):
        ms = model.inpaint(x, torch.tensor([0.0, 1.0]), seed=0, steps=50, resample=10, sampler=sampler)
        assert (ms[:, 0] == 1.5).all() and ms[:, 1].mean().item() == pytest.approx(r * 1.5, abs=0.1), sampler
        assert ms[:, 1].std().item() == pytest.approx(math.sqrt(1 - r**2), rel=0.25), sampler


def test_guidance_one_and_zero_are_exact_and_two_extrapolates():
    spec = DataSpec(name="d", kind="vector", shape=(3,), num_classes=4, mean=[0.0] * 3, std=[1.0] * 3)
    torch.manual_seed(0)
    model = genlab.create("ddpm", spec, conditional=True, target="eps", hidden=(32, 32)).eval()
    nn.init.normal_(model.net.out.weight)  # the output layer starts at zero; make the branches differ
    x, t, y = torch.randn(8, 3), torch.randint(0, 1000, (8,)), torch.randint(0, 4, (8,))
    with torch.no_grad():
        cond, uncond = model.net(x, t, y), model.net(x, t, torch.full_like(y, 4))
        a = model.schedule.abar(t, x)
        for w, pred in ((1.0, cond), (0.0, uncond)):
            assert torch.equal(model.denoiser(y, w, clip=False)(x, t)[1], pred)
        eps2 = model.denoiser(y, 2.0, clip=False)(x, t)[1]
        torch.testing.assert_close(eps2, 2 * cond - uncond)
        x0 = model.denoiser(y, 2.0, clip=False)(x, t)[0]
        torch.testing.assert_close(x0, (x - (1 - a).sqrt() * eps2) / a.sqrt())
    assert not torch.equal(cond, uncond)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_samples(sampler):
    torch.manual_seed(0)
    model = genlab.create("ddpm", vector_spec(2), hidden=(16,)).eval()
    nn.init.normal_(model.net.out.weight)
    a, b = (model.sample(16, seed=7, sampler=sampler, steps=10) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, model.sample(16, seed=8, sampler=sampler, steps=10))


@pytest.mark.parametrize("target", ["eps", "x0", "v"])
def test_target_conversions_round_trip(target):
    s = NoiseSchedule("cosine", 1000)
    x0, eps = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    t = torch.tensor([0, 10, 300, 700, 990])
    a = s.abar(t, x0)
    xt = s.q_sample(x0, t, eps)
    got_x0, got_eps = s.to_x0_eps(s.target(x0, eps, a, target), xt, a, target)
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, eps)


@pytest.mark.parametrize("target", ["eps", "v"])
def test_min_snr_weights(target):
    """Min-SNR-5 (Hang et al. 2023): the eps loss is weighted by min(SNR, 5) / SNR, the v loss by
    min(SNR, 5) / (SNR + 1)."""
    torch.manual_seed(0)
    model = genlab.create("ddpm", vector_spec(2), min_snr=5.0, hidden=(16,), target=target)
    nn.init.normal_(model.net.out.weight)
    x = torch.randn(256, 2)
    torch.manual_seed(1)
    loss, _ = model(x, None)
    torch.manual_seed(1)
    t = torch.randint(0, 1000, (256,))
    noise = torch.randn_like(x)
    xt = model.schedule.q_sample(x, t, noise)
    snr = model.schedule.snr(t).float()
    a = model.schedule.alphas_cumprod[t].float()[:, None]
    v = a.sqrt() * noise - (1 - a).sqrt() * x
    err = ((model.net(xt, t) - (noise if target == "eps" else v)) ** 2).mean(1)
    w = snr.clamp(max=5) / (snr if target == "eps" else snr + 1)
    assert loss.item() == pytest.approx((err * w).mean().item(), rel=1e-5)


def test_sdedit_walks_from_the_noised_input_on_the_sampler_timesteps():
    assert start_timesteps(timesteps(10, 5), 6) == [6, 5, 3, 1]  # timesteps(10, 5) = [9, 7, 5, 3, 1]
    assert start_timesteps(timesteps(10, 5), None) == [9, 7, 5, 3, 1]
    mu, s = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0])
    model = exact_model(mu, s)
    sch = model.schedule
    x = torch.tensor([[1.0, 2.0]]).expand(300, 2)
    out = model.edit(x, 0.4, seed=5, sampler="ddim", steps=50, eta=0.0)
    # x_399 = sqrt(a) x + sqrt(1 - a) z with the seed's first draw; then the DDIM map of the test above from 399
    z = torch.randn((300, 2), generator=torch.Generator().manual_seed(5))
    start = 399
    ts = [start] + [t for t in timesteps(1000, 50) if t < start] + [0]
    assert len(ts) - 1 == 20  # 19 of the 50 respaced steps lie below t = 399, plus the start: 0.4 x 50
    a0 = sch.alphas_cumprod[start]
    d = (a0.sqrt() * x + (1 - a0).sqrt() * z).double() - a0.sqrt() * mu.double()
    s2 = s.double() ** 2
    for i, t in enumerate(ts[:-1]):
        a, a_s = sch.alphas_cumprod[t], sch.alphas_cumprod[ts[i + 1]]
        d = d * ((a_s * a).sqrt() * s2 + ((1 - a_s) * (1 - a)).sqrt()) / (a * s2 + 1 - a)
    expected = sch.alphas_cumprod[0].sqrt() * mu + d
    torch.testing.assert_close(out, expected.float(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strength", [0.2, 0.6])
def test_sdedit_with_ancestral_steps_samples_the_gaussian_posterior(strength):
    """For data N(mu, s^2), an edit of x through x_t ~ q(x_t | x) and exact ancestral steps is p(x0 | x_t):
    mean mu + c (x - mu), c = a s^2 / (a s^2 + 1 - a); variance s^2 (1 - a) / (a s^2 + 1 - a) + c^2 (1 - a) / a."""
    mu, s = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0])
    model = exact_model(mu, s)
    x = torch.tensor([[1.5, 1.0]])
    out = model.edit(x.expand(4000, 2), strength, seed=0, sampler="ddpm", steps=1000)
    a = model.schedule.alphas_cumprod[round(strength * 1000) - 1].float()
    c = a * s**2 / (a * s**2 + 1 - a)
    var = s**2 * (1 - a) / (a * s**2 + 1 - a) + c**2 * (1 - a) / a
    torch.testing.assert_close(out.mean(0), mu + c * (x[0] - mu), atol=4 * float(var.max().sqrt()) / 63, rtol=0)
    torch.testing.assert_close(out.var(0), var, rtol=0.1, atol=1e-4)


def test_edit_rejects_bad_strengths_and_inputs():
    model = exact_model(torch.zeros(2), torch.ones(2))
    for bad in (0, -0.5, 1.5, float("nan"), float("inf")):
        with pytest.raises(GenlabError, match="strength must be in"):
            model.edit(torch.zeros(3, 2), bad)
    with pytest.raises(GenlabError, match="inputs to edit have shape"):
        model.edit(torch.zeros(3, 5), 0.5)
    with pytest.raises(GenlabError, match="NaN or inf"):
        model.edit(torch.tensor([[0.0, float("nan")]]), 0.5)
