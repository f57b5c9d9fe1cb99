"""The VAE's formulas against independent computations."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

import genlab
from genlab.errors import GenlabError
from genlab.models.vae import gaussian_kl


def test_gaussian_kl_closed_form_matches_monte_carlo_and_torch_distributions():
    torch.manual_seed(0)
    mu = torch.tensor([0.0, 1.5, -2.0, 0.3], dtype=torch.float64)
    logvar = torch.tensor([0.0, -1.0, 0.7, -3.0], dtype=torch.float64)
    closed = gaussian_kl(mu, logvar)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(closed, torch.distributions.kl_divergence(q, p), atol=1e-12)
    z = q.sample((400_000,))
    terms = q.log_prob(z) - p.log_prob(z)  # KL = E_q[log q - log p]
    mc, se = terms.mean(0), terms.std(0) / math.sqrt(len(z))
    assert torch.all((mc - closed).abs() < 4 * se + 1e-4), (mc, closed, se)
    assert closed[0] == 0  # q = p


def _tiny_vae(seed=0):
    data = genlab.load_dataset("moons")
    torch.manual_seed(seed)
    model = genlab.create("vae", data.spec, latent_dim=1, hidden=(16,), act="tanh")
    return model.double().eval(), data


def _exact_log_px(model, x):
    """log p(x) = log ∫ p(x|z) N(z; 0, 1) dz, by adaptive quadrature over the 1-D latent."""

    def integrand(z):
        zt = torch.tensor([[z]], dtype=torch.float64)
        with torch.no_grad():
            lp = model.log_px(x[None], model._decode_raw(zt, None))
        return math.exp(float(lp) - 0.5 * z * z - 0.5 * math.log(2 * math.pi))

    val, _ = integrate.quad(integrand, -12, 12, limit=400, epsabs=0, epsrel=1e-10)
    return math.log(val)


def test_elbo_below_iwae_nondecreasing_in_k_and_below_exact_likelihood():
    model, data = _tiny_vae()
    x = data.x[:3].double()
    torch.manual_seed(1)
    reps = 4000
    with torch.no_grad():
        means = {}
        for k in (1, 5, 50):
            vals = torch.stack([model.log_prob(x, k=k) for _ in range(reps if k < 50 else reps // 4)])
            means[k] = (vals.mean(0), vals.std(0) / math.sqrt(len(vals)))
    exact = torch.tensor([_exact_log_px(model, xi) for xi in x], dtype=torch.float64)
    (e1, s1), (e5, s5), (e50, s50) = means[1], means[5], means[50]
    # in expectation: ELBO <= IWAE_5 <= IWAE_50 <= log p(x) (Burda et al. 2016, Theorem 1)
    assert torch.all(e1 < e5 + 3 * (s1 + s5)), (e1, e5)
    assert torch.all(e5 < e50 + 3 * (s5 + s50)), (e5, e50)
    assert torch.all(e50 < exact + 3 * s50 + 1e-6), (e50, exact)
    # and the bound is not vacuous: the gap closes as k grows
    assert torch.all((exact - e50) < (exact - e1)), (exact, e1, e50)
    assert torch.all((exact - e1) > 0.01)  # an untrained VAE has a real gap, so the ordering is tested


def test_reparameterised_gradients_match_finite_differences():
    """d/dθ of the training loss (negative ELBO / D) with the noise held fixed: autograd through
    z = mu + sigma * eps vs central finite differences (torch.autograd.gradcheck, float64)."""
    from torch.func import functional_call

    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, arch="mlp", hidden=(8,), latent_dim=3).double().train()
    x, y = data.x[:5].double(), data.y[:5]
    names = ["encoder.2.weight", "encoder.2.bias", "decoder.0.bias"]  # encoder head (mu, logvar) and decoder
    params = dict(model.named_parameters())

    def loss(*values):
        torch.manual_seed(123)  # the same eps and dequantisation noise for every evaluation
        return functional_call(model, dict(zip(names, values)), (x, y))[0]

    inputs = tuple(params[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_reparameterised_gradient_estimator_is_unbiased():
    """MC gradient of E_q[z^2 + 3z] through z = mu + sigma*eps vs the closed form d/dmu = 2mu + 3,
    d/dlogvar = sigma^2."""
    torch.manual_seed(0)
    mu = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([-0.4], dtype=torch.float64, requires_grad=True)
    eps = torch.randn(1_000_000, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * eps
    (z.pow(2) + 3 * z).mean().backward()
    assert abs(mu.grad.item() - (2 * 0.7 + 3)) < 5e-3
    assert abs(logvar.grad.item() - math.exp(-0.4)) < 5e-3


def test_linear_autoencoder_recovers_pca_subspace(tmp_path):
    """Baldi & Hornik 1989: a linear AE with MSE spans the top principal subspace."""
    from scipy.linalg import subspace_angles

    rng = np.random.default_rng(0)
    D, k, n = 8, 3, 4000
    basis, _ = np.linalg.qr(rng.standard_normal((D, D)))
    scales = np.array([3.0, 2.5, 2.0, 0.4, 0.3, 0.2, 0.1, 0.05])
    x = (rng.standard_normal((n, D)) * scales) @ basis.T + rng.standard_normal(D)
    np.savez(tmp_path / "lin.npz", x=x)
    data = genlab.load_dataset(f"npz:{tmp_path / 'lin.npz'}")
    torch.manual_seed(0)
    model = genlab.create("ae", data.spec, arch="mlp", hidden=(), act="none", latent_dim=k)
    genlab.train(model, data, steps=3000, batch_size=512, lr=1e-2, warmup_steps=50, min_lr_ratio=0.01,
                 progress=False, out=tmp_path / "run", checkpoint_every=10_000)
    xs = data.x.double().numpy()
    cov = np.cov(xs.T)
    evals, evecs = np.linalg.eigh(cov)
    top = evecs[:, np.argsort(evals)[::-1][:k]]
    W = model.decoder[0].weight.detach().double().numpy()  # (D, k): the decoder's column space
    angles = subspace_angles(W, top)
    print(f"\nlargest principal angle between the linear AE's decoder and the top-{k} PCA subspace: {angles.max():.2e}")
    assert angles.max() < 0.01, angles


@pytest.mark.parametrize("free_bits", [0.0, 0.5])
def test_free_bits_floor_applies_per_dimension(free_bits):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, arch="mlp", hidden=(32,), latent_dim=4, free_bits=free_bits)
    torch.manual_seed(5)
    loss, logs = model(data.x[:64], data.y[:64])
    torch.manual_seed(5)
    t = model.target(data.x[:64])
    mu, logvar = model.posterior(t, None)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    rec = model.log_px(t, model._decode_raw(z, None))
    kl_dims = gaussian_kl(mu, logvar).mean(0)
    expected = (-rec.mean() + torch.maximum(kl_dims, torch.tensor(free_bits)).sum()) / data.spec.dims
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_log_prob_is_an_evaluation_without_a_graph():
    import warnings

    data = genlab.load_dataset("moons")
    model = genlab.create("vae", data.spec, latent_dim=2)
    for k in (1, 5):
        lp = model.log_prob(data.x[:8], k=k)
        assert lp.shape == (8,) and not lp.requires_grad
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            float(lp.mean())
    assert model.elbo(data.x[:8]).requires_grad  # the training objective keeps its graph


def test_flow_prior_and_posterior_are_densities_and_the_bounds_sit_below_the_exact_likelihood():
    """prior=flow, posterior=flow on a 2-D latent, against quadrature on a grid: the MAF prior integrates to 1 and
    its seeded draws have the grid's mean; the flow posterior q(z | x), evaluated the other way round (the forward
    map z -> z0 and its log |det|), integrates to 1 and its draws have its grid mean; and with both,
    ELBO <= IWAE_50 <= log p(x) = log ∫ p(x|z) p(z) dz."""
    data = genlab.load_dataset("moons")
    torch.manual_seed(0)
    m = genlab.create("vae", data.spec, latent_dim=2, hidden=(16,), act="tanh", prior="flow", prior_transforms=2,
                      posterior="flow", posterior_transforms=2).double().eval()
    with torch.no_grad():
        for p in [*m.prior_flow.parameters(), *m.posterior_flow.parameters()]:  # away from the near-identity start
            p.add_(0.05 * torch.randn_like(p))
        g = torch.linspace(-10, 10, 401, dtype=torch.float64)
        h = float(g[1] - g[0])
        zz = torch.cartesian_prod(g, g)
        lp = m.log_prior(zz)
        draws = m.prior_sample(20_000, genlab.models.base.generator(0))
        x = data.x[:3].double()
        mu, logvar = m.posterior(x, None)
        densities = [(lp, draws)]
        for i in range(3):  # log q(z | x_i) = log N(T(z); mu, sigma) + log |det dT/dz|
            ctx = torch.cat([mu[i], logvar[i]]).expand(len(zz), -1)
            z0, ladj = m.posterior_flow(ctx).transform.call_and_ladj(zz)
            lq = (-0.5 * ((z0 - mu[i]).pow(2) * torch.exp(-logvar[i]) + logvar[i] + math.log(2 * math.pi))).sum(1)
            densities.append((lq + ladj, m.draw_posterior(mu[i : i + 1], logvar[i : i + 1],
                                                          torch.randn(20_000, 1, 2, dtype=torch.float64))[0][:, 0]))
        z, log_q = m.draw_posterior(mu[:1], logvar[:1], torch.randn(50, 1, 2, dtype=torch.float64))
        ctx = torch.cat([mu[0], logvar[0]]).expand(50, -1)
        z0, ladj = m.posterior_flow(ctx).transform.call_and_ladj(z[:, 0])  # the density at the draw, the other way
        lq = (-0.5 * ((z0 - mu[0]).pow(2) * torch.exp(-logvar[0]) + logvar[0] + math.log(2 * math.pi))).sum(1)
        torch.testing.assert_close(log_q[:, 0], lq + ladj)
        for logd, sample in densities:
            assert abs(logd.exp().sum() * h * h - 1) < 2e-3, logd.exp().sum() * h * h
            mean = (logd.exp()[:, None] * zz).sum(0) * h * h
            se = sample.std(0) / math.sqrt(len(sample))
            assert torch.all((sample.mean(0) - mean).abs() < 4 * se), (sample.mean(0), mean, se)
        exact = torch.stack([torch.logsumexp(m.log_px(xi.expand(len(zz), -1), m._decode_raw(zz, None)) + lp, 0)
                             + math.log(h * h) for xi in x])
        torch.manual_seed(1)
        elbo = torch.stack([m.log_prob(x) for _ in range(1000)])
        iwae = torch.stack([m.log_prob(x, k=50) for _ in range(200)])
    (e1, s1), (e50, s50) = [(v.mean(0), v.std(0) / math.sqrt(len(v))) for v in (elbo, iwae)]
    assert torch.all(e1 < e50 + 3 * (s1 + s50)), (e1, e50)
    assert torch.all(e50 < exact + 3 * s50 + 1e-6), (e50, exact)
    assert torch.all((exact - e50) < (exact - e1)), (exact, e1, e50)


def test_flow_prior_and_posterior_train_and_are_refused_where_they_do_not_fit(tmp_path):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    m = genlab.create("vae", data, latent_dim=8, prior="flow", posterior="flow")
    test = genlab.load_dataset("digits", "test").x[:200]
    before = -m.eval().log_prob(test).mean().item()
    genlab.train(m, data, steps=150, out=tmp_path / "run", batch_size=64, progress=False, sample_every=150)
    trained = genlab.load(tmp_path / "run")
    after = -trained.log_prob(test).mean().item()
    assert after < before - 20, (before, after)  # nats per image
    assert trained.sample(4, seed=0).shape == (4, 1, 8, 8)
    torch.testing.assert_close(trained.sample(4, seed=0), trained.sample(4, seed=0))
    with pytest.raises(GenlabError, match="set free_bits=0"):
        genlab.create("vae", data, posterior="flow", free_bits=0.5)
    with pytest.raises(GenlabError, match="prior must be gaussian or flow"):
        genlab.create("vae", data, prior="vamp")
