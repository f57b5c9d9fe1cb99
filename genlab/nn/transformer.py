"""Transformer blocks in the style of nanoGPT (Radford et al. 2019's pre-norm GPT-2 block): LayerNorm, multi-head
self-attention (causal or not), LayerNorm, a 4x GELU MLP, each residual. `CausalTransformer` is a decoder-only
model over token sequences (VQ-VAE codes in vq-ar); DiT (genlab.nn.dit) uses the same blocks with AdaLN-Zero
conditioning (`Block(..., cond=d)`) and, for prompts, cross-attention to the prompt's tokens (`context=d_text`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """(B, T, D) -> (B, T, D), `heads` heads, causal (position t attends to <= t) when asked."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, causal: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads, self.causal, self.dropout = heads, causal, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, cache: dict | None = None):
        """cache (incremental decoding): a dict this layer keeps its keys and values in; x is then the whole
        sequence on the first call and one new position per call after it."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if "k" in cache:  # one new position: it attends to every cached one and itself
                if T != 1:
                    raise ValueError("after the first call a cached attention takes one position at a time")
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal and T > 1,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class CrossAttention(nn.Module):
    """Queries x (B, T, D) attend to a context (B, L, d_ctx), LayerNorm-ed, where mask (B, L) is True -> (B, T, D).
    An example whose context is all masked gets exactly 0 (its queries attend to nothing), so x + cross(x) is
    then x: the unconditional path. The output projection starts at zero, so the layer starts as a no-op."""

    def __init__(self, dim: int, context: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm = nn.LayerNorm(context)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(context, 2 * dim), nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        h = self.heads
        q = self.q(x).view(B, T, h, D // h).transpose(1, 2)
        k, v = self.kv(self.norm(context.to(x.dtype))).view(B, -1, 2, h, D // h).permute(2, 0, 3, 1, 4)
        some = mask.any(1)
        allowed = (mask | ~some[:, None])[:, None, None, :]  # an all-masked row attends everywhere, then is zeroed
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.proj(out.transpose(1, 2).reshape(B, T, D)) * some[:, None, None].to(x.dtype)


def modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: h (B, T, D) shifted and scaled per example by (B, D) vectors."""
    return h * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)): (B, T, D) -> (B, T, D).

    cond > 0: AdaLN-Zero (Peebles & Xie 2023, DiT §3.2): a vector c (B, cond) regresses the LayerNorms' shift and
    scale and a gate on each residual branch, x + gate * attn(ln(x) * (1 + scale) + shift); the regression starts
    at zero, so the block starts as the identity.
    context > 0: between attention and MLP, x + cross(ln(x), tokens, mask), cross-attention to a prompt's tokens of
    width `context` (as PixArt-alpha adds it to DiT blocks; Chen et al. 2023), also starting at zero."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, causal: bool = True, cond: int = 0,
                 context: int = 0):
        super().__init__()
        affine = not cond  # under AdaLN the shift and scale come from c
        self.ln1, self.ln2 = nn.LayerNorm(dim, elementwise_affine=affine), nn.LayerNorm(dim, elementwise_affine=affine)
        self.attn = SelfAttention(dim, heads, dropout, causal)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))
        self.ada = None
        if cond:
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cond, 6 * dim))
            nn.init.zeros_(self.ada[1].weight)
            nn.init.zeros_(self.ada[1].bias)
        self.cross = None
        if context:
            self.ln3, self.cross = nn.LayerNorm(dim), CrossAttention(dim, context, heads)

    def _cross(self, x, text):
        """The cross-attention residual where the block has one and a prompt is given (text: a TextCond)."""
        return x if self.cross is None or text is None else x + self.cross(self.ln3(x), text.tokens, text.mask)

    def forward(self, x, c=None, text=None, cache: dict | None = None):
        if self.ada is None:
            x = self._cross(x + self.attn(self.ln1(x), cache), text)
            return x + self.mlp(self.ln2(x))
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)
        x = self._cross(x + gate1[:, None] * self.attn(modulate(self.ln1(x), shift1, scale1)), text)
        return x + gate2[:, None] * self.mlp(modulate(self.ln2(x), shift2, scale2))


class CausalTransformer(nn.Module):
    """Next-token logits: tokens (B, T) in 0..vocab-1, labels (B,) or None -> (B, T, vocab), where the logits at t
    predict token t from tokens < t (a learned start token, or the class embedding, stands before token 0).
    causal=False: the same blocks as a bidirectional encoder (BERT's masked-token prediction, Devlin et al. 2019):
    no shift, every position attends to every other, and the logits at t read the whole sequence."""

    def __init__(self, vocab: int, length: int, dim: int = 128, layers: int = 4, heads: int = 4,
                 dropout: float = 0.0, classes: int = 0, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        # the token before the first, per class if conditional (a bidirectional encoder has no shift, so none)
        self.start = nn.Embedding(max(classes, 1), dim) if causal else None
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, causal) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        B, T = tokens.shape
        if self.causal:
            first = self.start(y if y is not None else tokens.new_zeros(B))[:, None]
            h = torch.cat([first, self.tok(tokens[:, :-1])], 1) + self.pos[:T]  # shifted right by one
        else:
            h = self.tok(tokens) + self.pos[:T]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln(h))

    def next_logits(self, tokens: torch.Tensor, t: int, y: torch.Tensor | None, cache: list[dict]) -> torch.Tensor:
        """Logits (B, vocab) of token t of `tokens` (B, L), the sequence being written, given its tokens < t. Only
        token t - 1 is read: the keys and values of the positions before it are in `cache` (one dict per block,
        empty at t = 0), so writing L tokens runs L positions, not L^2 / 2; equal to forward's logits at t up to
        rounding."""
        if t == 0:
            h = self.start(y if y is not None else tokens.new_zeros(len(tokens)))
        else:
            h = self.tok(tokens[:, t - 1])
        h = (h + self.pos[t])[:, None]
        for block, kv in zip(self.blocks, cache, strict=True):
            h = block(h, cache=kv)
        return self.head(self.ln(h))[:, 0]
