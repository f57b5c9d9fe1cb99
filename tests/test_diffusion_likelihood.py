"""The diffusion variational bound against independent computations: the exact log-likelihood of the ddpm
sampler's own reverse chain for Gaussian data (a linear-Gaussian chain, so p(x0) is a Gaussian computed by
recursion), the stratified estimate against the full sum, and the discretised decoder against scipy."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from test_diffusion_math import ExactEps, exact_model

import genlab
from genlab.errors import CapabilityError, GenlabError
from genlab.models.diffusion.likelihood import discretised_gaussian_log_prob, log_diff_ndtr, strata
from genlab.models.diffusion.schedule import posterior

MU, S = torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0])


def reverse_chain_log_prob(model, x, mu, s):
    """log p(x) (N,) of the ddpm sampler's reverse chain with the denoiser x0_hat = mu + g_t (x_t - sqrt(a_t) mu)
    of N(mu, s^2) data (s: the data the denoiser assumes): x_{T-1} ~ N(0, 1), each step the posterior around
    x0_hat with the posterior's variance, the last a Gaussian around x0_hat of variance beta-tilde at t = 1.
    Every step is affine in x_t plus Gaussian noise, so p(x0) = N(M, V) with M, V run through the chain."""
    sch, T = model.schedule, model.schedule.steps
    mu, s2 = mu.double(), s.double() ** 2
    M, V = torch.zeros_like(mu), torch.ones_like(mu)
    for t in range(T - 1, 0, -1):
        a, a_prev = sch.abar_at(t), sch.abar_at(t - 1)
        g = math.sqrt(a) * s2 / (a * s2 + 1 - a)
        c0 = math.sqrt(a_prev) * (1 - a / a_prev) / (1 - a)  # posterior mean = c0 x0_hat + ct x_t
        ct = math.sqrt(a / a_prev) * (1 - a_prev) / (1 - a)
        _, var = posterior(0.0, 0.0, a, a_prev)
        M = c0 * (mu + g * (M - math.sqrt(a) * mu)) + ct * M
        V = (c0 * g + ct) ** 2 * V + var
    a0 = sch.abar_at(0)
    g0 = math.sqrt(a0) * s2 / (a0 * s2 + 1 - a0)
    var_dec = posterior(0.0, 0.0, sch.abar_at(1), a0)[1]
    M, V = mu + g0 * (M - math.sqrt(a0) * mu), g0**2 * V + var_dec
    return torch.distributions.Normal(M, V.sqrt()).log_prob(x.double()).sum(1)


def expected_bound(model, x, mu, s):
    """The bound's terms for each example (N,), averaged over the chain's noise in closed form, for the denoiser
    x0_hat = mu + g_t (x_t - sqrt(a_t) mu): with x_t = sqrt(a) x0 + sqrt(1 - a) eps, x0 - x0_hat = (1 - g sqrt(a))
    (x0 - mu) - g sqrt(1 - a) eps, so E (x0 - x0_hat)^2 = (1 - g sqrt(a))^2 (x0 - mu)^2 + g^2 (1 - a)."""
    sch, T = model.schedule, model.schedule.steps
    x, mu, s2 = x.double(), mu.double(), s.double() ** 2

    def sq_err(t):
        a = sch.abar_at(t)
        g = math.sqrt(a) * s2 / (a * s2 + 1 - a)
        return (1 - g * math.sqrt(a)) ** 2 * (x - mu) ** 2 + g**2 * (1 - a)

    denoising = 0.0
    for t in range(1, T):
        a, a_prev = sch.abar_at(t), sch.abar_at(t - 1)
        c0 = math.sqrt(a_prev) * (1 - a / a_prev) / (1 - a)
        var = posterior(0.0, 0.0, a, a_prev)[1]
        denoising = denoising + (c0**2 * sq_err(t) / (2 * var)).sum(1)
    var_dec = posterior(0.0, 0.0, sch.abar_at(1), sch.abar_at(0))[1]
    decoder = (0.5 * sq_err(0) / var_dec + 0.5 * math.log(2 * math.pi * var_dec)).sum(1)
    return denoising, decoder


@pytest.mark.parametrize("wrong", [1.0, 1.5])
def test_bound_matches_its_closed_form_and_stays_below_the_exact_log_likelihood(wrong):
    """Gaussian data and the denoiser of N(mu, (wrong * s)^2): wrong = 1 the data's own, 1.5 one that assumes a
    wider spread. The Monte Carlo bound equals its closed-form expectation, and lies below the exact log p(x) of
    the same reverse chain, as a variational bound must."""
    model = exact_model(MU, S)
    model.net = ExactEps(model.schedule, MU, S * wrong)
    x = MU + S * torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    parts = model.log_prob(x, terms=999, parts=True)
    denoising, decoder = expected_bound(model, x, MU, S * wrong)
    for name, mc, closed in (("denoising", parts["denoising"], denoising), ("decoder", parts["decoder"], decoder)):
        d = (mc - closed).double()
        assert abs(d.mean().item()) < 4 * d.std().item() / math.sqrt(len(d)), name
    exact = reverse_chain_log_prob(model, x, MU, S * wrong)
    bound = -(parts["prior"] + denoising + decoder)  # the noise averaged out: no Monte Carlo error left
    assert (bound <= exact + 1e-9).all()  # per example: Jensen's gap, E_q KL(q(x_1.. | x0) || p(x_1.. | x0))
    truth = torch.distributions.Normal(MU, S).log_prob(x).sum(1).double()
    if wrong == 1.0:  # the chain reproduces the data's density; its fixed reverse variances leave the bound loose
        assert abs((exact - truth).mean().item()) < 1e-3
        assert 0.5 < (exact - bound).mean().item() < 2.0  # measured 1.16 nats over the 2 dims
    else:
        assert (exact - truth).mean().item() < -0.05  # a worse model


def test_stratified_estimate_is_unbiased():
    model = exact_model(MU, S)
    x = MU + S * torch.randn(3000, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(2)
    full = model.log_prob(x, terms=999, parts=True)
    torch.manual_seed(3)
    est = model.log_prob(x, terms=10, parts=True)
    diff = (est["denoising"] - full["denoising"]).double()
    assert abs(diff.mean().item()) < 3 * diff.std().item() / math.sqrt(len(diff)) + 1e-4
    torch.testing.assert_close(est["prior"], full["prior"])  # the prior term is closed-form
    a = model.schedule.abar_at(999)
    by_hand = 0.5 * (a * x.double() ** 2 + (1 - a) - 1 - math.log(1 - a)).sum(1)
    torch.testing.assert_close(full["prior"], by_hand)
    torch.testing.assert_close(full["nll"], full["prior"] + full["denoising"] + full["decoder"])


def test_strata_cover_every_step_once():
    for T, terms in ((1000, 10), (1000, 50), (1000, 999), (1000, 5000), (7, 3), (2, 4)):
        runs = strata(T, terms)
        steps = [t for first, n in runs for t in range(first, first + n)]
        assert steps == list(range(1, T)) and len(runs) == min(terms, T - 1)
        assert all(b[1] >= a[1] for a, b in zip(runs, runs[1:]))  # runs grow (geometrically) with t


def test_discretised_gaussian_against_scipy():
    levels = 256
    grid = torch.arange(levels, dtype=torch.float64) / (levels - 1) * 2 - 1
    half = 1 / (levels - 1)
    for mean, std in ((0.1, 0.05), (0.99, 0.01), (-3.0, 0.2), (0.0, 1e-4), (0.5, 3.0)):
        lp = discretised_gaussian_log_prob(grid, torch.full_like(grid, mean), std, half)
        assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-9)  # the bins partition the line
        lo = np.where(grid.numpy() <= -1 + 1e-6, -np.inf, grid.numpy() - half)
        hi = np.where(grid.numpy() >= 1 - 1e-6, np.inf, grid.numpy() + half)
        right = lo > mean  # there 1 - cdf loses the digits: the survival function's difference instead
        p = np.where(right, stats.norm.sf(lo, mean, std) - stats.norm.sf(hi, mean, std),
                     stats.norm.cdf(hi, mean, std) - stats.norm.cdf(lo, mean, std))
        ok = p > 1e-300
        np.testing.assert_allclose(lp.numpy()[ok], np.log(p[ok]), rtol=1e-7, atol=1e-9)
    # far in either tail, where the cdf difference underflows: scipy's log-survival and log-cdf
    far = log_diff_ndtr(torch.tensor([40.0, -41.0], dtype=torch.float64), torch.tensor([41.0, -40.0],
                                                                                       dtype=torch.float64))
    np.testing.assert_allclose(far.numpy(), [stats.norm.logsf(40.0), stats.norm.logcdf(-40.0)], rtol=1e-6)


def test_image_ddpm_bound_in_the_eval_protocol(cli, tmp_path):
    """A small image ddpm: eval's nll reports the variational bound (no importance-weighted one: k is not
    importance sampling here), in bits/dim of the discrete images, so >= 0; a finer estimate agrees."""
    run = tmp_path / "ddpm"
    code, _, err = cli("train", "ddpm", "--data", "digits", "--steps", "30", "--out", run, "--no-progress",
                       "--set", "net.channels=8", "--set", "net.mults=[1,2]", "--set", "timesteps=100")
    assert code == 0, err
    res = genlab.evaluate(run, metrics=["nll"], n=64)["metrics"]["nll"]
    assert set(res) == {"n", "dims", "type", "elbo_nats", "elbo_bpd"} and res["type"] == "bound"
    ev = json.loads(next((run / "evals").glob("*.json")).read_text())
    assert ev["options"]["k"] is None  # not importance samples here, so not part of the evaluation's key
    assert 0 < res["elbo_bpd"] < 20
    model = genlab.load(run)
    x = genlab.load_dataset("digits", "test").x[:64]
    torch.manual_seed(0)
    fine = -model.log_prob(x, terms=99).mean().item() / (64 * math.log(2))  # every term
    assert fine == pytest.approx(res["elbo_bpd"], rel=0.05)
    for bad in (0, -3, 2.5, float("nan")):
        with pytest.raises(GenlabError, match="terms .* must be an integer >= 1"):
            model.log_prob(x, terms=bad)
    with pytest.raises(GenlabError, match="NaN or inf"):
        model.log_prob(torch.full((1, 1, 8, 8), float("nan")))


def test_distilled_and_latent_diffusion_have_no_bound():
    spec = genlab.load_dataset("digits").spec
    for kind in ("consistency", "progressive", "ldm"):
        cls = genlab.models.REGISTRY[kind]
        assert "log_prob" not in cls.capability_names(), kind
    assert "log_prob" in genlab.models.REGISTRY["ddpm"].capability_names()
    m = genlab.create("consistency", spec, **{"net.channels": 8})
    with pytest.raises(CapabilityError, match="ddpm"):
        m.log_prob(torch.zeros(1, 1, 8, 8))
