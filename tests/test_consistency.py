"""Consistency models: the boundary condition, the noise-level bookkeeping against the ddpm's own tables, and
distillation / training from scratch on real data measured against the teacher's ODE."""

from __future__ import annotations

import pytest
import torch

import genlab
from genlab.errors import CapabilityError, GenlabError
from genlab.models.diffusion.consistency import karras_sigmas

SMALL_UNET = {"net.channels": 16, "net.mults": (1, 2)}


@pytest.mark.parametrize("data,opts", [("digits", SMALL_UNET), ("digits", {"net": "dit", "net.dim": 32,
                                                                           "net.depth": 1}), ("moons", {})])
def test_boundary_condition_is_exact(data, opts):
    spec = genlab.load_dataset(data).spec
    torch.manual_seed(0)
    model = genlab.create("consistency", spec, **opts)
    for p in model.net.parameters():  # a network that is far from the identity
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(6, *spec.shape)
    eps = torch.full((6,), model.config.sigma_min, dtype=torch.float64)
    assert torch.equal(model.consistency(x, eps), x)
    assert (model.consistency(x, eps * 100) - x).abs().max() > 1e-3


def test_karras_levels():
    s = karras_sigmas(18, 0.002, 80.0, 7.0)
    assert float(s[0]) == pytest.approx(0.002, rel=1e-12) and float(s[-1]) == pytest.approx(80.0, rel=1e-12)
    assert bool((s[1:] > s[:-1]).all())
    assert torch.allclose(karras_sigmas(5, 1.0, 5.0, 1.0), torch.linspace(1, 5, 5, dtype=torch.float64))


def test_the_denoiser_at_a_noise_level_is_the_ddpm_prediction_at_its_timestep():
    spec = genlab.load_dataset("digits").spec
    torch.manual_seed(0)
    model = genlab.create("ddpm", spec, **SMALL_UNET).eval()
    for p in model.net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    t = torch.tensor([0, 10, 250, 999])
    a = model.schedule.alphas_cumprod[t]
    sigma = ((1 - a) / a).sqrt()  # the variance-exploding level of each integer timestep
    assert torch.allclose(model.net_time(sigma), t.float(), atol=1e-3)
    x0, z = torch.randn(4, *spec.shape), torch.randn(4, *spec.shape)
    x_vp = model.schedule.q_sample(x0, t, z)
    with torch.no_grad():
        ref = model.denoiser(None, 1.0, clip=False)(x_vp, t)[0]  # the sampler's path, on the abar table
        ve = model.denoised(x_vp / a.sqrt().float().view(-1, 1, 1, 1), sigma)
    assert torch.allclose(ve, ref, atol=1e-4), (ve - ref).abs().max()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("ddpm", data.spec, **SMALL_UNET)
    path = tmp_path_factory.mktemp("cm") / "teacher"
    genlab.train(model, data, steps=400, batch_size=64, out=path, progress=False, precision="fp32", sample_every=400)
    return path


def _gap_to_teacher(student, teacher, n=64):
    """Mean squared distance between the student's one-step samples and the teacher's DDIM-50 ODE solutions from
    the same starting noise (the same seed draws the same z)."""
    return float((student.sample(n, seed=3, steps=1) - teacher.sample(n, seed=3, sampler="ddim", steps=50))
                 .pow(2).mean())


@pytest.mark.slow  # 46 s; docs/BENCHMARKS.md §26 measures distillation on Fashion-MNIST, the contract test trains it
def test_distillation_brings_one_step_samples_to_the_teachers_ode(teacher, tmp_path):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    student = genlab.create("consistency", data.spec, teacher=str(teacher))
    t = genlab.load(teacher)
    assert student.arch == t.arch and student.config.net == t.config.net  # built as the teacher, from its weights
    before = _gap_to_teacher(student.eval(), t)
    run = genlab.train(student, data, steps=300, batch_size=64, out=tmp_path / "cd", progress=False,
                       precision="fp32")
    after = _gap_to_teacher(genlab.load(run.path), t)
    print("gap to the teacher ODE", before, after)
    assert after < 0.6 * before, (before, after)
    s = genlab.load(run.path).generate(8, seed=0, steps=2)
    assert s.cost.nfe == 2 and s.x.shape == (8, 1, 8, 8) and torch.isfinite(s.x).all()


@pytest.mark.slow  # 40 s; the contract test trains consistency training for two steps in the default run
def test_consistency_training_from_scratch_moves_samples_towards_the_data(tmp_path):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("consistency", data.spec, ct_horizon=300, **SMALL_UNET)

    def nearest(m):  # mean distance of one-step samples to their nearest training image
        s = m.sample(64, seed=1, steps=1).flatten(1)
        return float(torch.cdist(s, data.x.flatten(1)).min(1).values.mean())

    before = nearest(model.eval())
    run = genlab.train(model, data, steps=400, batch_size=64, out=tmp_path / "ct", progress=False,
                       precision="fp32")
    assert run.history[-1]["levels"] == 151.0  # N grew from 2 to s1 + 1 over the horizon
    after = nearest(genlab.load(run.path))
    print("nearest-image distance of one-step samples", before, after)
    assert after < 0.7 * before, (before, after)  # grey images at the start


def test_errors_are_one_line(tmp_path):
    data = genlab.load_dataset("digits")
    vae = genlab.create("vae", data.spec)
    genlab.train(vae, data, steps=1, batch_size=8, out=tmp_path / "vae", progress=False)
    with pytest.raises(GenlabError, match="needs a ddpm teacher; .* is a vae run"):
        genlab.create("consistency", data.spec, teacher=str(tmp_path / "vae"))
    with pytest.raises(GenlabError, match="teacher=.* cannot be loaded"):
        genlab.create("consistency", data.spec, teacher=str(tmp_path / "nowhere"))
    model = genlab.create("consistency", data.spec, **SMALL_UNET)
    with pytest.raises(GenlabError, match="steps must be >= 1"):
        model.sample(2, steps=0)
    with pytest.raises(CapabilityError, match="consistency has no inpaint"):
        model.inpaint(data.x[:1], torch.zeros(8, 8))
