"""Autoregressive pixel networks: the PixelCNN of masked convolutions (van den Oord et al. 2016a, "Pixel Recurrent
Neural Networks", §3.5) and the Gated PixelCNN of vertical and horizontal stacks (van den Oord et al. 2016b,
"Conditional Image Generation with PixelCNN Decoders").

Both map an image (B, C, H, W) to per-pixel output parameters (B, P, H, W) where the output at pixel (i, j) sees
only pixels before it in raster order (all channels of a pixel are one unit: the channels of a pixel are modelled
as conditionally independent given the pixels before it). The plain PixelCNN has a blind spot (pixels up and to
the right that its stacked masks never reach); the gated one does not: its vertical stack sees every row above
and its horizontal stack the pixels to the left.

Sampling draws one pixel at a time. `stepper(blank, y)` gives the cached form (Ramachandran et al. 2017, "Fast
Generation for Convolutional Autoregressive Models"): every layer keeps its input map, and each new pixel computes
each layer at that one position only (the gated vertical stack once per row) instead of re-running the whole
network on the whole image, which gives the same outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def padded(B: int, C: int, H: int, W: int, p: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero buffer (B, C, H + 2p, W + 2p) and its interior view (B, C, H, W): writing the view fills the buffer."""
    buf = torch.zeros(B, C, H + 2 * p, W + 2 * p, device=like.device, dtype=like.dtype)
    return buf, buf[:, :, p:p + H, p:p + W]


def pointwise(layers, v: torch.Tensor) -> torch.Tensor:
    """Apply 1x1 convolutions and activations to one pixel's vectors: (B, C_in) -> (B, C_out)."""
    for m in layers if isinstance(layers, (nn.Sequential, list, tuple)) else [layers]:
        v = F.linear(v, m.weight.flatten(1), m.bias) if isinstance(m, nn.Conv2d) else m(v)
    return v


