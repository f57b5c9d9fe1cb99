"""Embeddings of what a denoiser is conditioned on: the noise level t and the condition (a class or a prompt).

A denoiser turns (t, cond) into one vector per example, `Conditioning`, and adds it inside every block. How
`cond` is embedded is the conditioner's business: it hands the denoiser a factory `width -> nn.Module` (for
classes, `ClassEmbedding`; for prompts, `PooledText`), so the embedding's size follows the denoiser while its
meaning follows the data. A prompt's tokens also enter the denoiser through cross-attention
(genlab.nn.transformer.CrossAttention).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

CondEmbedding = Callable[[int], nn.Module]  # width -> a module mapping cond to (B, width)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017) of integer or real t: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class ClassEmbedding(nn.Embedding):
    """Labels (B,) in 0..num_classes -> (B, d). The extra last row is the "no label" token of classifier-free
    guidance (Ho & Salimans 2022): label num_classes asks for an unconditional prediction."""

    def __init__(self, num_classes: int, d: int):
        super().__init__(num_classes + 1, d)


class TextCond(NamedTuple):
    """A batch of encoded prompts: tokens (B, L, d) and mask (B, L), True where a token is."""

    tokens: torch.Tensor
    mask: torch.Tensor


class PooledText(nn.Module):
    """Prompts -> (B, d): the mean of the unmasked tokens, L2-normalised (as sentence-transformers pools a
    sentence), times a bias-free linear map; an all-masked prompt gives exactly 0."""

    def __init__(self, d_text: int, d: int):
        super().__init__()
        self.proj = nn.Linear(d_text, d, bias=False)

    def forward(self, cond: TextCond) -> torch.Tensor:
        m = cond.mask.to(cond.tokens.dtype)[..., None]
        mean = (cond.tokens * m).sum(1) / m.sum(1).clamp(min=1)
        return self.proj(F.normalize(mean, dim=-1) * mean.shape[-1] ** 0.5)


class Conditioning(nn.Module):
    """(t, cond) -> (B, d_emb): sinusoidal t (integer timesteps or real noise levels) through a 2-layer MLP, plus
    the embedding of cond where the denoiser is conditional and cond is given (cond None: the unconditional path).
    The attribute names (`mlp`, `label`) are those of saved weights."""

    def __init__(self, d_base: int, d_emb: int, cond_embedding: CondEmbedding | None = None):
        super().__init__()
        self.d_base = d_base
        self.mlp = nn.Sequential(nn.Linear(d_base, d_emb), nn.SiLU(), nn.Linear(d_emb, d_emb))
        self.label = cond_embedding(d_emb) if cond_embedding is not None else None

    def forward(self, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        emb = self.mlp(timestep_embedding(t, self.d_base))
        if self.label is not None and cond is not None:
            emb = emb + self.label(cond)
        return emb
