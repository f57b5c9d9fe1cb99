"""Hierarchical VAE (kind `hvae`): the KL between two Gaussians against torch.distributions, the analytic-KL ELBO
against the Monte Carlo log-weights computed apart, the IWAE ordering, and a short run on real data."""

import math

import pytest
import torch

import genlab
from genlab.errors import GenlabError
from genlab.models.hvae import gaussian_kl2


@pytest.fixture(scope="module")
def digits():
    return genlab.load_dataset("digits")


def _model(digits, **kw):
    torch.manual_seed(0)
    return genlab.create("hvae", digits, channels=(16, 16), latent_channels=2, **kw)


def test_gaussian_kl_between_two_gaussians_is_torch_distributions():
    torch.manual_seed(0)
    mq, lq, mp, lp = (torch.randn(50, dtype=torch.float64) for _ in range(4))
    want = torch.distributions.kl_divergence(torch.distributions.Normal(mq, (0.5 * lq).exp()),
                                             torch.distributions.Normal(mp, (0.5 * lp).exp()))
    torch.testing.assert_close(gaussian_kl2(mq, lq, mp, lp), want)


def test_posterior_starts_at_the_prior_and_the_elbo_is_the_mean_log_weight(digits):
    m = _model(digits).double().eval()
    x = digits.x[:4].double()
    t = m._target(x)
    _, groups = m._top_down(m._features(t), 4)
    assert len(groups) == 4 and all(torch.equal(mu, mp) and torch.equal(lv, lp) for _, mu, lv, mp, lp in groups)
    with torch.no_grad():  # move q off p, then: E[ELBO with closed-form KLs] = E[log p(x, z) - log q(z | x)]
        for conv in m.post:
            conv.weight.normal_(0, 0.05)
            conv.bias.normal_(0, 0.3)
        torch.manual_seed(1)
        reps = 3000  # independent draws for each of the 4 images, as one batch (eval mode: rows do not interact)
        xr = x.repeat(reps, 1, 1, 1)
        elbos = m.elbo(xr).view(reps, 4)
        t = m._target(xr)
        mean, groups = m._top_down(m._features(t), len(xr))
        N = torch.distributions.Normal
        lw = N(mean, m.log_sigma.exp()).log_prob(t).flatten(1).sum(1) + m.log_offset
        for z, mu, lv, mp, lp in groups:
            lw = lw + (N(mp, (0.5 * lp).exp()).log_prob(z) - N(mu, (0.5 * lv).exp()).log_prob(z)).flatten(1).sum(1)
        logws = lw.view(reps, 4)
    (e, se_e), (w, se_w) = [(v.mean(0), v.std(0) / math.sqrt(reps)) for v in (elbos, logws)]
    assert torch.all((e - w).abs() < 4 * (se_e + se_w)), (e, w, se_e, se_w)
    # the k-sample bound is log-mean-exp of exactly those log weights: the same draws, computed apart
    with torch.no_grad():
        torch.manual_seed(3)
        bound = m.log_prob(x, k=5)
        torch.manual_seed(3)
        t = m._target(x)
        feats, lws = m._features(t), []
        for _ in range(5):
            mean, groups = m._top_down(feats, 4)
            lw = N(mean, m.log_sigma.exp()).log_prob(t).flatten(1).sum(1)
            for z, mu, lv, mp, lp in groups:
                lw = lw + (N(mp, (0.5 * lp).exp()).log_prob(z) - N(mu, (0.5 * lv).exp()).log_prob(z)).flatten(1).sum(1)
            lws.append(lw)
        torch.testing.assert_close(bound, torch.logsumexp(torch.stack(lws), 0) - math.log(5) + m.log_offset)
    torch.manual_seed(2)
    with torch.no_grad():
        i5 = m.log_prob(x.repeat(300, 1, 1, 1), k=5).view(300, 4)
        i50 = m.log_prob(x.repeat(60, 1, 1, 1), k=50).view(60, 4)
    (m5, s5), (m50, s50) = [(v.mean(0), v.std(0) / math.sqrt(len(v))) for v in (i5, i50)]
    assert torch.all(e < m5 + 3 * (se_e + s5)) and torch.all(m5 < m50 + 3 * (s5 + s50))  # Burda et al. Thm 1
    assert torch.all(m50 - e > 0.05)  # a real gap, so the ordering is tested


def test_hvae_trains_on_digits_and_uses_its_groups(digits, tmp_path):
    test = genlab.load_dataset("digits", "test").x[:300]
    m = _model(digits)
    before = -m.eval().log_prob(test).mean().item()
    run = genlab.train(m, digits, steps=300, out=tmp_path / "run", batch_size=64, progress=False, sample_every=300)
    trained = genlab.load(tmp_path / "run")
    after = -trained.log_prob(test).mean().item()
    assert after < before - 30, (before, after)  # nats per image
    kls = run.history[-1]["kl_per_group"]
    assert len(kls) == 4 and sum(k > 0.5 for k in kls) >= 2, kls  # more than one group carries information
    s = trained.sample(200, seed=0)
    assert s.shape == (200, 1, 8, 8) and s.min() >= -1 and s.max() <= 1
    cold = trained.sample(200, seed=0, temperature=0.5)
    assert cold.std(0).mean() < s.std(0).mean()  # a colder prior: less varied samples
    rec = (trained.reconstruct(test) - test).pow(2).mean()
    assert rec < 0.5 * test.var(), rec


def test_bn_readjust_averages_prior_batches_and_leaves_the_model_as_it_was(digits):
    m = _model(digits)
    with torch.no_grad():  # statistics unlike the prior path's, as after training on the posterior path
        for cell in (mod for mod in m.modules() if type(mod).__name__ == "Cell"):
            cell.body[-1].weight.normal_(0, 0.1)  # branches start at zero: open them, so the norms matter
        for bn in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
            bn.running_mean.fill_(3.0)
            bn.running_var.fill_(9.0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    bn, seen = m.cells[-1].body[0], {"batch_means": [], "at_sampling": None}

    def hook(mod, inp):
        if mod.training:
            seen["batch_means"].append(inp[0].float().mean((0, 2, 3)))  # bf16 under `auto` on a bf16 CPU
        else:
            seen["at_sampling"] = mod.running_mean.clone()

    handle = bn.register_forward_pre_hook(hook)
    s = m.sample(300, seed=0, bn_readjust=3)
    handle.remove()
    assert len(seen["batch_means"]) == 3  # batches of 256
    torch.testing.assert_close(seen["at_sampling"], torch.stack(seen["batch_means"]).mean(0))  # a plain average
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())  # stored statistics restored
    plain = m.sample(300, seed=0)  # the same latent draws on the stored statistics
    assert (s - plain).abs().mean() > 0.01  # the readjusted statistics were used (0 if they were not)
    with torch.no_grad():  # and the stored ones no longer matter
        for b in (mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
            b.running_mean.zero_()
            b.running_var.fill_(1.0)
    torch.testing.assert_close(m.sample(300, seed=0, bn_readjust=3), s)


def test_hvae_bad_inputs(digits):
    with pytest.raises(GenlabError, match="models image data"):
        genlab.create("hvae", genlab.load_dataset("moons"))
    with pytest.raises(GenlabError, match="channels must be two widths"):
        genlab.create("hvae", digits, channels=(8, 8, 8))
    with pytest.raises(GenlabError, match="temperature.* must be a positive"):
        _model(digits).sample(2, temperature=0)
    with pytest.raises(GenlabError, match="bn_readjust must be a whole number"):
        _model(digits).sample(2, bn_readjust=-1)
