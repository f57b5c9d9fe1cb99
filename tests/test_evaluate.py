"""The evaluation protocol end to end: shipped extractors, metric selection, caching, eval.json, bad input."""

import json
import time

import pytest
import torch

import genlab
from genlab.data import builtin
from genlab.errors import GenlabError
from genlab.metrics.features import SHIPPED, WEIGHTS, extractor_for, file_sha256
from genlab.metrics.protocol import applicable, evaluate, evaluate_samples

FASHION = builtin.idx_folder("fashion-mnist") is not None


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", ["digits", "mnist5k", "fashion-mnist"])
def test_shipped_extractor_is_pinned_and_reaches_its_stated_accuracy(name):
    if name == "fashion-mnist" and not FASHION:
        pytest.skip("fashion-mnist IDX files not installed")
    info = SHIPPED[name]
    assert file_sha256(WEIGHTS / info.file) == info.sha256
    ext = extractor_for(name)
    test = genlab.load_dataset(name, "test")
    feats, probs = ext.run(test.x)
    assert feats.shape == (len(test), 128) and torch.allclose(probs.sum(1), torch.ones(len(test)), atol=1e-5)
    acc = float((probs.argmax(1) == test.y).double().mean())
    assert acc == pytest.approx(info.test_accuracy, abs=2e-4)
    assert acc >= {"digits": 0.95, "mnist5k": 0.95, "fashion-mnist": 0.92}[name]


def test_tampered_extractor_is_refused(tmp_path, monkeypatch):
    from genlab.metrics import features

    bad = tmp_path / "weights"
    bad.mkdir()
    blob = bytearray((WEIGHTS / SHIPPED["digits"].file).read_bytes())
    blob[-1] ^= 1
    (bad / SHIPPED["digits"].file).write_bytes(bytes(blob))
    monkeypatch.setattr(features, "WEIGHTS", bad)
    with pytest.raises(GenlabError, match="sha256"):
        extractor_for("digits")


def test_no_extractor_for_user_folder_says_how_to_train_one():
    with pytest.raises(GenlabError, match="genlab extractor --data folder:/x"):
        extractor_for("folder:/x")


def test_metric_selection_follows_data_and_model():
    digits, g8 = genlab.load_dataset("digits"), genlab.load_dataset("gaussians8")
    assert applicable(digits.spec, genlab.create("vae", digits.spec)) == ["fid", "kid", "pr", "dc", "is",
                                                                         "memorization", "sharpness", "nll"]
    assert "nll" not in applicable(digits.spec, genlab.create("ae", digits.spec))
    assert "cls_acc" in applicable(digits.spec, genlab.create("vae", digits.spec, conditional=True))
    assert "modes" in applicable(g8.spec) and "modes" not in applicable(digits.spec) and "is" not in applicable(g8.spec)


def test_degraded_sets_rank_below_held_out_data():
    train, test = genlab.load_dataset("mnist5k"), genlab.load_dataset("mnist5k", "test")
    near = evaluate_samples(train.x[:1000], "mnist5k", ["fid", "kid", "pr"])["metrics"]
    noise = (test.x + 0.6 * torch.randn_like(test.x)).clamp(-1, 1)
    far = evaluate_samples(noise, "mnist5k", ["fid", "kid", "pr"])["metrics"]
    assert near["fid"] < far["fid"] / 5 and near["kid"] < far["kid"] / 5 and near["precision"] > far["precision"]


def test_evaluate_run_writes_eval_json_and_caches_reference_features(tmp_path):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, channels=(16, 32), conditional=True, latent_dim=4)
    genlab.train(model, data, steps=500, batch_size=64, lr=3e-3, warmup_steps=20, progress=False, out=tmp_path / "r")
    t0 = time.perf_counter()
    first = evaluate(tmp_path / "r", n=359, k=5)
    t1 = time.perf_counter()
    second = evaluate(tmp_path / "r", n=359, k=5, metrics=["fid"])
    saved = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert saved["metrics"] == second["metrics"] and saved["protocol"] == "1"
    assert first["extractor"]["sha256"] == SHIPPED["digits"].sha256 and first["n_samples"] == 359
    m = first["metrics"]
    expected = {"fid", "kid", "precision", "recall", "density", "coverage", "is", "cls_acc", "memorization", "nll"}
    assert set(m) >= expected
    assert m["cls_acc"] > 0.5  # conditional samples are recognised as their labels
    assert m["nll"]["iwae_k5_bpd"] <= m["nll"]["elbo_bpd"] + 0.05
    cached = list((tmp_path / "cache" / "features").glob("digits-test-*.npz"))
    assert len(cached) == 1 and time.perf_counter() - t1 < (t1 - t0)
    assert second["metrics"]["fid"] == pytest.approx(m["fid"])  # same seed, same samples, same number


