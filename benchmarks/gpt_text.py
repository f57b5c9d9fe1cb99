"""Character language models on python-docs: genlab's `gpt` (causal) in bits per character beside character n-gram
models (interpolated Kneser-Ney, orders 1-6) on the same test windows, and the decoder-only / encoder-only
contrast: the same blocks trained causally and with masked-character prediction, each scored on filling in 15% of
the test characters.

Both transformers get --minutes of training (dim 192, 4 layers, 6 heads, block 128, batch 64). The n-grams count the
training split's characters; every model is scored on the test split's 128-character windows with only the
window's own earlier characters as context, as the transformer sees them. Run by hand (2 CPU cores: nothing else
running); results go to docs/BENCHMARKS.md.

    python benchmarks/gpt_text.py --minutes 10 --out runs/gpt_text
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

import genlab
from genlab.io import atomic_write_json


class KneserNey:
    """Interpolated Kneser-Ney over characters (Chen & Goodman 1999, eq. 13-14, one discount D = 0.75 per order):
    P(c | h) = max(n(h c) - D, 0) / n(h) + D N1+(h .) / n(h) P(c | h'), h' = h without its oldest character;
    n are counts at the highest order and continuation counts N1+(. h c) below it; the base is uniform."""

    def __init__(self, text: str, order: int, vocab: int, discount: float = 0.75):
        self.order, self.vocab, self.d = order, vocab, discount
        self.counts: list[dict[str, Counter]] = [defaultdict(Counter) for _ in range(order)]
        top = order - 1
        for i in range(top, len(text)):  # counts at the highest order: `top` characters of history
            self.counts[top][text[i - top:i]][text[i]] += 1
        # continuation counts for the lower orders: how many distinct characters precede h c
        for k in range(top - 1, -1, -1):
            for hh, nxt in self.counts[k + 1].items():
                for c in nxt:
                    self.counts[k][hh[1:]][c] += 1
        self.totals = [{h: sum(cnt.values()) for h, cnt in level.items()} for level in self.counts]

    def prob(self, history: str, c: str) -> float:
        p = 1.0 / self.vocab
        for k in range(0, min(len(history), self.order - 1) + 1):
            h = history[len(history) - k:] if k else ""
            cnt = self.counts[k].get(h)
            if not cnt:
                break
            n = self.totals[k][h]
            p = max(cnt.get(c, 0) - self.d, 0) / n + self.d * len(cnt) / n * p
        return p

    def bits_per_char(self, windows: list[str]) -> float:
        total, n = 0.0, 0
        for w in windows:
            for t in range(len(w)):
                total -= math.log2(self.prob(w[:t], w[t]))
                n += 1
        return total / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--orders", default="1,2,3,4,5,6")
    ap.add_argument("--out", type=Path, default=Path("runs/gpt_text"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    train, test = genlab.load_dataset("python-docs"), genlab.load_dataset("python-docs", "test")
    spec = train.spec
    full = genlab.data.text.python_docs()
    train_text = full[: int(len(full) * 0.9)]
    windows = spec.to_original(test.x)
    result = {"machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
              "command": " ".join(sys.argv), "test_windows": len(windows), "rows": []}
    args.out.mkdir(parents=True, exist_ok=True)
    for order in (int(o) for o in args.orders.split(",")):
        t0 = time.perf_counter()
        lm = KneserNey(train_text, order, spec.levels)
        bpc = lm.bits_per_char(windows)
        result["rows"].append({"model": f"Kneser-Ney {order}-gram", "bits_per_char": round(bpc, 4),
                               "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(result["rows"][-1]), flush=True)
        atomic_write_json(args.out / "result.json", result)
    for objective in ("causal", "masked"):
        run = args.out / objective
        shutil.rmtree(run, ignore_errors=True)
        torch.manual_seed(0)
        model = genlab.create("gpt", train, dim=192, layers=4, heads=6, objective=objective)
        r = genlab.train(model, train, minutes=args.minutes, out=run, progress=False, sample_every=10**9)
        model = genlab.load(run)
        row = {"model": f"gpt ({objective})", "steps": r.step,
               "fill_in_accuracy": round(model.fill_in_accuracy(test.x, rate=0.15), 4)}
        if objective == "causal":
            nll = genlab.evaluate(run)["metrics"]["nll"]
            row["bits_per_char"] = round(nll["nll_bpd"], 4)
            row["sample"] = spec.to_original(model.sample(1, seed=0, prompt="The ", temperature=0.8, length=300))[0]
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
        atomic_write_json(args.out / "result.json", result)


if __name__ == "__main__":
    main()
