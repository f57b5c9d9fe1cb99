"""GAN formulas and training protocol against independent computations."""

import json

import numpy as np
import pytest
import torch

import genlab
from genlab.data.spec import DataSpec
from genlab.errors import GenlabError
from genlab.models.gan import LOSSES, d_loss, diff_augment, g_loss, input_gradient_norm, ortho_penalty, truncated_normal


def vector_spec(d=2, classes=None):
    return DataSpec(name="v", kind="vector", shape=(d,), num_classes=classes, mean=[0.0] * d, std=[1.0] * d)


def test_saturating_vs_non_saturating_gradients_when_d_rejects_fakes():
    """Goodfellow et al. 2014: when D(G(z)) -> 0 the minimax generator loss log(1 - D) has a vanishing
    gradient, while the non-saturating -log D keeps a gradient of magnitude ~1 (per logit)."""
    for logit in (-5.0, -10.0, -20.0):
        f = torch.tensor([logit], requires_grad=True)
        (gm,) = torch.autograd.grad(g_loss("minimax", f), f)
        (gn,) = torch.autograd.grad(g_loss("ns", f), f)
        d = torch.sigmoid(torch.tensor(logit))
        assert gm.item() == pytest.approx(-d.item(), rel=1e-5)  # d/df log(1 - sigmoid(f)) = -sigmoid(f)
        assert gn.item() == pytest.approx(-(1 - d).item(), rel=1e-5)  # d/df -log sigmoid(f) = -(1 - sigmoid(f))
        assert abs(gm.item()) < 1e-2 and abs(gn.item()) > 0.99


def test_losses_at_known_points():
    r, f = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    bce = lambda x, t: torch.nn.functional.binary_cross_entropy_with_logits(x, torch.full_like(x, t))
    assert d_loss("ns", r, f).item() == pytest.approx((bce(r, 1.0) + bce(f, 0.0)).item())
    assert d_loss("ns", r, f, 0.1).item() == pytest.approx((bce(r, 0.9) + bce(f, 0.0)).item())
    hinge = (1 - r).clamp(min=0).mean() + (1 + f).clamp(min=0).mean()
    assert d_loss("hinge", r, f).item() == pytest.approx(hinge.item())
    assert d_loss("wgan-gp", r, f).item() == pytest.approx((f.mean() - r.mean()).item())
    assert d_loss("lsgan", r, f).item() == pytest.approx((0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean()).item())
    assert g_loss("lsgan", f).item() == pytest.approx((0.5 * ((f - 1) ** 2).mean()).item())


