"""The character n-gram baseline of benchmarks/gpt_text.py (interpolated Kneser-Ney), which §39 of
docs/BENCHMARKS.md sets beside `gpt`: a proper distribution at every order and history, and the bigram model
equal to Chen & Goodman's formula written out from the counts."""

import importlib.util
import math
from collections import Counter
from pathlib import Path

import pytest

_path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpt_text.py"
_spec = importlib.util.spec_from_file_location("gpt_text_benchmark", _path)
gpt_text = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpt_text)

TEXT = ("the cat sat on the mat; the dog sat on the log. a cat and a dog met at the gate, "
        "and the cat ran to the tree while the dog sat. ") * 3
VOCAB = sorted(set(TEXT)) + ["#", "%"]  # two symbols never seen in training


@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("history", ["", "t", "the ", "he c", "og s", "zz", "#%", "sat on th"])
def test_probabilities_sum_to_one(order, history):
    lm = gpt_text.KneserNey(TEXT, order, len(VOCAB))
    probs = [lm.prob(history, c) for c in VOCAB]
    assert min(probs) > 0  # never zero, even for an unseen character
    assert math.fsum(probs) == pytest.approx(1.0, abs=1e-12)


def test_bigram_equals_the_formula_from_counts():
    d, v = 0.75, len(VOCAB)
    lm = gpt_text.KneserNey(TEXT, 2, v, discount=d)
    bigrams = Counter(zip(TEXT, TEXT[1:]))
    # lower order: continuation counts N1+(. c) = number of distinct left neighbours of c
    cont = Counter(c for (_, c) in bigrams)
    n_cont = sum(cont.values())

    def p_unigram(c):
        return max(cont[c] - d, 0) / n_cont + d * len(cont) / n_cont / v

    for a in ["t", "h", " ", ";", "."]:
        n_a = sum(n for (x, _), n in bigrams.items() if x == a)
        follow = {c for (x, c) in bigrams if x == a}
        for c in VOCAB:
            want = max(bigrams[(a, c)] - d, 0) / n_a + d * len(follow) / n_a * p_unigram(c)
            assert lm.prob("xyz" + a, c) == pytest.approx(want, rel=1e-12)
    # an unseen history falls back to the lower order alone
    assert lm.prob("#", "t") == pytest.approx(p_unigram("t"), rel=1e-12)


def test_bits_per_char_is_the_mean_negative_log2():
    lm = gpt_text.KneserNey(TEXT, 3, len(VOCAB))
    windows = ["the cat", "a dog#"]
    want = -sum(math.log2(lm.prob(w[:t], w[t])) for w in windows for t in range(len(w))) / 13
    assert lm.bits_per_char(windows) == pytest.approx(want, rel=1e-12)
