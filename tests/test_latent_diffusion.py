"""DiT (patchify, AdaLN-Zero) and latent diffusion (ldm): checked against independent computations, trained on
real data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import genlab
from genlab.errors import CapabilityError, GenlabError
from genlab.nn.dit import DiT, DiTOptions, patchify, unpatchify
from genlab.nn.transformer import Block


def test_patchify_round_trip_and_agrees_with_unfold():
    x = torch.randn(3, 2, 6, 10)
    tokens = patchify(x, 2)
    assert tokens.shape == (3, 15, 8)
    assert torch.equal(unpatchify(tokens, 2, (2, 6, 10)), x)
    ref = F.unfold(x, 2, stride=2).transpose(1, 2)  # (B, T, C*p*p), each patch flattened as (C, p, p)
    mine = tokens.view(3, 15, 2, 2, 2).permute(0, 1, 4, 2, 3).reshape(3, 15, 8)  # (p, p, C) -> (C, p, p)
    assert torch.equal(mine, ref)


def test_adaln_zero_blocks_are_the_identity_at_initialisation():
    torch.manual_seed(0)
    block = Block(32, 4, causal=False, cond=16)
    x, c = torch.randn(5, 7, 32), torch.randn(5, 16)
    assert torch.equal(block(x, c), x)
    torch.nn.init.normal_(block.ada[1].weight, std=0.1)  # once the modulation learns, the block acts
    assert (block(x, c) - x).abs().max() > 1e-2
    net = DiT((1, 8, 8), DiTOptions(patch=2, dim=32, depth=2))
    assert torch.equal(net(torch.randn(4, 1, 8, 8), torch.tensor([0, 5, 50, 999])), torch.zeros(4, 1, 8, 8))


def test_dit_refuses_patches_that_do_not_tile_the_image():
    with pytest.raises(GenlabError, match="cannot be cut into 3x3 patches"):
        genlab.create("ddpm", genlab.load_dataset("digits").spec, net="dit", **{"net.patch": 3})
    with pytest.raises(GenlabError, match="net.dim .* divisible by net.heads"):
        genlab.create("ddpm", genlab.load_dataset("digits").spec, arch="dit", **{"net.dim": 30})


def test_dit_denoiser_trains_on_digits(tmp_path):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("ddpm", data.spec, net="dit", conditional=True, **{"net.dim": 64, "net.depth": 2})
    assert model.arch == "dit" and model.config.net["patch"] == 2
    run = genlab.train(model, data, steps=300, batch_size=64, out=tmp_path / "dit", progress=False,
                       precision="fp32", sample_every=300)
    first = sum(r["loss"] for r in run.history[:3]) / 3
    last = sum(r["loss"] for r in run.history[-3:]) / 3
    assert last < 0.7 * first, (first, last)
    s = genlab.load(run.path).sample(10, seed=0, steps=20, guidance=2.0)
    assert s.shape == (10, 1, 8, 8) and torch.isfinite(s).all()


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    vae = genlab.create("vae", data.spec, channels=(32,), latent_channels=4)
    path = tmp_path_factory.mktemp("ldm") / "vae"
    genlab.train(vae, data, steps=300, batch_size=64, out=path, progress=False, precision="fp32")
    return path


def test_spatial_vae_latents(first_stage):
    vae = genlab.load(first_stage)
    assert vae.latent_shape == (4, 4, 4) and vae.config.latent_dim == 64
    x = genlab.load_dataset("digits").x[:16]
    z = vae.to_latent(x)
    assert z.shape == (16, 4, 4, 4)
    assert torch.equal(z.flatten(1), vae.encode(x))
    assert torch.equal(vae.from_latent(z), vae.decode(vae.encode(x)))


def test_ldm_scales_codes_to_unit_variance_trains_and_decodes(first_stage, tmp_path):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("ldm", data.spec, first_stage=str(first_stage), **{"net.dim": 64, "net.depth": 2})
    assert model.arch == "dit" and model.space.shape == (4, 4, 4)
    run = genlab.train(model, data, steps=300, batch_size=64, out=tmp_path / "ldm", progress=False,
                       precision="fp32", sample_every=300)
    codes = genlab.load(first_stage).to_latent(data.x)  # every training image, not only the first batch
    assert abs(float(model.latent_scale) * float(codes.std()) - 1) < 0.05
    first = sum(r["loss"] for r in run.history[:3]) / 3
    last = sum(r["loss"] for r in run.history[-3:]) / 3
    assert last < 0.8 * first, (first, last)

    loaded = genlab.load(run.path)
    assert float(loaded.latent_scale) == float(model.latent_scale)
    assert loaded.config.first_stage == str(first_stage.resolve()) and loaded.components["first_stage"]["kind"] == "vae"
    s = loaded.sample(16, seed=0, steps=20)
    assert s.shape == (16, 1, 8, 8) and torch.isfinite(s).all()
    assert torch.equal(s, loaded.sample(16, seed=0, steps=20))
    with pytest.raises(CapabilityError, match="ldm has no inpaint"):
        loaded.inpaint(data.x[:2], torch.zeros(8, 8))


def test_ldm_errors_are_one_line(first_stage, tmp_path):
    data = genlab.load_dataset("digits")
    with pytest.raises(GenlabError, match="--set first_stage=RUN_DIR"):
        genlab.create("ldm", data.spec)
    ddpm = genlab.create("ddpm", data.spec, **{"net.channels": 8, "net.mults": (1,)})
    genlab.train(ddpm, data, steps=1, batch_size=8, out=tmp_path / "ddpm", progress=False)
    with pytest.raises(GenlabError, match="is a ddpm run"):
        genlab.create("ldm", data.spec, first_stage=str(tmp_path / "ddpm"))
    with pytest.raises(GenlabError, match="first stage models 1x8x8 data"):
        genlab.create("ldm", genlab.load_dataset("mnist5k").spec, first_stage=str(first_stage))
    with pytest.raises(GenlabError, match="component first_stage=.* cannot be loaded"):
        genlab.create("ldm", data.spec, first_stage=str(tmp_path / "nowhere"))