def test_2d_mixture_eval_reports_modes(tmp_path):
    data = genlab.load_dataset("gaussians8")
    torch.manual_seed(0)
    model = genlab.create("vae", data.spec, latent_dim=2, hidden=(64, 64))
    genlab.train(model, data, steps=50, batch_size=256, progress=False, out=tmp_path / "g")
    res = evaluate(tmp_path / "g", n=2500, k=2)
    assert res["metrics"]["modes"]["total_modes"] == 8 and res["metrics"]["modes"]["n"] == 2500
    assert "is" not in res["metrics"]


def test_sharpness_of_the_split_itself_equals_its_reference():
    from genlab.metrics import laplacian_variance

    test = genlab.load_dataset("digits", "test").x
    res = evaluate_samples(test, "digits", ["sharpness"])["metrics"]
    assert res["sharpness"] == res["sharpness_reference"]
    assert res["sharpness"] == pytest.approx(float(laplacian_variance((test + 1) / 2).mean()), rel=1e-12)
    blurred = evaluate_samples(torch.nn.functional.avg_pool2d(test, 3, 1, 1), "digits", ["sharpness"])["metrics"]
    assert blurred["sharpness"] < 0.5 * res["sharpness"]


def test_bad_eval_inputs(tmp_path):
    with pytest.raises(GenlabError, match="do not fit the classifier:digits extractor|do not match"):
        evaluate_samples(torch.zeros(10, 1, 28, 28), "digits", ["fid"])
    with pytest.raises(GenlabError, match="NaN"):
        evaluate_samples(torch.full((10, 1, 8, 8), float("nan")), "digits", ["fid"])
    with pytest.raises(GenlabError, match="at least 2 samples"):
        evaluate_samples(torch.zeros(1, 1, 8, 8), "digits", ["fid"])
    with pytest.raises(GenlabError, match="unknown metric 'fidd'"):
        evaluate_samples(torch.zeros(10, 1, 8, 8), "digits", ["fidd"])
    with pytest.raises(GenlabError, match="sharpness is for images"):
        evaluate_samples(torch.zeros(10, 2), "gaussians8", ["sharpness"])
    ext = extractor_for("digits")
    with pytest.raises(GenlabError, match="do not fit"):
        ext.run(torch.zeros(4, 3, 8, 8))


def test_kid_std_is_not_available_when_every_subset_is_the_whole_set():
    from genlab.metrics.protocol import summary_rows

    test = genlab.load_dataset("moons", "test")
    few = evaluate_samples(test.x[:500] + 0.05, "moons", ["kid"])
    many = evaluate_samples(test.x[:1500] + 0.05, "moons", ["kid"])
    assert few["metrics"]["kid_std"] is None and dict(summary_rows(few))["kid_std (n=500)"] == "n/a"
    assert many["metrics"]["kid_std"] > 0


def test_reference_features_are_cached_per_data_options(tmp_path, monkeypatch):
    """Binarised digits are other images: their features get their own cache entry, not the plain split's."""
    from genlab.metrics.protocol import reference_features

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path))
    ext = extractor_for("digits")
    plain, _ = reference_features("digits", "test", ext)
    binary, _ = reference_features("digits", "test", ext, {"binarize": True})
    again, _ = reference_features("digits", "test", ext, {"binarize": True})
    want = ext.run(genlab.load_dataset("digits", "test", binarize=True).x)[0]
    torch.testing.assert_close(binary, want)
    torch.testing.assert_close(again, want)
    assert (plain - binary).abs().max() > 0.1
    assert len(list((tmp_path / "features").glob("digits*-test-*.npz"))) == 2
