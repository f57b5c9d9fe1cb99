"""Diffusion as components: the denoiser, sampler and conditioner registries, nested options (create, --set,
YAML) and the flat keys of earlier versions, the schedule in continuous time against its discrete table and
closed forms, and the one posterior that the ddpm sampler steps with."""

import dataclasses
import json
import math

import pytest
import torch
from helpers import gaussian_posterior_on_a_grid, one_line_error

import genlab
from genlab.config import to_dict
from genlab.data.spec import DataSpec
from genlab.errors import GenlabError
from genlab.models import available
from genlab.models.diffusion import CONDITIONERS, DENOISERS, SAMPLERS, NoiseSchedule
from genlab.models.diffusion.conditioners import make_conditioner
from genlab.models.diffusion.samplers import DDPMSampler, Sampler, sampler_class, timesteps
from genlab.nn import build_denoiser
from genlab.nn.denoisers import denoiser_class


def vector_spec(d: int = 2, classes: int | None = None) -> DataSpec:
    return DataSpec(name="gauss", kind="vector", shape=(d,), num_classes=classes, mean=[0.0] * d, std=[1.0] * d)


def image_spec(classes: int | None = None) -> DataSpec:
    return DataSpec(name="img", kind="image", shape=(1, 8, 8), num_classes=classes)


