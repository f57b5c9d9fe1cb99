"""Conditioners: what samples are conditioned on, turned into the denoiser's `cond`.

A conditioner names the kind of condition (`CONDITIONERS`, keyed like a model's `conditioning` declaration:
none | class | text), turns training labels into `cond` and sampling's labels or prompt into `cond`, gives the
null condition classifier-free guidance contrasts with (Ho & Salimans 2022), drops conditions at random in
training so one network learns both, and tells the denoiser how to embed `cond` at the denoiser's own width
(the parameters live in the denoiser, so saved weights keep their names) and how wide the tokens it
cross-attends to are (`context_dim`, text only).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from functools import partial
from typing import Any, ClassVar

import torch

from ...data.captions import captions
from ...data.spec import DataSpec
from ...errors import GenlabError
from ...nn.embeddings import ClassEmbedding, CondEmbedding, PooledText, TextCond
from ...text import text_encoder, text_encoder_class


class Conditioner(ABC):
    name: ClassVar[str]
    context_dim: int = 0  # the width of the tokens the denoiser cross-attends to (0: none)

    def __init__(self, spec: DataSpec):
        self.spec = spec

    @abstractmethod
    def embedding(self) -> CondEmbedding | None:
        """width -> the module the denoiser embeds cond with (None: nothing to embed)."""

    @abstractmethod
    def __call__(self, labels: torch.Tensor | None) -> Any:
        """The denoiser's cond for validated labels (n,) (or None)."""

    @abstractmethod
    def null(self, cond: Any) -> Any:
        """The "no condition" cond of the same batch, for the unconditional branch of guidance."""

    def drop(self, cond: Any, p: float) -> Any:
        """Training: each example's cond replaced by the null one with probability p."""
        return cond

    def perturb(self, cond: Any, scale: float) -> Any:
        """Training: cond with noise of relative size `scale` on its embedding (text only; others unchanged)."""
        return cond

    def sampling(self, labels: torch.Tensor | None, prompt: str | None, n: int, device: torch.device | str) -> Any:
        """The cond of n samples on `device` from validated labels (n,) or None, and a prompt (text models)."""
        return self(labels)

    def cat(self, a: Any, b: Any) -> Any:
        """Two batches of cond as one (guidance runs both branches in one network call)."""
        return torch.cat([a, b])


class NoConditioner(Conditioner):
    name = "none"

    def embedding(self) -> None:
        return None

    def __call__(self, labels: torch.Tensor | None) -> None:
        return None

    def null(self, cond: Any) -> None:
        return None


