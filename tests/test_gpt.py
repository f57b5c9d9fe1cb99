"""Kind `gpt` and text data: the causal mask (no gradient from future characters), the likelihood against the chain
rule run prefix by prefix, sampling, a real run on python-docs, the CLI, and bad text input."""

import math

import pytest
import torch
from helpers import one_line_error

import genlab
from genlab.data.text import corpus_splits
from genlab.errors import GenlabError


@pytest.fixture(scope="module")
def docs():
    return genlab.load_dataset("python-docs", block=32)


def embedding_grads(model, tokens, t):
    """d(logits at position t, summed) / d(the embedding of each input token): (T,) norms."""
    store = {}

    def hook(_, __, out):
        out.retain_grad()
        store["emb"] = out

    h = model.net.tok.register_forward_hook(hook)
    try:
        model.net(tokens)[:, t].sum().backward()
    finally:
        h.remove()
    return store["emb"].grad[0].norm(dim=-1)


def test_causal_mask_gives_no_gradient_from_future_characters(docs):
    torch.manual_seed(0)
    causal = genlab.create("gpt", docs, dim=32, layers=2, heads=2, dropout=0.0).eval()
    x = docs.x[:1]
    g = embedding_grads(causal, x, 10)
    # the embedded sequence is shifted right: token j sits at position j + 1, so position 10 reads tokens 0..9
    assert (g[:10] > 0).all() and (g[10:] == 0).all()
    masked = genlab.create("gpt", docs, dim=32, layers=2, heads=2, dropout=0.0, objective="masked").eval()
    g = embedding_grads(masked, x, 10)
    assert (g > 0).all()  # the encoder reads both sides


def test_log_prob_is_the_chain_rule_run_prefix_by_prefix(docs):
    torch.manual_seed(0)
    m = genlab.create("gpt", docs, dim=32, layers=2, heads=2, dropout=0.0).eval()
    x = docs.x[:2, :12]
    by_hand = torch.zeros(2)
    with torch.no_grad():
        for t in range(12):  # only x_<t goes in: the logits for x_t sit at the last position
            inp = torch.cat([x[:, :t], torch.zeros(2, 1, dtype=torch.long)], 1)
            logp = torch.log_softmax(m.net(inp)[:, t].double(), -1)
            by_hand += logp[torch.arange(2), x[:, t]].float()
    torch.testing.assert_close(m.log_prob(x), by_hand, rtol=1e-4, atol=1e-4)


def test_sampling_greedy_and_prompted(docs):
    torch.manual_seed(0)
    m = genlab.create("gpt", docs, dim=32, layers=2, heads=2)
    a = m.sample(3, seed=0, top_k=1, length=20, prompt="def ")
    b = m.sample(3, seed=5, top_k=1, length=20, prompt="def ")
    assert a.shape == (3, 20) and torch.equal(a, b) and torch.equal(a[0], a[1])  # greedy: one answer, any seed
    ids = torch.cat([m.spec.to_model("def ").expand(3, -1), a], 1)
    with torch.no_grad():  # each greedy character is the argmax after the prompt and the characters before it
        for t in range(4, 24):
            inp = torch.cat([ids[:, :t], torch.zeros(3, 1, dtype=torch.long)], 1)
            assert torch.equal(m.eval().net(inp)[:, t].argmax(-1), ids[:, t])
    c = m.sample(200, seed=0, length=1)
    assert len(torch.unique(c)) > 20  # temperature 1 spreads over the alphabet
    with pytest.raises(GenlabError, match="not in python-docs's alphabet"):
        m.sample(1, prompt="naïve ☃")


def test_key_value_cache_writes_the_same_text_as_rerunning_the_window(docs):
    torch.manual_seed(0)
    m = genlab.create("gpt", docs, dim=32, layers=2, heads=2, dropout=0.0)
    prompt = docs.spec.to_original(docs.x[3:4])[0]  # 32 characters: a full block, so the window slides at once
    for kw in ({"length": 45}, {"length": 45, "prompt": "def "}, {"length": 5, "prompt": prompt},
               {"length": 5, "prompt": prompt[:31]}):  # 31: the cache fills with the prompt, then slides
        # length 45 > block 32: cached while the text fits, then the sliding window, as the uncached sampler
        cached = m.sample(6, seed=1, precision="fp32", **kw)
        assert torch.equal(cached, m.sample(6, seed=1, precision="fp32", cached=False, **kw)), kw
    assert not torch.equal(m.sample(6, seed=1, length=45), m.sample(6, seed=2, length=45))
    assert m.sampling_precision("auto") == "fp32"  # one position per call: bf16 measured 0.81-0.91x