def error_of(fn) -> str:
    with pytest.raises(GenlabError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# ---- registries
@pytest.mark.parametrize("name", list(DENOISERS))
def test_every_denoiser_has_one_signature_and_takes_real_t(name):
    shape = (1, 8, 8)
    torch.manual_seed(0)
    net = build_denoiser(name, shape, {}, make_conditioner("class", image_spec(3)).embedding()).eval()
    for p in net.parameters():  # residual branches and outputs start at zero
        torch.nn.init.normal_(p, std=0.2)
    x, t, y = torch.randn(4, *shape), torch.tensor([0, 5, 99, 999]), torch.tensor([0, 1, 2, 3])  # 3: no label
    with torch.no_grad():
        out = net(x, t, y)
        assert out.shape == x.shape and out.abs().sum() > 0
        assert torch.equal(net(x, t.double(), y), out)  # integer timesteps are real ones that happen to be whole
        assert not torch.equal(net(x, t + 0.5, y), out)
        assert not torch.equal(net(x, t, torch.full_like(y, 3)), out)
    cls = denoiser_class(name)
    assert dataclasses.is_dataclass(cls.Options) and isinstance(cls.images_only, bool) and cls.lr > 0


def test_unknown_names_list_the_registered_ones():
    spec = vector_spec()
    assert "arch must be auto or one of unet, mlp, dit, got 'vit'" in error_of(lambda: genlab.create("ddpm", spec,
                                                                                                      arch="vit"))
    assert "unknown denoiser 'vit': use one of unet, mlp, dit" in error_of(lambda: denoiser_class("vit"))
    assert "arch=dit needs image data" in error_of(lambda: genlab.create("ddpm", spec, net="dit"))
    for bad in (lambda: sampler_class("euler"), lambda: genlab.create("ddpm", spec, sampler="euler"),
                lambda: genlab.create("ddpm", spec, **{"sampler.name": "euler"}),
                lambda: genlab.create("ddpm", spec, hidden=(8,)).sample(2, sampler="euler")):
        assert "unknown sampler 'euler': use one of ddpm, ddim, dpm++" in error_of(bad)
    assert "use one of none, class, text" in error_of(lambda: make_conditioner("audio", spec))
    assert "arch=unet needs image data; gauss is vector data: use arch=mlp" in error_of(
        lambda: genlab.create("ddpm", spec, arch="unet"))


def test_sampler_registry_names_objects_with_timesteps_and_step():
    assert list(SAMPLERS) == ["ddpm", "ddim", "dpm++", "plms"]
    for name in SAMPLERS:
        s = sampler_class(name)(eta=0.5)
        assert isinstance(s, Sampler) and s.name == name
        assert s.timesteps(1000, 4) == timesteps(1000, 4) == [999, 749, 499, 249]
    assert [sampler_class(n)(eta=0.5).needs_noise for n in SAMPLERS] == [True, True, False, False]
    assert not sampler_class("ddim")(eta=0.0).needs_noise


def test_dpm_solver_keeps_the_last_x0_of_the_previous_timestep():
    """Its second-order step uses the previous timestep's x0_hat; a step repeated at the same level (RePaint's
    resampling) replaces that level's x0_hat instead of becoming its own "previous" step."""
    s = NoiseSchedule("cosine", 100)
    a, a2, a3 = (s.abar_at(t) for t in (99, 66, 33))
    x, x0_first, x0_last, x0_next = (torch.randn(5, 2, generator=torch.Generator().manual_seed(i)) for i in range(4))
    repeated, once = sampler_class("dpm++")(), sampler_class("dpm++")()
    repeated.step(x, x0_first, None, a, a2)
    first = repeated.step(x, x0_last, None, a, a2)
    assert torch.equal(first, once.step(x, x0_last, None, a, a2))  # both first order
    second = repeated.step(x, x0_next, None, a2, a3)
    assert torch.equal(second, once.step(x, x0_next, None, a2, a3))
    assert not torch.equal(second, sampler_class("dpm++")().step(x, x0_next, None, a2, a3))  # second order
    again = repeated.step(x, x0_first, None, a2, a3)  # RePaint's repeat of that step, after re-noising: first order
    assert torch.equal(again, sampler_class("dpm++")().step(x, x0_first, None, a2, a3))
    assert torch.equal(repeated.step(x, x0_next, None, a3, s.abar_at(0), final=True),
                       sampler_class("dpm++")().step(x, x0_next, None, a3, s.abar_at(0)))  # the last: first order


def test_class_conditioner_null_and_dropout():
    spec = vector_spec(classes=4)
    c, none = make_conditioner("class", spec), make_conditioner("none", spec)
    assert set(CONDITIONERS) == {"none", "class", "text"}
    y = torch.tensor([0, 3, 2, 1])
    assert torch.equal(c(y), y) and torch.equal(c.null(y), torch.full_like(y, 4))
    assert torch.equal(c.drop(y, 0.0), y) and torch.equal(c.drop(y, 1.0), torch.full_like(y, 4))
    assert c.embedding()(16).weight.shape == (5, 16)  # one row per class and the "no label" row
    assert none(y) is None and none.null(None) is None and none.embedding() is None
    model = genlab.create("ddpm", spec, conditional=True, hidden=(8,))
    assert model.conditioning == "class" and model.net.cond.label.weight.shape == (5, 8)


def test_mlp_denoiser_on_images_works_on_flattened_pixels():
    model = genlab.create("ddpm", image_spec(), arch="mlp", hidden=(16,), timesteps=20, sample_steps=2).eval()
    assert model.sample(3, seed=0, steps=2).shape == (3, 1, 8, 8)


# ---- nested options, the CLI and the flat keys of earlier versions
FLAT = {"channels": 8, "mults": (1, 2), "hidden": (16,), "dropout": 0.1, "sampler": "dpm++", "sample_steps": 7,
        "eta": 0.25, "guidance": 2.0}
NESTED = {"net": {"channels": 8, "mults": [1, 2], "dropout": 0.1},
          "sampler": {"name": "dpm++", "steps": 7, "eta": 0.25, "guidance": 2.0}}


def test_nested_dotted_and_flat_options_build_the_same_model():
    spec = image_spec(3)
    models = []
    for opts in (NESTED, FLAT, {"net.channels": 8, "net.mults": "[1, 2]", "net.dropout": 0.1, "sampler.name": "dpm++",
                                "sampler.steps": 7, "sampler.eta": 0.25, "sampler.guidance": 2.0}):
        torch.manual_seed(0)
        models.append(genlab.create("ddpm", spec, conditional=True, timesteps=50, **opts))
    configs = [to_dict(m.config) for m in models]
    assert configs[0] == configs[1] == configs[2]
    assert configs[0]["net"] == {"channels": 8, "mults": [1, 2], "res_blocks": 1, "attention": [], "dropout": 0.1}
    assert configs[0]["sampler"] == {"name": "dpm++", "steps": 7, "eta": 0.25, "guidance": 2.0}
    assert models[0].net.inp.out_channels == 8
    for a, b in zip(models[:-1], models[1:]):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    # the sampler section is what sample() does when not told otherwise
    m = models[0].eval()
    assert torch.equal(m.sample(3, seed=1), m.sample(3, seed=1, sampler="dpm++", steps=7, guidance=2.0))
    assert m.generate(3, seed=1).cost.nfe == 14
    # a later key wins: a dotted key over its section's dict, a flat key over both
    later = genlab.create("ddpm", spec, net={"channels": 8, "mults": [1]}, **{"net.channels": 16}, channels=24)
    assert later.config.net["channels"] == 24 and later.config.net["mults"] == (1,)


def test_nested_option_errors_name_the_section():
    spec = image_spec()
    msg = error_of(lambda: genlab.create("ddpm", spec, **{"net.chanels": 8}))
    assert "unknown ddpm unet option 'net.chanels': did you mean 'net.channels'?" in msg
    assert "unknown ddpm unet option 'net.hidden'" in error_of(lambda: genlab.create("ddpm", spec, net={"hidden": [8]}))
    assert "unknown ddpm option 'sampler.etaa': did you mean 'sampler.eta'?" in error_of(
        lambda: genlab.create("ddpm", spec, sampler={"etaa": 0.5}))
    assert "unknown ddpm option 'nett': did you mean 'net'?" in error_of(lambda: genlab.create("ddpm", spec,
                                                                                                **{"nett.x": 1}))
    assert "has no sub-options" in error_of(lambda: genlab.create("ddpm", spec, **{"timesteps.x": 1}))
    assert "channels must be >= 8" in error_of(lambda: genlab.create("ddpm", spec, **{"net.channels": 4}))
    assert "eta must be in [0, 1]" in error_of(lambda: genlab.create("ddpm", spec, **{"sampler.eta": 2}))
    assert "sampler.steps must be between 1 and timesteps (10)" in error_of(
        lambda: genlab.create("ddpm", spec, timesteps=10, sample_steps=11))
    # a flat key of the denoiser not in use was always accepted and checked, and is still
    assert genlab.create("ddpm", vector_spec(), channels=64, hidden=(8,)).config.net == {
        "hidden": (8,), "fourier": 8, "act": "silu"}
    assert "channels must be >= 8" in error_of(lambda: genlab.create("ddpm", vector_spec(), channels=4))


def test_models_listing_shows_nested_options_with_defaults():
    opts = next(m for m in available() if m["kind"] == "ddpm")["options"]
    assert opts["net.channels"] == 32 and opts["net.hidden"] == (256, 256, 256) and opts["arch"] == "auto"
    assert opts["sampler.name"] == "ddim" and opts["sampler.steps"] == 50 and opts["sampler.eta"] == 0.0
    assert not any(k in opts for k in ("net", "sampler", "channels", "sample_steps"))


def test_cli_set_nested_and_flat_keys(cli, tmp_path):
    base = ["--data", "digits", "--set", "timesteps=20", "--steps", "2", "--batch-size", "16", "--no-progress"]

    def train(name: str, *args: str):
        code, _, err = cli("train", "ddpm", *base, *args, "--out", tmp_path / name)
        assert code == 0, err
        return tmp_path / name

    nested = train("nested", "--set", "net.channels=8", "--set", "net.mults=[1,2]", "--set", "sampler.steps=3",
                   "--set", "model.sampler.name=ddpm")
    flat = train("flat", "--set", "channels=8", "--set", "mults=[1,2]", "--set", "sample_steps=3", "--set",
                 "sampler=ddpm")
    (tmp_path / "c.yaml").write_text("model:\n  net: {channels: 8, mults: [1, 2]}\n  sampler: {name: ddpm, steps: 3}\n")
    from_yaml = train("yaml", "--config", tmp_path / "c.yaml")
    configs = [json.loads((r / "config.json").read_text())["config"] for r in (nested, flat, from_yaml)]
    assert configs[0] == configs[1] == configs[2]
    assert configs[0]["net"]["channels"] == 8 and configs[0]["sampler"] == {"name": "ddpm", "steps": 3, "eta": 0.0,
                                                                            "guidance": 1.0}
    code, _, err = cli("sample", nested, "--n", "2", "--out", tmp_path / "s.npz")
    assert code == 0, err
    base += ["--set", "sampler.steps=3"]
    one_line_error(*cli("train", "ddpm", *base, "--set", "net.chanels=8")[::2],
                   "unknown ddpm unet option 'net.chanels': did you mean 'net.channels'?")
    one_line_error(*cli("train", "ddpm", *base, "--set", "sampler.bogus=1")[::2], "unknown ddpm option 'sampler.bogus'")


# the "config" of a run's config.json as genlab wrote it before the components (flat keys, every option)
OLD_CONFIG = {"timesteps": 40, "schedule": "cosine", "target": "v", "min_snr": 0.0, "arch": "auto", "channels": 8,
              "mults": [1, 2], "res_blocks": 1, "attention": [], "dropout": 0.0, "hidden": [256, 256, 256],
              "fourier": 8, "act": "silu", "conditional": True, "p_uncond": 0.1, "sampler": "dpm++",
              "sample_steps": 4, "eta": 0.0, "guidance": 2.0, "clip": True}
# the names of the weights such a run saved
OLD_NAMES = ["net.cond.mlp.0.weight", "net.cond.mlp.0.bias", "net.cond.mlp.2.weight", "net.cond.mlp.2.bias",
             "net.cond.label.weight", "net.inp.weight", "net.inp.bias", "net.down.0.0.norm1.weight"]


def test_a_run_saved_with_flat_keys_still_loads(tmp_path):
    spec = image_spec(10)
    torch.manual_seed(0)
    model = genlab.create("ddpm", spec, **OLD_CONFIG).eval()
    assert list(model.state_dict())[: len(OLD_NAMES)] == OLD_NAMES
    model.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["config"]["net"]["channels"] == 8 and "channels" not in meta["config"]
    meta["config"] = OLD_CONFIG
    (tmp_path / "run" / "config.json").write_text(json.dumps(meta))
    again = genlab.load(tmp_path / "run")
    assert to_dict(again.config) == to_dict(model.config)
    assert torch.equal(again.sample(4, seed=2), model.sample(4, seed=2))


# ---- the schedule in continuous time
@pytest.mark.parametrize("kind", ["linear", "cosine", "sigmoid"])
@pytest.mark.parametrize("T", [50, 1000])
def test_continuous_time_is_the_discrete_table_at_the_knots(kind, T):
    s = NoiseSchedule(kind, T)
    u = torch.arange(1, T + 1, dtype=torch.float64) / T  # u = (t+1)/T
    alpha, sigma = s.alpha_sigma(u)
    torch.testing.assert_close(alpha**2, s.alphas_cumprod, rtol=1e-12, atol=0)
    torch.testing.assert_close(sigma**2, 1 - s.alphas_cumprod, rtol=1e-12, atol=0)
    torch.testing.assert_close(s.log_snr(u), (s.alphas_cumprod / (1 - s.alphas_cumprod)).log(), rtol=1e-12, atol=0)
    assert s.log_snr(0.0).item() == math.inf and s.alpha_sigma(0.0)[1].item() == 0
    grid = torch.linspace(0, 1, 5001, dtype=torch.float64)
    alpha, sigma = s.alpha_sigma(grid)
    lam = s.log_snr(grid)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(grid), rtol=0, atol=1e-15)
    assert (lam.diff() < 0).all()
    torch.testing.assert_close(lam[1:], 2 * (alpha[1:] / sigma[1:]).log(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s.sigma_ve(grid[1:]), sigma[1:] / alpha[1:], rtol=1e-12, atol=0)
    # between knots: beta constant over each step, abar(u) = abar_{t-1} (abar_t / abar_{t-1})^w at u = (t + w)/T
    t, w = 7, 0.3
    expected = s.alphas_cumprod[t - 1] * (s.alphas_cumprod[t] / s.alphas_cumprod[t - 1]) ** w
    assert s.alpha_sigma((t + w) / T)[0].item() ** 2 == pytest.approx(expected.item(), rel=1e-12)


def closed_form_abar(kind: str, u: torch.Tensor) -> torch.Tensor:
    """abar(u) of Nichol & Dhariwal 2021 (cosine, s = 0.008) and of Jabri et al. 2022 (sigmoid, -3..3, tau 1)."""
    if kind == "cosine":
        f = lambda v: torch.cos((v + 0.008) / 1.008 * math.pi / 2) ** 2
        return f(u) / f(torch.zeros((), dtype=torch.float64))
    v0, v1 = torch.sigmoid(torch.tensor([-3.0, 3.0], dtype=torch.float64))
    return (v1 - torch.sigmoid(u * 6 - 3)) / (v1 - v0)


@pytest.mark.parametrize("kind", ["cosine", "sigmoid"])
def test_continuous_time_follows_the_closed_form(kind):
    """Exact at the knots but the last (whose beta was clipped at 0.999), O(1/T^2) between them."""
    s = NoiseSchedule(kind, 1000)
    knots = torch.arange(1, 1000, dtype=torch.float64) / 1000
    torch.testing.assert_close(s.alpha_sigma(knots)[0] ** 2, closed_form_abar(kind, knots), rtol=1e-12, atol=0)
    for top, rel in ((0.5, 5e-6), (0.9, 1e-4)):
        u = torch.linspace(0, top, 4001, dtype=torch.float64)
        torch.testing.assert_close(s.alpha_sigma(u)[0] ** 2, closed_form_abar(kind, u), rtol=rel, atol=0)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_t_from_log_snr_inverts_log_snr_over_the_consistency_range(kind):
    s = NoiseSchedule(kind, 1000)
    u = torch.cat([torch.tensor([0.0, 1e-7, 1.0], dtype=torch.float64), torch.rand(500, dtype=torch.float64)])
    torch.testing.assert_close(s.t_from_log_snr(s.log_snr(u)), u, rtol=0, atol=1e-12)
    sigmas = torch.tensor([0.002, 0.1, 1.0, 10.0, 80.0], dtype=torch.float64)  # Song et al. 2023's range
    u = s.t_from_log_snr(-2 * sigmas.log())
    assert ((u > 0) & (u < 1)).all() and (u.diff() > 0).all()
    torch.testing.assert_close(s.sigma_ve(u), sigmas, rtol=1e-10, atol=0)
    assert "noisier than this schedule reaches" in error_of(lambda: s.t_from_log_snr(s.log_snr(1.0) - 1))
    assert "continuous time must be in [0, 1]" in error_of(lambda: s.log_snr(1.5))


# ---- one posterior
@pytest.mark.parametrize("steps", [1, 10, 1000])
def test_ddpm_sampler_steps_with_the_schedules_posterior_on_the_respaced_chain(steps):
    s = NoiseSchedule("cosine", 1000)
    ts = timesteps(1000, steps)
    pairs = list(zip(ts, ts[1:])) + [(ts[-1], 0 if ts[-1] > 0 else -1)]
    g = torch.Generator().manual_seed(0)
    sampler = DDPMSampler()
    for t, s_ in pairs[:: max(1, len(pairs) // 25)] + pairs[-2:]:
        x0, xt, z = (torch.randn(6, 3, generator=g, dtype=torch.float64) for _ in range(3))
        mean, var = s.posterior(x0, xt, torch.full((6,), t), torch.full((6,), s_))
        got = sampler.step(xt, x0, None, s.abar_at(t), s.abar_at(s_), z)
        torch.testing.assert_close(got, mean + var.sqrt() * z, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(sampler.step(xt, x0, None, s.abar_at(t), s.abar_at(s_), torch.zeros_like(z)),
                                   mean, rtol=1e-12, atol=1e-14)


def test_respaced_posterior_matches_bayes_rule_on_a_grid():
    """q(x_s | x_t, x0) ∝ q(x_t | x_s) q(x_s | x0), with q(x_t | x_s) = N(sqrt(a_t / a_s) x_s, 1 - a_t / a_s)."""
    s = NoiseSchedule("linear", 1000)
    t, s_ = 600, 350
    x0, xt = torch.tensor([0.7], dtype=torch.float64), torch.tensor([-0.4], dtype=torch.float64)
    mean, var = s.posterior(x0, xt, torch.tensor([t]), torch.tensor([s_]))
    a_t, a_s = s.abar_at(t), s.abar_at(s_)
    m, v = gaussian_posterior_on_a_grid(xt.item(), x0.item(), a_t / a_s, a_s)
    assert mean.item() == pytest.approx(m, abs=1e-7)
    assert var.item() == pytest.approx(v, rel=1e-5)


def test_self_attention_heads_divide_any_width_and_equal_a_direct_computation():
    from genlab.nn.blocks import Attention

    torch.manual_seed(0)
    for c, heads in ((100, 2), (96, 3), (64, 2), (16, 1)):
        att = Attention(c)
        torch.nn.init.normal_(att.proj.weight, std=0.1)  # zero at init: give the attention a say
        x = torch.randn(2, c, 3, 4)
        assert att.heads == heads and c % att.heads == 0
        q, k, v = att.qkv(att.norm(x)).flatten(2).chunk(3, dim=1)  # (2, c, 12) each
        outs = []
        for h in range(heads):  # each head by hand: softmax(q k^T / sqrt(d)) v over the 12 positions
            s = slice(h * c // heads, (h + 1) * c // heads)
            w = torch.softmax(q[:, s].transpose(1, 2) @ k[:, s] / (c // heads) ** 0.5, dim=-1)
            outs.append((w @ v[:, s].transpose(1, 2)).transpose(1, 2))
        want = x + att.proj(torch.cat(outs, 1).view(2, c, 3, 4))
        assert torch.allclose(att(x), want, atol=1e-5)
