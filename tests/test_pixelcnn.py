"""Autoregressive pixel models: masks by gradient (nothing from the future, no blind spot in the gated stacks),
cached evaluation equal to the full network, cached sampling equal to naive sampling, output distributions that
sum to 1 (the whole model too, by brute force over every tiny image), training on real digits, bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import genlab
from genlab.data.spec import DataSpec
from genlab.errors import GenlabError
from genlab.models import create
from genlab.models.pixelcnn import Bernoulli, Logistic, Softmax
from genlab.nn.pixelcnn import GatedPixelCNN, PixelCNN

from .helpers import one_line_error

NETS = {"pixelcnn": lambda c=1, **k: PixelCNN(c, c, hidden=8, blocks=3, **k),
        "gated-pixelcnn": lambda c=1, **k: GatedPixelCNN(c, c, hidden=8, layers=3, **k)}


def _input_gradient(net, H, W, i, j, C=1):
    """Which input pixels (any channel) any output channel at (i, j) depends on: (H, W) bool, by autograd."""
    x = torch.randn(1, C, H, W, dtype=torch.float64, requires_grad=True)
    net(x)[0, :, i, j].sum().backward()
    return (x.grad[0] != 0).any(0)


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("C", [1, 2])
def test_no_output_depends_on_its_own_or_a_later_pixel(name, C):
    torch.manual_seed(0)
    net = NETS[name](C).double()
    H, W = 6, 5
    order = torch.arange(H * W).view(H, W)
    for i, j in itertools.product(range(H), range(W)):
        seen = _input_gradient(net, H, W, i, j, C)
        assert not seen[order >= i * W + j].any(), (i, j)
        if j > 0:
            assert seen[i, j - 1]  # and the pixel to its left


def _holes(seen, i, j):
    """Earlier pixels inside the bounding box of what the output at (i, j) sees, which it does not see."""
    rows, cols = seen[:i].nonzero(as_tuple=True)
    box = torch.zeros_like(seen)
    box[int(rows.min()):i, int(cols.min()):int(cols.max()) + 1] = True
    lefts = seen[i].nonzero().flatten()
    box[i, int(lefts.min()):j] = True
    return int((box & ~seen).sum())


def test_the_gated_stacks_have_no_blind_spot_and_the_plain_masks_do():
    torch.manual_seed(0)
    H = W = 10
    i, j = 7, 3
    gated = _input_gradient(NETS["gated-pixelcnn"](first_kernel=3).double(), H, W, i, j)
    plain = _input_gradient(NETS["pixelcnn"](first_kernel=3).double(), H, W, i, j)
    assert _holes(gated, i, j) == 0 and gated[:i].sum() >= 5 * 8  # 5 rows up, 4 columns either side
    assert _holes(plain, i, j) >= 6  # the blind spot up and to the right (van den Oord et al. 2016b, Fig. 1)


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("classes", [0, 3])
def test_cached_evaluation_equals_the_full_network(name, classes):
    torch.manual_seed(1)
    build = PixelCNN if name == "pixelcnn" else GatedPixelCNN
    net = build(2, 5, 8, 2, kernel=5, first_kernel=7, classes=classes).double()
    x = torch.randn(3, 2, 7, 6, dtype=torch.float64)
    y = torch.tensor([0, 2, 1]) if classes else None
    full = net(x, y)
    step = net.stepper(torch.zeros_like(x), y)
    for i, j in itertools.product(range(7), range(6)):
        assert torch.allclose(step.at(i, j), full[:, :, i, j], atol=1e-12), (i, j)
        step.image[:, :, i, j] = x[:, :, i, j]


@pytest.mark.parametrize("L", [2, 17, 256])
def test_discretised_logistic_sums_to_one_and_matches_its_cdf(L):
    torch.manual_seed(0)
    out = Logistic(2, L, mixtures=3)
    params = torch.randn(4, out.params) * 2
    lp = out.level_log_probs(params)  # (4, C, L)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(4, 2), atol=1e-5)
    # independently: mixture weights times differences of the logistic CDF at the bin edges, in float64
    raw = params.double().view(4, 3, 2, 3)
    w, mu, s = torch.softmax(raw[:, 0], -1), raw[:, 1], raw[:, 2].clamp(min=-7).exp()
    edges = torch.linspace(-1, 1, L, dtype=torch.float64)[:-1] + 1 / (L - 1)
    cdf = torch.sigmoid((edges - mu[..., None]) / s[..., None])  # (4, C, K, L-1)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf, torch.ones_like(cdf[..., :1])], -1)
    p = (w[..., None] * cdf.diff(dim=-1)).sum(2)
    ok = p > 1e-6  # where the difference of CDFs has digits left
    assert torch.allclose(lp.double().exp()[ok], p[ok], rtol=1e-4)


@pytest.mark.parametrize("make", [lambda: Softmax(2, 9), lambda: Logistic(2, 9, 2), lambda: Bernoulli(2, 2)])
def test_log_prob_of_an_image_is_the_sum_of_its_pixels_level_log_probs(make):
    torch.manual_seed(0)
    out = make()
    params = torch.randn(3, out.params, 4, 5)
    levels = torch.randint(0, out.L, (3, 2, 4, 5))
    x = levels.float() / (out.L - 1) * 2 - 1
    per_pixel = out.level_log_probs(params.permute(0, 2, 3, 1).reshape(-1, out.params))  # (3*4*5, C, L)
    picked = per_pixel.gather(2, levels.permute(0, 2, 3, 1).reshape(-1, 2, 1)).view(3, -1).sum(1)
    assert torch.allclose(out.log_prob(params, x), picked, atol=1e-4)
    assert torch.allclose(per_pixel.exp().sum(-1), torch.ones(60, 2), atol=1e-5)


@pytest.mark.parametrize("kind,output,L", [("pixelcnn", "softmax", 3), ("gated-pixelcnn", "logistic", 3),
                                           ("gated-pixelcnn", "bernoulli", 2)])
def test_the_model_is_a_distribution_over_every_image(kind, output, L):
    """Brute force: P(x) summed over all L^4 images of 2x2 pixels is 1."""
    torch.manual_seed(0)
    spec = DataSpec("tiny", "image", (1, 2, 2), levels=L)
    model = create(kind, spec, hidden=8, blocks=1, output=output, mixtures=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    every = torch.tensor(list(itertools.product(range(L), repeat=4)), dtype=torch.float32).view(-1, 1, 2, 2)
    total = model.log_prob(every / (L - 1) * 2 - 1).double().exp().sum()
    assert abs(float(total) - 1) < 1e-5


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    from genlab.data import load_dataset

    train, test = load_dataset("digits"), load_dataset("digits", "test")
    runs = {}
    for kind in ("pixelcnn", "gated-pixelcnn"):
        torch.manual_seed(0)
        model = create(kind, train, hidden=16, blocks=2, conditional=True)
        before = float(-model.log_prob(test.x[:200], test.y[:200]).mean())
        out = tmp_path_factory.mktemp(kind)
        genlab.train(model, train, steps=150, out=out, progress=False, precision="fp32")
        runs[kind] = (model, before, out)
    return runs, test


@pytest.mark.parametrize("kind", ["pixelcnn", "gated-pixelcnn"])
def test_training_on_digits_lowers_the_exact_nll(digits_runs, kind):
    runs, test = digits_runs
    model, before, out = runs[kind]
    x, y = test.x[:200], test.y[:200]
    after = float(-model.log_prob(x, y).mean())
    bpd = after / (64 * math.log(2))
    assert bpd < 2.9 and after < 0.9 * before, (before, after)  # 17 levels: 4.09 bits/dim uniform, 3.2 at start
    again = genlab.load(out)
    assert torch.allclose(again.log_prob(x, y), model.log_prob(x, y), atol=1e-3)
    with pytest.raises(GenlabError, match="labels"):
        model.log_prob(x)  # conditional: the labels are part of the question


@pytest.mark.parametrize("kind", ["pixelcnn", "gated-pixelcnn"])
def test_cached_sampling_gives_the_samples_of_naive_sampling(digits_runs, kind):
    model = digits_runs[0][kind][0]
    for t in (1.0, 0.6):
        a = model.generate(6, seed=4, labels=[0, 1, 2, 3, 4, 5], temperature=t, precision="fp32")
        b = model.generate(6, seed=4, labels=[0, 1, 2, 3, 4, 5], temperature=t, cached=False, precision="fp32")
        assert torch.equal(a.x, b.x) and a.x.unique().numel() > 5
        assert a.cost.nfe == 64
    cold = model.sample(200, seed=0, temperature=0.3, labels=0)
    warm = model.sample(200, seed=0, temperature=1.0, labels=0)
    assert cold.std(0).mean() < warm.std(0).mean()  # lower temperature, less varied samples


def test_bad_input(digits_runs, cli, tmp_path):
    _, _, out = digits_runs[0]["pixelcnn"]
    for bad in ("0", "-1", "nan"):
        code, _, err = cli("sample", out, "--n", "2", "--opt", f"temperature={bad}", "--out", tmp_path / "s.png")
        one_line_error(code, err, "temperature")
    with pytest.raises(GenlabError, match="binarised data"):
        create("pixelcnn", DataSpec("d", "image", (1, 4, 4), levels=256), output="bernoulli")
    with pytest.raises(GenlabError, match="kernel must be odd"):
        create("gated-pixelcnn", DataSpec("d", "image", (1, 4, 4), levels=256), kernel=4)
    with pytest.raises(GenlabError, match="models images"):
        create("pixelcnn", DataSpec("v", "vector", (2,)))
    model = digits_runs[0]["pixelcnn"][0]
    with pytest.raises(GenlabError, match="models 1x8x8 images, got 1x28x28"):
        model.log_prob(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))


def test_binarised_data_and_a_bernoulli_output(tmp_path):
    from genlab.data import load_dataset

    data = load_dataset("digits", binarize=True)
    assert data.spec.levels == 2 and set(data.x.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(data.x, load_dataset("digits", binarize="true").x)  # binarised once, with a fixed seed
    model = create("pixelcnn", data, hidden=8, blocks=1)
    assert isinstance(model.out, Bernoulli)
    genlab.train(model, data, steps=60, out=tmp_path / "b", progress=False, precision="fp32")
    assert set(model.sample(4, seed=0).unique().tolist()) <= {-1.0, 1.0}
