"""Domain-adversarial adaptation: the gradient-reversal layer and DANN's gradients against independent
computations, adaptation measured on a rotated two-moons shift (Ganin et al. 2016's toy), the estimator's
conventions and bad input, and `genlab adapt`."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import one_line_error
from sklearn.base import clone
from sklearn.datasets import make_moons

from genlab.apps.domain import DANN, DANNConfig, DomainAdversarialClassifier, lambda_at
from genlab.data import from_arrays
from genlab.errors import GenlabError
from genlab.nn.blocks import grad_reverse


def test_gradient_reversal_is_the_identity_forward_and_minus_lambda_backward():
    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(5, 3)
    y = grad_reverse(x, 0.7)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * w, rtol=0, atol=0)


def test_lambda_schedule_rises_from_zero_to_the_top():
    assert lambda_at(0, 100, 2.0) == 0.0
    assert lambda_at(100, 100, 2.0) == pytest.approx(2.0 * (2 / (1 + math.exp(-10)) - 1))
    assert lambda_at(50, 100, 1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert lambda_at(10_000, 100, 1.0) == lambda_at(100, 100, 1.0)  # p stops at 1
    assert all(lambda_at(s, 100, 1.0) < lambda_at(s + 10, 100, 1.0) for s in range(0, 100, 10))


@pytest.mark.parametrize("image", [False, True])
def test_dann_gradients_are_label_minus_lambda_domain_for_features_and_plain_for_the_heads(image):
    """Against the two losses differentiated separately without the reversal layer."""
    torch.manual_seed(0)
    x = torch.randint(0, 256, (6, 12, 12), dtype=torch.uint8).numpy() if image else np.random.randn(6, 4)
    data, _ = from_arrays(x, np.array([0, 1, 2, 0, 1, 2]), test_fraction=0)
    target = torch.randn(6, *data.spec.shape)
    model = DANN(data.spec, DANNConfig(adapt=0.6, ramp=10), target)
    step, lam = 5, lambda_at(5, 10, 0.6)
    torch.manual_seed(1)
    loss, logs = model(data.x, data.y, step=step)
    model.zero_grad()
    loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert logs["lambda"].item() == pytest.approx(lam)

    torch.manual_seed(1)  # the same target batch
    idx = torch.randint(0, len(target), (6,))
    f = torch.cat([model.features(data.x), model.features(target[idx])])
    label = F.cross_entropy(model.classifier(f[:6]), data.y)
    dom = F.binary_cross_entropy_with_logits(model.domain(f).squeeze(1), torch.cat([torch.zeros(6), torch.ones(6)]))
    params = dict(model.named_parameters())
    g_label = dict(zip(params, torch.autograd.grad(label, list(params.values()), allow_unused=True,
                                                   retain_graph=True)))
    g_dom = dict(zip(params, torch.autograd.grad(dom, list(params.values()), allow_unused=True)))
    for n in params:
        zero = torch.zeros_like(params[n])
        gl, gd = g_label[n] if g_label[n] is not None else zero, g_dom[n] if g_dom[n] is not None else zero
        want = gl - lam * gd if n.startswith("features") else gl + gd
        torch.testing.assert_close(got[n], want, rtol=1e-5, atol=1e-6)
    assert torch.count_nonzero(got["domain.0.weight"]) > 0


def moons(rotation_deg: float, n: int, seed: int):
    x, y = make_moons(n, noise=0.1, random_state=seed)
    a = math.radians(rotation_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (x - x.mean(0)) @ rot.T, y


@pytest.mark.slow  # 30 s; docs/BENCHMARKS.md §34 measures the same over ten seeds
def test_dann_recovers_accuracy_on_rotated_moons():
    """Source: two moons; target: the same rotated 35 degrees, unlabelled. Trained on the source alone the
    classifier loses the rotated tips; DANN aligns the two feature distributions and gets more of them right.
    Two seeds: adversarial training varies from seed to seed (measured: 0.88 and 0.70 source only, 0.94 and 0.95
    with DANN)."""
    xs, ys = moons(0, 600, 0)
    xt, yt = moons(35, 600, 1)
    xt_test, yt_test = moons(35, 1000, 2)
    acc = {}
    for top in (0.0, 1.0):
        scores = []
        for seed in (0, 1):
            clf = DomainAdversarialClassifier(adapt=top, ramp=500, hidden=64, steps=1500, random_state=seed)
            clf.fit(xs, ys, X_target=xt)
            scores.append(clf.score(xt_test, yt_test))
            assert clf.score(xs, ys) > 0.97  # both fit the source
        acc[top] = np.mean(scores)
    assert acc[1.0] > acc[0.0] + 0.08, acc


def test_estimator_conventions_and_bad_input():
    xs, ys = moons(0, 200, 0)
    clf = DomainAdversarialClassifier(steps=20, adapt=0.5)
    assert clone(clf).get_params() == clf.get_params()
    fitted = clf.fit(xs, np.where(ys == 1, "b", "a"), X_target=moons(30, 100, 1)[0])
    assert fitted is clf and list(clf.classes_) == ["a", "b"]
    assert set(clf.predict(xs)) <= {"a", "b"}
    p = clf.predict_proba(xs[:7])
    assert p.shape == (7, 2) and np.allclose(p.sum(1), 1)
    with pytest.raises(GenlabError, match="single class"):
        DomainAdversarialClassifier(steps=5).fit(xs, np.zeros(len(xs)))
    with pytest.raises(GenlabError, match="X_target does not fit the source"):
        DomainAdversarialClassifier(steps=5).fit(xs, ys, X_target=np.zeros((10, 3)))
    with pytest.raises(GenlabError, match="NaN"):
        DomainAdversarialClassifier(steps=5).fit(xs, ys, X_target=np.full((10, 2), np.nan))
    with pytest.raises(GenlabError, match="one label per row"):
        DomainAdversarialClassifier(steps=5).fit(xs, ys[:-1])
    with pytest.raises(GenlabError, match="adapt must be >= 0"):
        DomainAdversarialClassifier(steps=5, adapt=-1).fit(xs, ys, X_target=xs)


def test_adapt_cli(cli, tmp_path):
    out = tmp_path / "adapt.json"
    code, stdout, err = cli("adapt", "mnist5k", "digits", "--steps", "30", "--no-progress", "--out", out)
    assert code == 0, err
    res = json.loads(out.read_text())
    for name in ("source-only", "dann"):
        assert 0.3 < res[name]["source_acc"] <= 1 and 0 <= res[name]["target_acc"] <= 1, res
        assert f"{res[name]['target_acc']:.4f}" in stdout
    assert 0 <= res["dann"]["final_domain_acc"] <= 1 and "final_domain_acc" not in res["source-only"]
    one_line_error(*cli("adapt", "mnist5k", "wine")[::2], "mnist5k has 10 classes, wine 3")
    one_line_error(*cli("adapt", "mnist5k", "digits", "--lambda", "0")[::2], "--lambda must be a positive")
    one_line_error(*cli("adapt", "mnist5k", "digits", "--steps", "-3")[::2], "--steps must be a positive")