def test_gradient_penalty_norm_matches_finite_differences():
    torch.manual_seed(0)
    model = genlab.create("gan", vector_spec(3), loss="wgan-gp", hidden=(16, 16)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    norms = input_gradient_norm(model.D, x, None)
    h = 1e-6
    for i in range(4):
        grad = torch.zeros(3, dtype=torch.float64)
        for j in range(3):
            e = torch.zeros_like(x)
            e[i, j] = h
            grad[j] = (model.D(x + e)[0][i] - model.D(x - e)[0][i]) / (2 * h)
        assert norms[i].item() == pytest.approx(grad.norm().item(), rel=1e-6)


def test_spectral_norm_is_one_after_power_iterations():
    torch.manual_seed(0)
    model = genlab.create("gan", genlab.load_dataset("digits").spec, spectral_norm=True, channels=(32, 16))
    model.train()
    x = torch.randn(8, 1, 8, 8)
    for _ in range(30):  # each forward in training mode runs one power iteration per layer
        model.D(x)
    model.eval()
    convs = [m for m in model.D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert convs
    for m in convs:
        w = m.weight.reshape(m.weight.shape[0], -1)  # SN's matrix view of the (normalised) weight
        assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.02)


def test_trainer_runs_n_critic_d_steps_per_g_step(tmp_path):
    data = genlab.load_dataset("gaussians8")
    model = genlab.create("gan", data, loss="wgan-gp", hidden=(16,))
    assert model.phases == (("discriminator", 5), ("generator", 1))
    calls = {"discriminator": 0, "generator": 0}
    forward = model.forward

    def counting(x, y, phase="discriminator", step=0):
        calls[phase] += 1
        return forward(x, y, phase, step)

    model.forward = counting
    genlab.train(model, data, steps=7, out=tmp_path / "run", batch_size=32, progress=False)
    assert calls == {"discriminator": 35, "generator": 7}
    assert genlab.create("gan", data, loss="hinge", n_critic=3).phases[0] == ("discriminator", 3)


def test_wgan_clips_weights_and_ttur_scales_the_d_lr(tmp_path):
    data = genlab.load_dataset("gaussians8")
    model = genlab.create("gan", data, loss="wgan", clip=0.01, hidden=(16,), d_lr_ratio=4.0)
    genlab.train(model, data, steps=3, out=tmp_path / "run", batch_size=32, progress=False, lr=1e-3)
    assert max(p.abs().max().item() for p in model.D.parameters()) <= 0.01 + 1e-9
    from genlab.training.trainer import TrainConfig, Trainer

    tr = Trainer(model, data, TrainConfig(steps=1, lr=1e-3, warmup_steps=0, schedule="constant"), tmp_path / "r2",
                 {"name": "gaussians8"}, resume=False)
    tr.train_step()
    assert tr.optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(4e-3)
    assert tr.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_trains_a_step_and_samples(loss, tmp_path):
    data = genlab.load_dataset("digits")
    model = genlab.create("gan", data, loss=loss, channels=(16, 8), minibatch_std=True, pac=2,
                          conditional=True, feature_matching=1.0, diffaugment="translation,cutout,color")
    genlab.train(model, data, steps=2, out=tmp_path / "run", batch_size=16, progress=False)
    x = genlab.load(tmp_path / "run").sample(10, seed=0, labels=3)
    assert x.shape == (10, 1, 8, 8) and x.abs().max() <= 1


def test_diffaugment_is_differentiable_and_translation_shifts():
    x = torch.arange(64.0).reshape(1, 1, 8, 8).requires_grad_(True)
    torch.manual_seed(0)
    out = diff_augment(x, "translation")
    out.sum().backward()
    assert x.grad is not None
    shifted = [torch.equal(out[0, 0, 1:-1, 1:-1], x[0, 0].roll((dy, dx), (0, 1))[1:-1, 1:-1])
               for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert any(shifted)


def test_gan_bad_inputs():
    with pytest.raises(GenlabError, match="loss must be one of"):
        genlab.create("gan", vector_spec(), loss="wasserstein")
    with pytest.raises(GenlabError, match="diffaugment is for images"):
        genlab.create("gan", vector_spec(), diffaugment="translation")
    with pytest.raises(GenlabError, match="pac=3 needs a batch size divisible by 3"):
        genlab.create("gan", vector_spec(), pac=3)(torch.randn(8, 2), None)
    with pytest.raises(GenlabError, match=r"drs is a percentile in \[0, 100\)"):
        genlab.create("gan", vector_spec()).sample(4, drs=100)
    with pytest.raises(GenlabError, match="drs needs an unconditional GAN with pac=1"):
        genlab.create("gan", vector_spec(classes=3), conditional=True).sample(4, drs=80)
    with pytest.raises(GenlabError, match="drs needs an unconditional GAN with pac=1"):
        genlab.create("gan", vector_spec(), pac=2).sample(4, drs=80)
    with pytest.raises(GenlabError, match="fourier features are for the MLP discriminator"):
        genlab.create("gan", genlab.load_dataset("digits").spec, fourier=4)


def test_fourier_discriminator_sees_sin_and_cos_of_its_packed_input():
    model = genlab.create("gan", vector_spec(), fourier=3, pac=2)
    first = model.D.body[0]
    assert first.in_features == 2 * 2 * (1 + 2 * 3)
    x = torch.randn(6, 2)
    seen = []
    first.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    model.D(x)
    packed = x.reshape(3, 4)
    args = torch.cat([packed * torch.pi * 2**k for k in range(3)], 1)  # order: coordinate-major, then k
    args = args.reshape(3, 3, 4).transpose(1, 2).reshape(3, 12)
    assert torch.allclose(seen[0], torch.cat([packed, args.sin(), args.cos()], 1), atol=1e-6)



def test_top_k_generator_loss_uses_only_the_best_scored_fakes():
    """Sinha et al. 2020: G's loss is the mean over the k fakes D scores highest; k decays from the batch to
    top_k * batch by 0.99 per 50 steps."""
    torch.manual_seed(0)
    model = genlab.create("gan", vector_spec(), top_k=0.25, hidden=(16,))
    x = torch.randn(64, 2)
    for step, k in ((0, 64), (50, round(0.99 * 64)), (10**5, 16)):
        torch.manual_seed(1)
        loss, _ = model(x, None, phase="generator", step=step)
        torch.manual_seed(1)
        z = torch.randn(64, model.config.latent_dim)
        logits = model.D(model.G(z))[0]
        best = logits.sort(descending=True).values[:k]
        assert loss.item() == pytest.approx(g_loss("ns", best).item(), rel=1e-6)
        assert k == 64 or loss.item() < g_loss("ns", logits).item()  # the dropped fakes are the worst scored


def test_drs_score_is_the_papers_f_and_rejection_moves_samples_onto_the_data():
    """Azadi et al. 2019: F = d - d_max - log(1 - exp(d - d_max - eps)); sigmoid(F) = exp(d - d_max - eps) is
    exact rejection sampling when d = log p_data / p_g. With G = N(0, 1) and D that exact log ratio for data
    N(1, 0.5^2), DRS at the paper's 80th percentile draws (nearly) the data distribution."""
    from scipy import stats
    from torch import nn

    from genlab.models.gan import drs_score

    d, d_max = torch.linspace(-20, 3, 50, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)
    paper = d.numpy() - 3.0 - np.log(1 - np.exp(d.numpy() - 3.0 - 1e-6))
    assert np.allclose(drs_score(d, d_max).numpy(), paper, atol=2e-6)
    assert torch.allclose(torch.sigmoid(drs_score(d, d_max)), torch.exp(d - d_max - 1e-6), rtol=1e-6)

    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.unit = nn.Parameter(torch.ones(()))

        def forward(self, z, y=None):
            return z * self.unit

    class LogRatio(nn.Module):  # log N(x; 1, 0.5^2) - log N(x; 0, 1)
        def forward(self, x, y=None):
            return -2 * (x[:, 0] - 1) ** 2 + np.log(2) + x[:, 0] ** 2 / 2, None

    model = genlab.create("gan", vector_spec(1), latent_dim=1)
    model.G, model.D = Identity(), LogRatio()
    target = stats.norm(1, 0.5).cdf
    plain = model.sample(3000, seed=0)[:, 0].numpy()
    drs = model.sample(3000, seed=0, drs=80)[:, 0].numpy()
    assert stats.kstest(plain, target).statistic > 0.5
    assert stats.kstest(drs, target).statistic < 0.08
    assert torch.equal(model.sample(50, seed=3, drs=80), model.sample(50, seed=3, drs=80))


def test_drs_from_the_cli(tmp_path, cli):
    from helpers import one_line_error

    data = genlab.load_dataset("gaussians8")
    torch.manual_seed(0)
    model = genlab.create("gan", data, latent_dim=2, hidden=(32,), minibatch_std=True)
    genlab.train(model, data, steps=20, out=tmp_path / "run", batch_size=64, progress=False)
    code, _, err = cli("eval", tmp_path / "run", "--metrics", "modes", "--n", "500", "--drs", "80",
                       "--json", tmp_path / "e.json")
    assert code == 0, err
    sampling = json.loads((tmp_path / "e.json").read_text())["sampling"]
    assert sampling["drs"] == 80 and sampling["candidates_per_sample"] >= 10_000 / 500  # the burn-in alone
    for drs in ([], ["--drs", "80"]):
        code, _, err = cli("sample", tmp_path / "run", *drs, "--n", "100", "--out", tmp_path / f"{len(drs)}.npz")
        assert code == 0, err
    plain, kept = np.load(tmp_path / "0.npz")["x"], np.load(tmp_path / "2.npz")["x"]
    assert plain.shape == kept.shape == (100, 2) and not np.allclose(plain, kept)
    one_line_error(*cli("sample", tmp_path / "run", "--drs", "100")[::2], "drs is a percentile")


FASHION = __import__("genlab.data.builtin", fromlist=["idx_folder"]).idx_folder("fashion-mnist") is not None


@pytest.mark.skipif(not FASHION, reason="fashion-mnist IDX files not installed")
def test_cyclegan_learns_cycles_and_translates_from_the_cli(tmp_path, cli):
    from helpers import one_line_error

    data = genlab.load_dataset("mnist5k")
    torch.manual_seed(0)
    model = genlab.create("cyclegan", data, channels=8, d_channels=8, res_blocks=1)
    run = genlab.train(model, data, steps=60, out=tmp_path / "run", batch_size=16, progress=False, log_every=10)
    cyc = [r["generator/cycle"] for r in run.history if "generator/cycle" in r]
    assert cyc[-1] < 0.65 * cyc[0], cyc
    out = tmp_path / "t.npz"
    code, _, err = cli("sample", tmp_path / "run", "--translate", "test", "--n", "4", "--out", out)
    assert code == 0, err
    both = np.load(out)["x"]
    assert both.shape[0] == 8
    code, _, err = cli("sample", tmp_path / "run", "--translate", "test", "--direction", "ba", "--n", "2",
                       "--out", tmp_path / "b.png")
    assert code == 0, err
    one_line_error(*cli("sample", tmp_path / "run", "--translate", "test", "--direction", "xy")[::2],
                   "direction must be ab or ba")
    from genlab.errors import GenlabError

    with pytest.raises(GenlabError, match="same-shaped"):
        genlab.create("cyclegan", genlab.load_dataset("digits"), target="mnist5k")(
            torch.zeros(2, 1, 8, 8), None, "discriminator")


def test_defaults_on_the_2d_mixtures_follow_the_recipe_that_captures_every_mode():
    from genlab.models.gan import MIXTURE_RECIPES

    for name, recipe in MIXTURE_RECIPES.items():
        spec = genlab.load_dataset(name).spec
        model = genlab.create("gan", spec)
        assert all(getattr(model.config, k) == v for k, v in recipe["model"].items())
        assert {k: model.train_defaults()[k] for k in recipe["train"]} == recipe["train"]
        assert genlab.create("gan", spec, latent_dim=8).config.latent_dim == 8  # the user's options win
    assert genlab.create("gan", genlab.load_dataset("moons").spec).config.latent_dim == 64
    assert genlab.create("gan", genlab.load_dataset("gaussians8").spec, loss="wgan-gp").train_defaults()["lr"] == 1e-4


@pytest.mark.slow
def test_gan_defaults_capture_every_mode_of_gaussians8(tmp_path, cli):
    code, _, err = cli("train", "gan", "--data", "gaussians8", "--steps", "2500", "--no-progress", "--out",
                       tmp_path / "g")
    assert code == 0, err
    modes = genlab.evaluate(tmp_path / "g", metrics=["modes"])["metrics"]["modes"]
    assert modes["modes"] == 8 and modes["high_quality"] > 0.9  # measured: 8/8, 94.8%; the old defaults: 0/8, 0%


def test_unrolled_generator_gradient_is_the_derivative_through_the_look_ahead_and_leaves_d_alone():
    """Metz et al. 2017: G's loss against D after k gradient steps on D's loss, those steps differentiated too.
    The gradient equals central finite differences of that whole computation written out by hand (deepcopy D,
    k plain SGD steps, then G's loss), in float64; the model's D is bitwise unchanged."""
    import copy

    torch.manual_seed(0)
    model = genlab.create("gan", vector_spec(), hidden=(8, 8), latent_dim=2, unroll=2, unroll_lr=0.5).double()
    x = torch.randn(16, 2, dtype=torch.float64)
    d_before = {k: v.clone() for k, v in model.D.state_dict().items()}
    torch.manual_seed(1)
    loss, _ = model(x, None, phase="generator")
    loss.backward()
    assert all(torch.equal(v, d_before[k]) for k, v in model.D.state_dict().items())
    w = model.G.net[0].weight if hasattr(model.G, "net") else next(model.G.parameters())

    def by_hand() -> float:
        torch.manual_seed(1)
        z0 = torch.randn(16, 2, dtype=torch.float64)  # the fakes G is judged on, drawn first
        D = copy.deepcopy(model.D)
        for _ in range(2):
            z = torch.randn(16, 2, dtype=torch.float64)
            dl = d_loss("ns", D(x)[0], D(model.G(z))[0])
            grads = torch.autograd.grad(dl, list(D.parameters()))
            with torch.no_grad():
                for p, g in zip(D.parameters(), grads):
                    p -= 0.5 * g
        return g_loss("ns", D(model.G(z0))[0]).item()

    assert by_hand() == pytest.approx(loss.item(), rel=1e-12)
    def nudge(i: int, by: float) -> None:
        with torch.no_grad():
            w.view(-1)[i] += by

    for i in range(3):
        nudge(i, 1e-6)
        up = by_hand()
        nudge(i, -2e-6)
        down = by_hand()
        nudge(i, 1e-6)
        assert w.grad.view(-1)[i].item() == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)
    from genlab.errors import GenlabError

    with pytest.raises(GenlabError, match="unroll needs spectral_norm=false"):
        genlab.create("gan", vector_spec(), unroll=2, spectral_norm=True)


def test_orthogonal_regularisation_is_brock_et_al_eq_3():
    """||W W^T * (1 - I)||_F^2 summed over G's weight matrices (rows: output filters), by hand; zero for a layer
    with orthogonal rows of any norms; added to G's loss with its weight."""
    lin = torch.nn.Linear(5, 3)
    w = lin.weight.detach()
    want = sum((w[i] @ w[j]) ** 2 for i in range(3) for j in range(3) if i != j)
    torch.testing.assert_close(ortho_penalty(lin), want)
    with torch.no_grad():
        lin.weight.copy_(torch.diag(torch.tensor([2.0, 0.5, 3.0])) @ torch.linalg.qr(torch.randn(5, 3))[0].T)
    assert ortho_penalty(lin).item() < 1e-10
    up = torch.nn.ConvTranspose2d(4, 3, 2)  # weight (in, out, k, k): the output filters are dim 1
    w = up.weight.detach().transpose(0, 1).flatten(1)
    gram = w @ w.T
    torch.testing.assert_close(ortho_penalty(up), (gram - torch.diag(torch.diag(gram))).pow(2).sum())
    tall = torch.nn.Linear(3, 40, bias=False)  # more rows than columns: computed through the 3 x 3 Gram
    w = tall.weight.detach().double()
    gram = w @ w.T
    torch.testing.assert_close(ortho_penalty(tall).double(), (gram - torch.diag(torch.diag(gram))).pow(2).sum(),
                               rtol=1e-5, atol=1e-6)
    data = genlab.load_dataset("digits")
    m = genlab.create("gan", data, ortho_reg=1e-3)
    x = data.x[:8]
    torch.manual_seed(0)
    loss, logs = m(x, None, phase="generator")
    m.config.ortho_reg = 0.0
    torch.manual_seed(0)
    plain, _ = m(x, None, phase="generator")
    torch.testing.assert_close(loss, plain + 1e-3 * logs["ortho"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logs["ortho"], ortho_penalty(m.G).detach())


def test_truncation_draws_the_truncated_normal():
    from scipy.stats import truncnorm

    z = truncated_normal((20000, 4), 0.7, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.7
    assert z.std().item() == pytest.approx(truncnorm(-0.7, 0.7).std(), rel=0.02)
    m = genlab.create("gan", genlab.load_dataset("gaussians8"))
    near = m.sample(500, seed=0, truncation=0.1)  # z near 0: samples near G(0)
    far = m.sample(500, seed=0)
    assert near.std(0).max() < 0.5 * far.std(0).min()
    with pytest.raises(GenlabError, match="truncation must be a positive"):
        m.sample(5, truncation=0)


def test_biggan_conditional_batchnorm_and_shared_embedding():
    """cond_g=cbn (Brock et al. 2019): bn(h) * (1 + W_g c) + W_b c, by hand; at initialisation the generator is the
    unconditional DCGAN G fed z's first chunk (same weights, same output); one class embedding feeds every norm."""
    from genlab.models.gan import ConditionalBatchNorm2d, DCGenerator

    torch.manual_seed(0)
    norm = ConditionalBatchNorm2d(5, 7)
    for lin in (norm.gain, norm.bias):
        torch.nn.init.normal_(lin.weight)
    h, c = torch.randn(6, 5, 3, 3), torch.randn(6, 7)
    mu, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
    want = (h - mu) / torch.sqrt(var + 1e-5) * (1 + c @ norm.gain.weight.T)[:, :, None, None] \
        + (c @ norm.bias.weight.T)[:, :, None, None]
    torch.testing.assert_close(norm(h, c), want, rtol=1e-5, atol=1e-5)

    g = DCGenerator(12, (1, 28, 28), (16, 8), n_cond=10, attention=False, cond_g="cbn", shared_dim=4)
    assert g.chunks == [4, 4, 4] and sum(isinstance(m, torch.nn.Embedding) for m in g.modules()) == 1
    plain = DCGenerator(4, (1, 28, 28), (16, 8), n_cond=0, attention=False)  # BatchNorm's gains 1, biases 0
    with torch.no_grad():
        for k in ("fc.0.weight", "ups.0.weight", "ups.3.weight", "ups.3.bias"):
            plain.state_dict()[k].copy_(g.state_dict()[k])
    z, y = torch.randn(6, 12), torch.randint(0, 10, (6,))
    torch.testing.assert_close(g(z, y), plain(z[:, :4]))
    for lin in (g.bn0.gain, g.ups[1].bias):  # now the class and the later chunks matter
        torch.nn.init.normal_(lin.weight, std=0.5)
    out = g(z, y)
    assert not torch.allclose(out, g(z, (y + 1) % 10))
    assert not torch.allclose(out, g(torch.cat([z[:, :8], -z[:, 8:]], 1), y))  # the last chunk, into ups.1
    out.sum().backward()
    used = torch.zeros(10, dtype=torch.bool)
    used[y] = True
    rows = g.embed.weight.grad.abs().sum(1)
    assert (rows[used] > 0).all() and (rows[~used] == 0).all()


def test_cbn_needs_a_conditional_dcgan():
    with pytest.raises(GenlabError, match="cond_g=cbn is BigGAN's conditional BatchNorm"):
        genlab.create("gan", vector_spec(classes=3), conditional=True, cond_g="cbn")
    with pytest.raises(GenlabError, match="cond_g must be concat or cbn"):
        genlab.create("gan", vector_spec(), cond_g="film")


def test_minibatch_std_is_finite_to_second_order_where_a_feature_is_constant():
    """Under bf16 autocast features can be exactly equal across the batch; R1's double backward through a std of
    0 was NaN (StyleGAN diverged at its first lazy R1 step in bf16). The appended feature is still the mean std."""
    from genlab.models.gan import minibatch_std

    torch.manual_seed(0)
    h = torch.randn(8, 4, 3, 3)
    h[:, 0] = 0.5  # the same in every example
    w = torch.randn(5, 3, 3)
    for dtype in (torch.float32, torch.bfloat16):
        x, v = h.to(dtype).clone().requires_grad_(), w.clone().requires_grad_()
        out = minibatch_std(x)
        assert out.shape == (8, 5, 3, 3) and out.dtype == dtype
        assert abs(float(out.detach()[0, 4, 0, 0]) - float(h.to(dtype).float().std(0, unbiased=False).mean())) < 1e-2
        (g,) = torch.autograd.grad((out.float() * v).sum(), x, create_graph=True)
        g.float().pow(2).sum().backward()
        assert torch.isfinite(v.grad).all(), dtype
