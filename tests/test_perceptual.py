"""The perceptual reconstruction loss (genlab.nn.perceptual) against the shipped classifier run by hand, and
in the VAE's loss."""

import pytest
import torch

import genlab
from genlab.errors import GenlabError
from genlab.metrics.features import extractor_for
from genlab.nn.perceptual import PerceptualLoss


def test_perceptual_loss_is_the_feature_distance_of_the_shipped_classifier():
    """Against the classifier's layers run by hand: the outputs of the two stages (before each max-pool),
    mean squared difference each, summed; zero between an image and itself; the VAE's loss adds it."""
    data = genlab.load_dataset("digits")
    body = extractor_for("digits").net.body
    loss = PerceptualLoss(body)
    a, b = data.x[:4], data.x[4:8]
    convs = list(body)
    stage1 = torch.nn.Sequential(*convs[:6])  # [conv-BN-ReLU] x 2
    stage2 = torch.nn.Sequential(*convs[6:13])  # max-pool, [conv-BN-ReLU] x 2
    with torch.no_grad():
        h_a, h_b = stage1(a), stage1(b)
        want = (h_a - h_b).pow(2).flatten(1).mean(1) + (stage2(h_a) - stage2(h_b)).pow(2).flatten(1).mean(1)
        torch.testing.assert_close(loss(a, b), want, rtol=1e-5, atol=1e-6)
        assert loss(a, a).abs().max() == 0
    vae = genlab.create("vae", data, perceptual=2.0)
    torch.manual_seed(0)
    total, logs = vae(data.x[:16], data.y[:16])
    plain = genlab.create("vae", data)
    plain.load_state_dict(vae.state_dict())
    torch.manual_seed(0)
    base, _ = plain(data.x[:16], data.y[:16])
    torch.testing.assert_close(total, base + 2.0 * logs["perceptual"], rtol=1e-5, atol=1e-6)
    total.backward()
    assert all(p.grad is None for p in body.parameters())  # the classifier stays frozen
    with pytest.raises(GenlabError, match="perceptual needs a classifier"):
        genlab.create("vae", genlab.load_dataset("moons"), perceptual=1.0)