def gate(t: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) for the two channel halves of t (van den Oord et al. 2016b, eq. 2)."""
    a, b = t.chunk(2, 1)
    return torch.tanh(a) * torch.sigmoid(b)


def head(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """ReLU, 1x1 conv, ReLU, 1x1 conv to the output parameters."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, c_out, 1))


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution that sees only the pixels before the centre in raster order (type A) or those and the
    centre (type B). Padding k // 2 keeps H and W."""

    def __init__(self, c_in: int, c_out: int, k: int, mask_type: str):
        super().__init__(c_in, c_out, k, padding=k // 2)
        mask = torch.ones(k, k)
        mask[k // 2, k // 2 + (mask_type == "B"):] = 0
        mask[k // 2 + 1:] = 0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def at(self, buf: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """The output at pixel (i, j) from the layer's input padded by k // 2 (see `padded`): (B, C_out). Only
        the rows up to i are read (the mask is zero below)."""
        p = self.kernel_size[0] // 2
        w = (self.weight * self.mask)[:, :, :p + 1].flatten(1)
        return F.linear(buf[:, :, i:i + p + 1, j:j + 2 * p + 1].flatten(1), w, self.bias)


class ResidualBlock(nn.Module):
    """PixelCNN's residual block (van den Oord et al. 2016a, Fig. 5): 1x1 (2h -> h), masked k x k type B (h -> h),
    1x1 (h -> 2h), ReLU before each, added to the input."""

    def __init__(self, hidden: int, k: int):
        super().__init__()
        self.inp = nn.Conv2d(2 * hidden, hidden, 1)
        self.conv = MaskedConv2d(hidden, hidden, k, "B")
        self.out = nn.Conv2d(hidden, 2 * hidden, 1)

    def forward(self, h):
        a = F.relu(self.inp(F.relu(h)))
        return h + self.out(F.relu(self.conv(a)))

    def at(self, buf, h, i, j):
        """h: the block's input at (i, j) (B, 2h); buf: the masked conv's padded input map, written here."""
        p = self.conv.kernel_size[0] // 2
        buf[:, :, i + p, j + p] = F.relu(pointwise(self.inp, F.relu(h)))
        return h + pointwise(self.out, F.relu(self.conv.at(buf, i, j)))


class PixelCNN(nn.Module):
    """A masked conv type A (first_kernel), `blocks` residual blocks with type B masks, and a 1x1 head:
    (B, C_in, H, W), labels (B,) or None -> (B, C_out, H, W). Class conditioning adds a learned per-class bias
    after the first layer."""

    def __init__(self, c_in: int, c_out: int, hidden: int = 64, blocks: int = 6, kernel: int = 3,
                 first_kernel: int = 7, classes: int = 0):
        super().__init__()
        self.first = MaskedConv2d(c_in, 2 * hidden, first_kernel, "A")
        self.blocks = nn.ModuleList(ResidualBlock(hidden, kernel) for _ in range(blocks))
        self.head = head(2 * hidden, 2 * hidden, c_out)
        self.embed = nn.Embedding(classes, 2 * hidden) if classes else None

    def forward(self, x, y=None):
        h = self.first(x)
        if self.embed is not None:
            h = h + self.embed(y)[:, :, None, None]
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    def stepper(self, blank: torch.Tensor, y=None) -> _PlainStepper:
        """Cached raster-order evaluation for images shaped like `blank` (B, C, H, W; its values are not read)."""
        return _PlainStepper(self, blank, y)


class _PlainStepper:
    """Cached evaluation for raster-order sampling into `image` (B, C, H, W, zeros): fill pixel (i, j) of
    `image` after `at(i, j)`; at(i, j) -> the output parameters at (i, j), (B, C_out)."""

    def __init__(self, net: PixelCNN, x: torch.Tensor, y):
        B, C, H, W = x.shape
        self.net = net
        self.xbuf, self.image = padded(B, C, H, W, net.first.kernel_size[0] // 2, x)
        self.bufs = [padded(B, b.conv.in_channels, H, W, b.conv.kernel_size[0] // 2, x)[0] for b in net.blocks]
        self.cond = net.embed(y) if net.embed is not None else 0

    def at(self, i: int, j: int) -> torch.Tensor:
        h = self.net.first.at(self.xbuf, i, j) + self.cond
        for block, buf in zip(self.net.blocks, self.bufs):
            h = block.at(buf, h, i, j)
        return pointwise(self.net.head, h)


class GatedLayer(nn.Module):
    """One layer of the Gated PixelCNN (van den Oord et al. 2016b, Fig. 2). The vertical stack's k-wide
    convolution covers the rows above and the current row, (k // 2 + 1) x k; shifted down one row, it feeds the
    horizontal stack through a 1x1 conv, so the horizontal output at (i, j) sees every earlier row and, through
    its own 1 x (k // 2 + 1) convolution, the pixels to its left (the first layer excludes the pixel itself).
    Both stacks are gated, tanh(.) * sigmoid(.); the horizontal one is residual after the first layer."""

    def __init__(self, c_in: int, hidden: int, k: int, first: bool, classes: int = 0):
        super().__init__()
        self.p, self.first = k // 2, first
        self.v = nn.Conv2d(c_in, 2 * hidden, (self.p + 1, k))
        self.h = nn.Conv2d(c_in, 2 * hidden, (1, self.p if first else self.p + 1))
        self.v2h = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.h_out = nn.Conv2d(hidden, hidden, 1)
        self.embed = nn.Embedding(classes, 4 * hidden) if classes else None  # per-class biases of both stacks

    def condition(self, y) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        if self.embed is None:
            return 0.0, 0.0
        cv, ch = self.embed(y).chunk(2, 1)
        return cv, ch

    def forward(self, v, h, y=None):
        H, W, p = v.shape[-2], v.shape[-1], self.p
        cv, ch = self.condition(y)
        v_pre = self.v(F.pad(v, (p, p, p, 0))) + (cv[:, :, None, None] if torch.is_tensor(cv) else cv)
        h_pre = self.h(F.pad(h, (p, 0)))[..., :W] + self.v2h(F.pad(v_pre, (0, 0, 1, 0))[:, :, :H])
        h_pre = h_pre + (ch[:, :, None, None] if torch.is_tensor(ch) else ch)
        h_new = self.h_out(gate(h_pre))
        return gate(v_pre), h_new if self.first else h + h_new


class GatedPixelCNN(nn.Module):
    """A first gated layer with a first_kernel-wide view (type A), `layers` more with `kernel`, and a 1x1 head on
    the horizontal stack: (B, C_in, H, W), labels (B,) or None -> (B, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, hidden: int = 64, layers: int = 8, kernel: int = 3,
                 first_kernel: int = 7, classes: int = 0):
        super().__init__()
        self.layers = nn.ModuleList([GatedLayer(c_in, hidden, first_kernel, True, classes)] +
                                    [GatedLayer(hidden, hidden, kernel, False, classes) for _ in range(layers)])
        self.head = head(hidden, 2 * hidden, c_out)

    def forward(self, x, y=None):
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h, y)
        return self.head(h)

    def stepper(self, blank: torch.Tensor, y=None) -> _GatedStepper:
        """Cached raster-order evaluation for images shaped like `blank` (B, C, H, W; its values are not read)."""
        return _GatedStepper(self, blank, y)


class _GatedStepper:
    """Cached evaluation for the gated stacks (as _PlainStepper). Each layer keeps its padded input maps; the
    vertical stack advances a whole row once the row above is final, the horizontal stack one pixel at a time."""

    def __init__(self, net: GatedPixelCNN, x: torch.Tensor, y):
        B, C, H, W = x.shape
        self.net, self.W = net, W
        first = net.layers[0]
        self.xbuf, self.image = padded(B, C, H, W, first.p, x)
        self.vbufs = [self.xbuf] + [padded(B, g.v.in_channels, H, W, g.p, x)[0] for g in net.layers[1:]]
        self.hbufs = [self.xbuf] + [padded(B, g.h.in_channels, H, W, g.p, x)[0] for g in net.layers[1:]]
        self.links = [x.new_zeros(B, g.v.out_channels, W) for g in net.layers]  # v_pre of the row above
        self.conds = [g.condition(y) for g in net.layers]
        self.row = -1  # the last row whose vertical outputs are in links

    def _advance(self, r: int):
        """Rows <= r of the image are final: every layer's vertical pre-activation at row r."""
        for k, (layer, (cv, _)) in enumerate(zip(self.net.layers, self.conds)):
            p = layer.p
            v_pre = F.conv2d(self.vbufs[k][:, :, r:r + p + 1], layer.v.weight, layer.v.bias)[:, :, 0]  # (B, 2h, W)
            v_pre = v_pre + (cv[:, :, None] if torch.is_tensor(cv) else cv)
            self.links[k] = v_pre
            if k + 1 < len(self.net.layers):
                q = self.net.layers[k + 1].p
                self.vbufs[k + 1][:, :, r + q, q:q + self.W] = gate(v_pre)
        self.row = r

    def at(self, i: int, j: int) -> torch.Tensor:
        while self.row < i - 1:  # raster order: every row above is final
            self._advance(self.row + 1)
        h = None
        for k, (layer, (_, ch)) in enumerate(zip(self.net.layers, self.conds)):
            p, buf = layer.p, self.hbufs[k]
            width = p if layer.first else p + 1
            h_pre = F.linear(buf[:, :, i + p, j:j + width].flatten(1), layer.h.weight.flatten(1), layer.h.bias)
            h_pre = h_pre + pointwise(layer.v2h, self.links[k][:, :, j]) + ch
            h = pointwise(layer.h_out, gate(h_pre)) + (0 if layer.first else buf[:, :, i + p, j + p])
            if k + 1 < len(self.net.layers):
                q = self.net.layers[k + 1].p
                self.hbufs[k + 1][:, :, i + q, j + q] = h
        return pointwise(self.net.head, h)