@pytest.mark.slow  # 30 s
def test_learns_python_docs_below_the_unigram_entropy(docs, tmp_path):
    test = genlab.load_dataset("python-docs", "test", block=32)
    counts = torch.bincount(docs.x.flatten(), minlength=docs.spec.levels).double()
    p = counts / counts.sum()
    tc = torch.bincount(test.x.flatten(), minlength=docs.spec.levels).double()
    unigram = -(tc * torch.log2(p.clamp(min=1e-12))).sum() / tc.sum()  # cross-entropy of the unigram model, bits
    torch.manual_seed(0)
    m = genlab.create("gpt", docs, dim=64, layers=2, heads=4)
    genlab.train(m, docs, steps=300, out=tmp_path / "gpt", progress=False, sample_every=300)
    res = genlab.evaluate(tmp_path / "gpt")
    bpc = res["metrics"]["nll"]["nll_bpd"]
    assert bpc < unigram - 0.5, (bpc, unigram)  # measured 3.0 against 4.4
    assert (tmp_path / "gpt" / "samples" / "step_0000300.txt").read_text().strip()


def test_cli_trains_and_continues_a_prompt(cli, tmp_path):
    run = tmp_path / "gpt"
    code, _, err = cli("train", "gpt", "--data", "python-docs", "--set", "data.block=32", "--steps", "20", "--out", run,
                       "--set", "dim=32", "--set", "layers=1", "--set", "heads=2", "--no-progress")
    assert code == 0, err
    out = tmp_path / "s.txt"
    code, stdout, err = cli("sample", run, "--prompt", "The ", "--n", "2", "--length", "30", "--out", out)
    assert code == 0, err
    texts = out.read_text().split("\n\n----\n\n")
    assert len(texts) == 2 and all(t.startswith("The ") and len(t) == 34 for t in texts)
    one_line_error(*cli("sample", run, "--prompt", "☃")[::2], "not in")
    one_line_error(*cli("sample", run, "--out", tmp_path / "s.png")[::2], "a text model writes text")
    one_line_error(*cli("sample", run, "--label", "1")[::2], "gpt is not class-conditional")
    one_line_error(*cli("train", "gpt", "--data", "digits", "--steps", "2", "--out", tmp_path / "x")[::2],
                   "gpt models text")
    one_line_error(*cli("train", "vae", "--data", "python-docs", "--steps", "2", "--out", tmp_path / "y")[::2],
                   "vae models image or vector or table data; python-docs is text data (kinds for it: gpt)")
    one_line_error(*cli("eval", run, "--metrics", "fid")[::2], "a text model is scored by its likelihood")


def test_masked_objective_fills_in_and_does_not_sample(docs):
    m = genlab.create("gpt", docs, dim=32, layers=1, heads=2, objective="masked")
    assert "log_prob" not in m.capabilities
    assert 0 <= m.fill_in_accuracy(docs.x[:20]) <= 1
    with pytest.raises(GenlabError, match="fills in"):
        m.sample(1)
    with pytest.raises(GenlabError, match="no left-to-right likelihood"):
        m.log_prob(docs.x[:2])


def test_text_files(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 60
    (tmp_path / "t.txt").write_text(text)
    train = genlab.load_dataset(f"text:{tmp_path / 't.txt'}", block=16)
    assert train.spec.extra["vocab"] == "".join(sorted(set(text)))
    assert train.spec.to_original(train.x[:1])[0] == text[:16]
    assert torch.equal(train.spec.to_model(text[:16]), train.x[:1])
    (tmp_path / "short.txt").write_text("too short")
    with pytest.raises(GenlabError, match="needs at least"):
        genlab.load_dataset(f"text:{tmp_path / 'short.txt'}")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe" * 1000)
    with pytest.raises(GenlabError, match="not UTF-8"):
        genlab.load_dataset(f"text:{tmp_path / 'bin.txt'}")
    with pytest.raises(GenlabError, match="text file not found"):
        genlab.load_dataset(f"text:{tmp_path / 'none.txt'}")
    with pytest.raises(GenlabError, match="block must be >= 2"):
        corpus_splits(text, "t", block=1)
    assert math.isclose(len(train.x) * 8, len(text) * 0.9, rel_tol=0.05)  # windows every block / 2
