"""Text as character tokens, for autoregressive language models (kind `gpt`).

A corpus becomes windows of `block` characters, each character an index into the corpus's sorted alphabet (kept in
the spec, `spec.extra["vocab"]`): the first 90% of the characters train, the last 10% test, so no test window
overlaps a training one. Training windows start every block / 2 characters, test windows every block. Model
space: (N, block) int64 token ids; `spec.to_original` gives the strings back, `text_to_ids` the other way.

Sources: `text:PATH` (a UTF-8 file of the user's) and `python-docs`, the pydoc topic pages that ship with every
CPython (about 0.8 MB of English prose and code examples), so a language model has an offline corpus here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import GenlabError
from .spec import DataSpec

MIN_CHARS = 1000


def python_docs() -> str:
    """The pydoc topic pages of this Python, in a fixed (sorted) order."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover (every CPython ships it)
        raise GenlabError("python-docs needs pydoc_data, part of the Python standard library") from None
    return "\n\n".join(topics[k].strip() for k in sorted(topics))


def text_to_ids(spec: DataSpec, texts: list[str] | str) -> torch.Tensor:
    """Strings -> (N, L) token ids of `spec`'s alphabet (a single string -> (1, L)); rows padded to the longest
    are not supported: give strings of one length. A character outside the alphabet is a GenlabError."""
    vocab = spec.extra["vocab"]
    index = {c: i for i, c in enumerate(vocab)}
    texts = [texts] if isinstance(texts, str) else list(texts)
    if len({len(t) for t in texts}) > 1:
        raise GenlabError("give strings of one length (or one string)")
    bad = sorted({c for t in texts for c in t if c not in index})
    if bad:
        raise GenlabError(f"characters {''.join(bad)!r} are not in {spec.name}'s alphabet of {len(vocab)}; the model "
                          "cannot read them")
    return torch.tensor([[index[c] for c in t] for t in texts], dtype=torch.long).reshape(len(texts), -1)


def ids_to_text(spec: DataSpec, ids: torch.Tensor) -> list[str]:
    vocab = spec.extra["vocab"]
    return ["".join(vocab[int(i)] for i in row) for row in ids.reshape(len(ids), -1)]


def windows(ids: np.ndarray, block: int, stride: int) -> torch.Tensor:
    starts = np.arange(0, len(ids) - block + 1, stride)
    return torch.from_numpy(np.stack([ids[s:s + block] for s in starts])).long()


def corpus_splits(text: str, name: str, block: int = 128):
    """(train, test, spec) of a corpus: see the module docstring."""
    block = int(block)
    if block < 2:
        raise GenlabError(f"block must be >= 2 characters, got {block}")
    if len(text) < MIN_CHARS or len(text) * 0.1 < block:
        raise GenlabError(f"{name} holds {len(text):,} characters; a language model needs at least "
                          f"{max(MIN_CHARS, 10 * block):,} (10% of them make the test split, at least one block)")
    vocab = "".join(sorted(set(text)))
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((lookup[c] for c in text), dtype=np.int64, count=len(text))
    cut = int(len(ids) * 0.9)
    spec = DataSpec(name=name, kind="text", shape=(block,), levels=len(vocab), value_range=(0, len(vocab) - 1),
                    extra={"vocab": vocab})
    return (windows(ids[:cut], block, max(block // 2, 1)), None), (windows(ids[cut:], block, block), None), spec


def load_text(path: str, block: int = 128):
    p = Path(path).expanduser()
    if not p.is_file():
        raise GenlabError(f"text file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GenlabError(f"{p} is not UTF-8 text ({e.reason} at byte {e.start}); convert it first") from None
    return corpus_splits(text, f"text:{p}", block)


def load_python_docs(block: int = 128):
    return corpus_splits(python_docs(), "python-docs", block)
