"""Progressive distillation (kind `progressive`): the target against DDIM's own steps, the nesting of the step
grids, the round schedule, and a student that takes in N steps what its teacher takes in 2N."""

import pytest
import torch

import genlab
from genlab.errors import GenlabError
from genlab.models.diffusion.progressive import ddim_step, distillation_target
from genlab.models.diffusion.samplers import DDIMSampler, timesteps


@pytest.mark.parametrize("T", [1000, 100, 37])
def test_the_2n_step_grid_refines_the_n_step_grid(T):
    for n in (1, 2, 4, 8, 16):
        if 2 * n <= T:
            assert timesteps(T, 2 * n)[::2] == timesteps(T, n)


def test_one_ddim_step_to_the_target_lands_on_two_teacher_steps():
    g = torch.Generator().manual_seed(0)
    z_t, x0_a, x0_b = (torch.randn(4, 3, generator=g) for _ in range(3))
    a_t, a_m, a_s = 0.2, 0.5, 0.9
    ddim = DDIMSampler(eta=0.0)
    eps = lambda z, x0, a: (z - a ** 0.5 * x0) / (1 - a) ** 0.5  # the eps consistent with x0 at z
    z_m = ddim.step(z_t, x0_a, eps(z_t, x0_a, a_t), a_t, a_m)
    z_s = ddim.step(z_m, x0_b, eps(z_m, x0_b, a_m), a_m, a_s)
    x_tilde = distillation_target(z_t, z_s, a_t, a_s)
    one = ddim.step(z_t, x_tilde, eps(z_t, x_tilde, a_t), a_t, a_s)
    torch.testing.assert_close(one, z_s, rtol=1e-5, atol=1e-5)
    tens = lambda v: torch.full((4, 1), v)
    torch.testing.assert_close(ddim_step(z_t, x0_a, eps(z_t, x0_a, a_t), tens(a_t), tens(a_m)), z_m)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    data = genlab.load_dataset("gaussians8")
    torch.manual_seed(0)
    model = genlab.create("ddpm", data, hidden=(128, 128, 128))
    out = tmp_path_factory.mktemp("runs") / "teacher"
    genlab.train(model, data, steps=600, out=out, batch_size=256, progress=False, sample_every=600)
    return out


def test_rounds_halve_the_steps_and_hand_the_student_over(teacher):
    data = genlab.load_dataset("gaussians8")
    m = genlab.create("progressive", data, teacher=str(teacher), start_steps=8, min_steps=2, round_steps=100)
    assert [m.round_at(s) for s in (0, 99, 100, 199, 200, 10_000)] == [0, 0, 1, 1, 1, 1]
    assert [m.student_steps(k) for k in (0, 1)] == [4, 2] and int(m.distilled_steps) == 4
    x, y = data.x[:32], None
    with torch.no_grad():
        for p in m.net.parameters():
            p.add_(0.01)  # the student moved away from its teacher
    loss, logs = m(x, y, step=150)
    assert int(m.round) == 1 and int(m.distilled_steps) == 2 and logs["student_steps"] == 2
    for k, v in m.round_teacher.state_dict().items():
        assert torch.equal(v, m.net.state_dict()[k])  # the student became the teacher


def test_student_in_n_steps_matches_its_teacher_in_2n(teacher, tmp_path):
    """After one round the student's 4 DDIM steps land much closer to the teacher's 8-step samples (same noise)
    than the teacher's own 4 steps do."""
    data = genlab.load_dataset("gaussians8")
    torch.manual_seed(0)
    student = genlab.create("progressive", data, teacher=str(teacher), start_steps=8, min_steps=4, round_steps=500)
    genlab.train(student, data, steps=500, out=tmp_path / "pd", batch_size=256, progress=False, sample_every=500)
    student = genlab.load(tmp_path / "pd")
    assert int(student.distilled_steps) == 4
    t = genlab.load(teacher)
    ref = t.sample(2000, seed=1, sampler="ddim", steps=8)
    err = lambda x: (x - ref).pow(2).sum(1).mean().sqrt().item()
    e_student, e_teacher = err(student.sample(2000, seed=1)), err(t.sample(2000, seed=1, sampler="ddim", steps=4))
    assert e_student < 0.5 * e_teacher, (e_student, e_teacher)  # measured 0.053 against 0.219


def test_bad_configs(teacher, tmp_path):
    data = genlab.load_dataset("gaussians8")
    with pytest.raises(GenlabError, match="needs teacher=RUN"):
        genlab.create("progressive", data)
    with pytest.raises(GenlabError, match="power of two"):
        genlab.create("progressive", data, teacher=str(teacher), start_steps=6)
    with pytest.raises(GenlabError, match="min_steps must be a power of two"):
        genlab.create("progressive", data, teacher=str(teacher), start_steps=8, min_steps=8)
    vae = tmp_path / "vae"
    genlab.train(genlab.create("vae", data), data, steps=2, out=vae, progress=False)
    with pytest.raises(GenlabError, match="needs a ddpm teacher"):
        genlab.create("progressive", data, teacher=str(vae))
