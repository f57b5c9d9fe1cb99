"""Denoising networks, one signature for all: `net(x, t, cond) -> prediction` shaped like x.

x: (B, *shape) noisy data; t: (B,) integer timesteps or real noise levels (the sinusoidal embedding takes
both); cond: what the conditioner produced (class labels, a TextCond of prompt tokens; None: unconditional).
Like diffusers' `UNet2DModel`, a denoiser knows nothing of the noise schedule: what its output means (eps, x0
or v) is the diffusion process's business.

`DENOISERS` names them; each entry declares its options dataclass (`Options`, checked like configs), whether
it needs images (`images_only`) and the learning rate it trains well with (`lr`). Build one with
`build_denoiser(name, shape, options, cond_embedding, context)`; `context` > 0 (text-conditioned models, the
prompt tokens' width) adds cross-attention to the prompt (Rombach et al. 2022), where the denoiser supports it.

- `unet`: Ho et al. 2020's U-Net with Dhariwal & Nichol 2021's AdaGN scale-shift conditioning; images only.
- `mlp`: an MLP on flattened x with Fourier features of each coordinate; any data.
- `dit`: Peebles & Xie 2023's diffusion transformer on p x p patches, AdaLN-Zero (genlab.nn.dit); images only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check, field_names, from_dict
from ..errors import GenlabError
from .blocks import ACTIVATIONS, Attention, SpatialCrossAttention, activation, fourier_features, group_norm, zero_
from .dit import DiT
from .embeddings import CondEmbedding, Conditioning


@dataclass
class UNetOptions:
    channels: int = 32  # base width (1.1M parameters at 28x28: sized for CPUs; 64-128 on a GPU)
    mults: tuple[int, ...] = (1, 2, 2)  # width multiplier per level (each level halves H and W)
    res_blocks: int = 1  # residual blocks per level
    attention: tuple[int, ...] = ()  # resolutions (H) with self-attention besides the middle, which always has it
    dropout: float = 0.0  # dropout in the residual blocks

    def __post_init__(self):
        check(self.channels >= 8 and len(self.mults) >= 1 and all(m >= 1 for m in self.mults),
              "channels must be >= 8 and mults positive")
        check(self.res_blocks >= 1, f"res_blocks must be >= 1, got {self.res_blocks}")
        check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class MLPOptions:
    hidden: tuple[int, ...] = (256, 256, 256)  # widths of the hidden layers
    fourier: int = 8  # sin/cos features of each coordinate at 2^k pi, k < fourier (0: raw x only)
    act: str = "silu"  # activation: silu | relu | gelu | leaky_relu | tanh

    def __post_init__(self):
        check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "hidden must be positive widths")
        check(0 <= self.fourier <= 16, f"fourier must be in [0, 16], got {self.fourier}")
        check(self.act in ACTIVATIONS, f"unknown activation '{self.act}': use one of {', '.join(ACTIVATIONS)}")


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, then AdaGN: norm(h) * (1 + scale(emb)) + shift(emb), SiLU, dropout, conv."""

    def __init__(self, c_in: int, c_out: int, d_emb: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(d_emb, 2 * c_out)
        self.norm2 = group_norm(c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class UNet(nn.Module):
    """(B, C, H, W), t (B,), cond -> (B, C, H, W). One level per entry of `mults` (widths channels * mult),
    `res_blocks` residual blocks per level, stride-2 conv down / nearest-neighbour up between levels,
    self-attention at the resolutions listed in `attention` and in the middle. With a `context` (prompts),
    cross-attention to the prompt's tokens after every residual block below full resolution and in the middle."""

    Options: ClassVar[type] = UNetOptions
    images_only: ClassVar[bool] = True
    lr: ClassVar[float] = 2e-4

    def __init__(self, shape: tuple[int, ...], options: UNetOptions | None = None,
                 cond_embedding: CondEmbedding | None = None, context: int = 0):
        super().__init__()
        o = options or UNetOptions()
        channels, mults, dropout = o.channels, tuple(o.mults), o.dropout
        c_img, h, w = shape
        if h % 2 ** (len(mults) - 1) or w % 2 ** (len(mults) - 1):
            raise GenlabError(f"image size {h}x{w} cannot be halved {len(mults) - 1} times; "
                              f"use fewer levels (--set net.mults=...) or resize the data")
        d_emb = 4 * channels
        self.cond = Conditioning(channels, d_emb, cond_embedding)
        self.context = context
        self.inp = nn.Conv2d(c_img, channels, 3, padding=1)
        self.down, skips, c, res = nn.ModuleList(), [channels], channels, h
        for i, m in enumerate(mults):
            for _ in range(o.res_blocks):
                self.down.append(self._level_block(c, channels * m, d_emb, dropout, res in o.attention,
                                                   context if res < h else 0))
                c = channels * m
                skips.append(c)
            if i < len(mults) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(c, c, d_emb, dropout), Attention(c), ResBlock(c, c, d_emb, dropout),
                                  *([SpatialCrossAttention(c, context)] if context else [])])  # runs after Attention
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            for _ in range(o.res_blocks + 1):
                self.up.append(self._level_block(c + skips.pop(), channels * m, d_emb, dropout, res in o.attention,
                                                 context if res < h else 0))
                c = channels * m
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c, c, 3, padding=1)))
                res *= 2
        self.out = nn.Sequential(group_norm(c), nn.SiLU(), zero_(nn.Conv2d(c, c_img, 3, padding=1)))

    @staticmethod
    def _level_block(c_in, c_out, d_emb, dropout, attn: bool, context: int) -> nn.ModuleList:
        """ResBlock, then self-attention if `attn`, then cross-attention to prompts of width `context` if > 0."""
        return nn.ModuleList([ResBlock(c_in, c_out, d_emb, dropout)] + ([Attention(c_out)] if attn else [])
                             + ([SpatialCrossAttention(c_out, context)] if context else []))

    @staticmethod
    def _run(block: nn.Module, h: torch.Tensor, emb: torch.Tensor, text) -> torch.Tensor:
        if not isinstance(block, nn.ModuleList):
            return block(h)  # down- or up-sampling
        h = block[0](h, emb)  # ResBlock, then Attention and/or SpatialCrossAttention
        for layer in block[1:]:
            if isinstance(layer, SpatialCrossAttention):
                h = layer(h, text) if text is not None else h
            else:
                h = layer(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        emb = self.cond(t, cond)
        text = cond if self.context else None
        h = self.inp(x)
        hs = [h]
        for block in self.down:
            h = self._run(block, h, emb, text)
            hs.append(h)
        h = self.mid[1](self.mid[0](h, emb))
        if len(self.mid) > 3 and text is not None:
            h = self.mid[3](h, text)
        h = self.mid[2](h, emb)
        for block in self.up:
            if isinstance(block, nn.ModuleList):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(block, h, emb, text)
        return self.out(h)


class MLPDenoiser(nn.Module):
    """(B, *shape), t (B,), cond -> (B, *shape) on x flattened to (B, D): Fourier features of x, then hidden
    layers act(W h + U emb) with residual connections where widths match; the output layer starts at zero."""

    Options: ClassVar[type] = MLPOptions
    images_only: ClassVar[bool] = False
    lr: ClassVar[float] = 1e-3

    def __init__(self, shape: tuple[int, ...], options: MLPOptions | None = None,
                 cond_embedding: CondEmbedding | None = None, context: int = 0):
        super().__init__()
        if context:
            raise GenlabError("the mlp denoiser has no cross-attention for prompts: use arch=unet or arch=dit")
        o = options or MLPOptions()
        d, hidden = math.prod(shape), tuple(o.hidden)
        d_emb = hidden[0]
        self.fourier = o.fourier
        self.cond = Conditioning(d_emb, d_emb, cond_embedding)
        dims = [d * (1 + 2 * o.fourier), *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.embs = nn.ModuleList(nn.Linear(d_emb, b) for b in hidden)
        self.act = activation(o.act)
        self.out = zero_(nn.Linear(hidden[-1], d))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        emb = F.silu(self.cond(t, cond))
        h = fourier_features(x.flatten(1), self.fourier)
        for lin, e in zip(self.layers, self.embs):
            z = self.act(lin(h) + e(emb))
            h = h + z if z.shape == h.shape else z
        return self.out(h).view(x.shape)


DENOISERS: dict[str, type[nn.Module]] = {"unet": UNet, "mlp": MLPDenoiser, "dit": DiT}


def denoiser_class(name: str) -> type[nn.Module]:
    if name not in DENOISERS:
        raise GenlabError(f"unknown denoiser '{name}': use one of {', '.join(DENOISERS)}")
    return DENOISERS[name]


def denoiser_options(name: str, options: dict[str, Any] | None, where: str = "denoiser") -> Any:
    """The options dataclass of denoiser `name` from a dict (unknown keys and bad values: one-line errors that
    name them as `net.KEY`)."""
    return from_dict(denoiser_class(name).Options, options, where=f"{where} {name}", prefix="net.")


def denoiser_option_names(name: str) -> list[str]:
    return field_names(denoiser_class(name).Options)


def build_denoiser(name: str, shape: tuple[int, ...], options: Any = None,
                   cond_embedding: CondEmbedding | None = None, context: int = 0) -> nn.Module:
    """Denoiser `name` for data of `shape` (without the batch), with its options (a dataclass or a dict), the
    conditioner's embedding factory (None: unconditional) and the width of prompt tokens to cross-attend to
    (0: none)."""
    cls = denoiser_class(name)
    if not isinstance(options, cls.Options):
        options = denoiser_options(name, options)
    return cls(tuple(shape), options, cond_embedding, context)
