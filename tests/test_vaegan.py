"""VAE-GAN (kind `vaegan`): each network's loss against the paper's formulas computed by hand, the optimizers kept
apart, and a short run on real data."""

import pytest
import torch
import torch.nn.functional as F

import genlab
from genlab.errors import GenlabError
from genlab.models.vae import gaussian_kl


@pytest.fixture(scope="module")
def digits():
    return genlab.load_dataset("digits")


def test_losses_are_larsen_et_al_algorithm_1(digits):
    m = genlab.create("vaegan", digits, latent_dim=8, gamma=0.3, d_channels=(16, 8))
    x = digits.x[:16]
    m.eval()  # spectral norm's power iteration holds still, so the hand computation sees the same D
    for phase in ("discriminator", "encoder", "decoder"):
        torch.manual_seed(0)
        loss, logs = m(x, None, phase=phase)
        torch.manual_seed(0)  # the same draws, by hand
        mu, logvar = m.posterior(x, None)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        x_rec = m.mean_image(m._decode_raw(z, None))
        x_p = m.mean_image(m._decode_raw(torch.randn(16, 8), None))
        logit = lambda v: m.D(v)[0]
        feats = lambda v: m.D(v)[1]
        if phase == "discriminator":
            want = (F.softplus(-logit(x)).mean() + F.softplus(logit(torch.cat([x_rec, x_p]))).mean())
        else:
            llike = 0.5 * (feats(x_rec) - feats(x)).pow(2).sum(1).mean()
            if phase == "encoder":
                want = gaussian_kl(mu, logvar).sum(1).mean() + llike
            else:
                want = 0.3 * llike + F.softplus(-logit(torch.cat([x_rec, x_p]))).mean()
        torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-5)
    groups = m.param_groups()
    ids = [{id(p) for p in g} for g in groups.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # three separate optimizers


def test_trains_on_digits_and_has_no_likelihood(digits, tmp_path):
    """A short run: reconstructions of test images improve in pixels, though no pixel loss is trained."""
    test = genlab.load_dataset("digits", "test").x
    torch.manual_seed(0)
    m = genlab.create("vaegan", digits, latent_dim=8, d_channels=(32, 16))
    mse = lambda model: (model.eval().reconstruct(test) - test).pow(2).mean().item()
    before = mse(m)
    genlab.train(m, digits, steps=80, out=tmp_path / "run", batch_size=64, progress=False, sample_every=80)
    trained = genlab.load(tmp_path / "run")
    assert mse(trained) < 0.95 * before, (mse(trained), before)  # measured 0.660 against 0.749
    x = trained.sample(10, seed=0)
    assert x.shape == (10, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert "log_prob" not in m.capabilities and "reconstruct" in m.capabilities
    with pytest.raises(GenlabError, match="leave likelihood, perceptual, conditional, prior and posterior"):
        genlab.create("vaegan", digits, likelihood="bernoulli")