class ClassConditioner(Conditioner):
    """cond = the labels (B,) themselves; the null condition is the extra label num_classes, the last row of
    the denoiser's ClassEmbedding."""

    name = "class"

    def __init__(self, spec: DataSpec):
        super().__init__(spec)
        self.num_classes = int(spec.num_classes or 0)

    def embedding(self) -> CondEmbedding:
        return partial(ClassEmbedding, self.num_classes)

    def __call__(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return labels

    def null(self, cond: torch.Tensor) -> torch.Tensor:
        return torch.full_like(cond, self.num_classes)

    def drop(self, cond: torch.Tensor, p: float) -> torch.Tensor:
        drop = torch.rand(cond.shape[0], device=cond.device) < p
        return torch.where(drop, self.null(cond), cond)


def pad_tokens(cond: TextCond, length: int) -> TextCond:
    """cond with its token axis padded (masked) to `length`."""
    extra = length - cond.tokens.shape[1]
    if extra <= 0:
        return cond
    return TextCond(torch.nn.functional.pad(cond.tokens, (0, 0, 0, extra)),
                    torch.nn.functional.pad(cond.mask, (0, extra)))


class TextConditioner(Conditioner):
    """cond = a TextCond of prompt tokens from a frozen text encoder (genlab.text). Training turns each label into
    one of its class's training captions (genlab.data.captions), drawn at random; the null condition is the
    empty prompt. Encodings are cached per caption (the least recently used beyond CACHE_SIZE are dropped), so
    training never runs the encoder twice on one caption and a long session of prompts stays bounded."""

    name = "text"
    CACHE_SIZE = 4096

    def __init__(self, spec: DataSpec, encoder: str = "minilm", modifiers: bool = False):
        super().__init__(spec)
        self.encoder = encoder
        self.context_dim = text_encoder_class(encoder).dim
        self.captions = captions(spec, modifiers)
        self._cache: OrderedDict[str, TextCond] = OrderedDict()
        self._table: dict[torch.device, tuple[TextCond, torch.Tensor, torch.Tensor]] = {}

    def embedding(self) -> CondEmbedding:
        return partial(PooledText, self.context_dim)

    def encode(self, prompts: list[str], device: torch.device | str = "cpu") -> TextCond:
        """Prompts -> TextCond on `device`, padded to the longest."""
        new = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if new:
            tokens, mask = text_encoder(self.encoder)(new)
            for i, p in enumerate(new):
                k = int(mask[i].sum())
                self._cache[p] = TextCond(tokens[i, :k], mask[i, :k])
        for p in dict.fromkeys(prompts):
            self._cache.move_to_end(p)  # the most recently used last
        length = max(self._cache[p].mask.shape[0] for p in prompts)
        rows = [pad_tokens(TextCond(*(v[None] for v in self._cache[p])), length) for p in prompts]
        while len(self._cache) > max(self.CACHE_SIZE, len(set(prompts))):
            self._cache.popitem(last=False)
        return TextCond(torch.cat([r.tokens for r in rows]).to(device), torch.cat([r.mask for r in rows]).to(device))

    def _training_table(self, device: torch.device) -> tuple[TextCond, torch.Tensor, torch.Tensor]:
        """Every training caption encoded once: (TextCond of all of them, each class's first row, its count)."""
        if device not in self._table:
            flat = [c for caps in self.captions.train for c in caps]
            counts = torch.tensor([len(caps) for caps in self.captions.train])
            first = torch.cumsum(counts, 0) - counts
            self._table[device] = (self.encode(flat, device), first.to(device), counts.to(device))
        return self._table[device]

    def __call__(self, labels: torch.Tensor | None) -> TextCond | None:
        if labels is None:
            return None
        table, first, counts = self._training_table(labels.device)
        pick = first[labels] + (torch.rand(labels.shape, device=labels.device) * counts[labels]).long()
        return TextCond(table.tokens[pick], table.mask[pick])

    def sampling(self, labels: torch.Tensor | None, prompt: str | None, n: int,
                 device: torch.device | str) -> TextCond:
        if prompt is not None:
            return self.encode([prompt] * n, device)
        if labels is None:
            raise GenlabError("a text-conditioned model samples from a prompt (--prompt) or class labels (--label)")
        return self.encode([self.captions.default(int(k)) for k in labels.tolist()], device)

    def null(self, cond: TextCond) -> TextCond:
        """The empty prompt, once per example of cond (at its own length: `cat` and `drop` pad)."""
        empty = self.encode([""], cond.tokens.device)
        return TextCond(empty.tokens.expand(len(cond.tokens), -1, -1), empty.mask.expand(len(cond.mask), -1))

    def drop(self, cond: TextCond, p: float) -> TextCond:
        null = self.null(cond)
        length = max(cond.tokens.shape[1], null.tokens.shape[1])
        cond, null = pad_tokens(cond, length), pad_tokens(null, length)
        drop = torch.rand(len(cond.tokens), device=cond.tokens.device) < p
        return TextCond(torch.where(drop[:, None, None], null.tokens, cond.tokens),
                        torch.where(drop[:, None], null.mask, cond.mask))

    def perturb(self, cond: TextCond, scale: float) -> TextCond:
        """Each token h -> h + scale * |h| * e / |e|, e ~ N(0, I): the text-feature perturbation of LAFITE (Zhou et
        al. 2022, eq. 3), so the denoiser learns a neighbourhood of each caption, not the caption alone, and
        unseen wordings that land near a class's captions map to that class."""
        if scale == 0:
            return cond
        e = torch.randn_like(cond.tokens)
        h = cond.tokens
        return TextCond(h + scale * h.norm(dim=-1, keepdim=True) * e / e.norm(dim=-1, keepdim=True), cond.mask)

    def cat(self, a: TextCond, b: TextCond) -> TextCond:
        length = max(a.tokens.shape[1], b.tokens.shape[1])
        a, b = pad_tokens(a, length), pad_tokens(b, length)
        return TextCond(torch.cat([a.tokens, b.tokens]), torch.cat([a.mask, b.mask]))


CONDITIONERS: dict[str, type[Conditioner]] = {c.name: c for c in (NoConditioner, ClassConditioner, TextConditioner)}


def make_conditioner(name: str, spec: DataSpec, **options: Any) -> Conditioner:
    """The conditioner for a model's `conditioning` declaration; options: the conditioner's own (text: encoder,
    modifiers)."""
    if name not in CONDITIONERS:
        raise GenlabError(f"no diffusion conditioner for '{name}' conditioning: use one of {', '.join(CONDITIONERS)}")
    return CONDITIONERS[name](spec, **options)
