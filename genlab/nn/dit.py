"""DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers"): the image cut into p x p patches, each
a token; transformer blocks with AdaLN-Zero conditioning on the noise level and the class (or a pooled prompt, whose
tokens also enter every block through cross-attention, as in PixArt-alpha); a linear layer back to patches. The
blocks are genlab.nn.transformer's (the VQ-AR prior's), non-causal and with `cond` set.

    net = DiT((1, 28, 28), DiTOptions(patch=2, dim=128, depth=6))   # 196 tokens of 128
    eps = net(x, t, labels)                                           # (B, 1, 28, 28)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import check
from ..errors import GenlabError
from .embeddings import CondEmbedding, Conditioning
from .transformer import Block, modulate


@dataclass
class DiTOptions:
    patch: int = 2  # patch side p: (H/p)(W/p) tokens
    dim: int = 128  # token width
    depth: int = 6  # transformer blocks
    heads: int = 4  # attention heads

    def __post_init__(self):
        check(self.patch >= 1, f"net.patch must be >= 1, got {self.patch}")
        check(self.dim >= 1 and self.depth >= 1 and self.heads >= 1, "net.dim, net.depth and net.heads must be >= 1")
        check(self.dim % self.heads == 0, f"net.dim ({self.dim}) must be divisible by net.heads ({self.heads})")


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/p)(W/p), p*p*C), patches in raster order, each flattened as (p, p, C)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(tokens: torch.Tensor, p: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """The inverse of `patchify`: (B, T, p*p*C) -> (B, C, H, W)."""
    C, H, W = shape
    B = tokens.shape[0]
    x = tokens.reshape(B, H // p, W // p, p, p, C).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(B, C, H, W)


def sincos_2d(dim: int, h: int, w: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (as DiT and MAE): half the width for the row, half for the
    column, (h*w, dim)."""
    def axis(n: int, d: int) -> torch.Tensor:
        freqs = 1.0 / 10_000 ** (torch.arange(d // 2, dtype=torch.float64) / max(d // 2, 1))
        args = torch.arange(n, dtype=torch.float64)[:, None] * freqs[None]
        return torch.cat([args.sin(), args.cos()], 1)  # (n, 2 * (d // 2))

    d_row = dim // 2
    rows, cols = axis(h, d_row), axis(w, dim - d_row)
    emb = torch.cat([rows[:, None].expand(h, w, -1), cols[None].expand(h, w, -1)], -1).reshape(h * w, -1)
    return torch.nn.functional.pad(emb, (0, dim - emb.shape[1])).float()


class DiT(nn.Module):
    """(B, C, H, W), t (B,), cond -> (B, C, H, W): patch embedding + fixed 2-D position embedding, `depth`
    AdaLN-Zero blocks conditioned on c = MLP(sinusoid(t)) + embedding(cond), a final AdaLN LayerNorm and a
    zero-initialised linear layer to p*p*C values per token (so the network starts by predicting 0)."""

    Options: ClassVar[type] = DiTOptions
    images_only: ClassVar[bool] = True
    lr: ClassVar[float] = 3e-4

    def __init__(self, shape: tuple[int, ...], options: DiTOptions | None = None,
                 cond_embedding: CondEmbedding | None = None, context: int = 0):
        super().__init__()
        o = options or DiTOptions()
        C, H, W = shape
        p = o.patch
        if H % p or W % p:
            raise GenlabError(f"a {H}x{W} image cannot be cut into {p}x{p} patches: use a net.patch that divides "
                              f"{math.gcd(H, W)}")
        self.shape, self.patch = (C, H, W), p
        self.embed = nn.Linear(p * p * C, o.dim)  # a p x p stride-p convolution, written on patches
        self.register_buffer("pos", sincos_2d(o.dim, H // p, W // p), persistent=False)
        self.cond = Conditioning(o.dim, o.dim, cond_embedding)
        self.context = context
        self.blocks = nn.ModuleList(Block(o.dim, o.heads, causal=False, cond=o.dim, context=context)
                                    for _ in range(o.depth))
        self.norm = nn.LayerNorm(o.dim, elementwise_affine=False)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(o.dim, 2 * o.dim))
        self.out = nn.Linear(o.dim, p * p * C)
        for m in self.modules():  # DiT's init: Xavier-uniform linear layers, zero biases
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:  # (the pooled prompt's projection has none)
                    nn.init.zeros_(m.bias)
        for block in self.blocks:  # AdaLN-Zero: every modulation starts at zero (and cross-attention's output)
            nn.init.zeros_(block.ada[1].weight)
            if block.cross is not None:
                nn.init.zeros_(block.cross.proj.weight)
        for layer in (self.ada[1], self.out):
            nn.init.zeros_(layer.weight)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        c = self.cond(t, cond)
        text = cond if self.context else None
        h = self.embed(patchify(x, self.patch)) + self.pos
        for block in self.blocks:
            h = block(h, c, text)
        shift, scale = self.ada(c).chunk(2, dim=1)
        return unpatchify(self.out(modulate(self.norm(h), shift, scale)), self.patch, self.shape)
