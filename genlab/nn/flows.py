"""Invertible layers for image flows (RealNVP, Dinh et al. 2017; Glow, Kingma & Dhariwal 2018).

Every layer maps x -> (y, ladj) with ladj: (B,) the log |det dy/dx| per example, and has `inverse(y) -> x`.
Tensors are (B, C, H, W). The log-determinants are summed in float32 whatever the network computed in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import autocast_off, fp32


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 patch becomes 4 channels (RealNVP §3.6). Volume-preserving."""
    B, C, H, W = x.shape
    x = x.view(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(B, C * 4, H // 2, W // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """The inverse of `squeeze`: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    B, C4, H, W = x.shape
    x = x.view(B, C4 // 4, 2, 2, H, W).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(B, C4 // 4, H * 2, W * 2)


class ActNorm(nn.Module):
    """Per-channel affine y = (x + loc) * exp(log_scale) (Glow §3.1), initialised from the first batch so that y
    has zero mean and unit variance per channel: set `pending = True`, run one forward pass."""

    def __init__(self, channels: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))  # (C,): vectors, so weight decay leaves them alone
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.pending = False

    def forward(self, x):
        if self.pending:
            with torch.no_grad():
                x32 = x.float()
                self.loc.copy_(-x32.mean((0, 2, 3)))
                self.log_scale.copy_(-torch.log(x32.std((0, 2, 3)) + 1e-6))
            self.pending = False
        y = (x + self.loc[:, None, None]) * torch.exp(self.log_scale)[:, None, None]
        return y, self.log_scale.sum().expand(len(x)) * x.shape[2] * x.shape[3]

    def inverse(self, y):
        return y * torch.exp(-self.log_scale)[:, None, None] - self.loc[:, None, None]


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with an LU-parameterised weight W = P L (U + diag(sign(s) exp(log|s|)))
    (Glow §3.2): log|det| = H W sum(log|s|), O(C) instead of O(C^3). Starts from a random rotation."""

    def __init__(self, channels: int):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        P, L, U = torch.linalg.lu(w)
        s = torch.diagonal(U)
        self.register_buffer("P", P)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.L = nn.Parameter(L)
        self.U = nn.Parameter(torch.triu(U, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> torch.Tensor:
        eye = torch.eye(len(self.P), device=self.P.device, dtype=self.L.dtype)
        L = self.L * self.lower_mask + eye
        U = self.U * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.P @ L @ U

    def forward(self, x):
        with autocast_off(x.device):  # a float32 map, so its log-determinant is the one applied
            y = F.conv2d(fp32(x), self.weight()[:, :, None, None])
        return y, self.log_s.sum().expand(len(x)) * x.shape[2] * x.shape[3]

    def inverse(self, y):
        w_inv = torch.linalg.inv(self.weight().double()).to(y.dtype)
        return F.conv2d(y, w_inv[:, :, None, None])


class CouplingNet(nn.Module):
    """The s, t network of a coupling: 3x3 conv, `blocks` residual blocks of two 3x3 convs, 3x3 conv to 2 * out
    channels, zero-initialised so that every coupling starts as the identity (Glow §3.3)."""

    def __init__(self, cin: int, cout: int, hidden: int, blocks: int):
        super().__init__()
        self.inp = nn.Conv2d(cin, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(
            nn.BatchNorm2d(hidden), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1)) for _ in range(blocks))
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, 2 * cout, 3, padding=1))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)


class AffineCoupling(nn.Module):
    """y_b = x_b * exp(s(x_a)) + t(x_a), y_a = x_a (RealNVP §3.3), with s = scale * tanh(raw) for stability.
    mask: checkerboard (a = pixels with (h + w + parity) even) or channel (a = the first half of the channels,
    or the second with parity 1). cond: channels of a condition map c (B, cond, H, W) that s and t also see."""

    def __init__(self, channels: int, mask: str, parity: int, hidden: int, blocks: int, cond: int = 0):
        super().__init__()
        self.mask, self.parity = mask, parity
        half = channels // 2
        cin, cout = (channels, channels) if mask == "checkerboard" else (half if not parity else channels - half,
                                                                         channels - half if not parity else half)
        self.net = CouplingNet(cin + cond, cout, hidden, blocks)
        self.scale = nn.Parameter(torch.ones(cout))

    def _board(self, x):
        H, W = x.shape[2:]
        idx = torch.arange(H, device=x.device)[:, None] + torch.arange(W, device=x.device)[None]
        return ((idx + self.parity) % 2 == 0).to(x.dtype)[None, None]  # 1 on the conditioning pixels

    def _split(self, x):
        half = x.shape[1] // 2
        a, b = x[:, :half], x[:, half:]
        return (b, a) if self.parity else (a, b)

    def _join(self, a, b):
        return torch.cat([b, a] if self.parity else [a, b], 1)

    def _st(self, xa, c=None):
        h = fp32(self.net(xa if c is None else torch.cat([xa, c.to(xa.dtype)], 1)))
        s_raw, t = h.chunk(2, 1)
        return self.scale[:, None, None] * torch.tanh(s_raw), t

    def forward(self, x, c=None):
        if self.mask == "checkerboard":
            m = self._board(x)
            s, t = self._st(x * m, c)
            s, t = s * (1 - m), t * (1 - m)
            return x * m + (1 - m) * (x * torch.exp(s) + t), s.flatten(1).sum(1)
        a, b = self._split(x)
        s, t = self._st(a, c)
        return self._join(a, b * torch.exp(s) + t), s.flatten(1).sum(1)

    def inverse(self, y, c=None):
        if self.mask == "checkerboard":
            m = self._board(y)
            s, t = self._st(y * m, c)
            s, t = s * (1 - m), t * (1 - m)
            return y * m + (1 - m) * ((y - t) * torch.exp(-s))
        a, b = self._split(y)
        s, t = self._st(a, c)
        return self._join(a, (b - t) * torch.exp(-s))


class VariationalDequantizer(nn.Module):
    """q(v | x), a learned distribution of the dequantisation noise v in (0, 1)^D given the discrete image x
    (Ho et al. 2019, Flow++ §3.1): eps ~ N(0, I), `couplings` checkerboard affine couplings conditioned on
    features of x, then a sigmoid. forward(x) -> (v, log q(v | x) per example); the bound it enters is
    log P(x) >= E_q [log p(x + v) - log q(v | x)], tighter than uniform noise's (where log q = 0)."""

    def __init__(self, channels: int, hidden: int, couplings: int = 4):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(hidden, hidden, 3, padding=1))
        self.couplings = nn.ModuleList(AffineCoupling(channels, "checkerboard", i % 2, hidden, 0, cond=hidden)
                                       for i in range(couplings))

    def transform(self, eps: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """eps -> v given x, with log |det dv/deps| per example."""
        c = self.features(x)
        h, ladj = eps, torch.zeros(len(eps), device=eps.device)
        for layer in self.couplings:
            h, step = layer(h, c)
            ladj = ladj + step
        h = fp32(h)
        return torch.sigmoid(h), ladj + (F.logsigmoid(h) + F.logsigmoid(-h)).flatten(1).sum(1)

    def forward(self, x):
        eps = torch.randn_like(x, dtype=torch.float32)
        v, ladj = self.transform(eps, x)
        log_normal = (-0.5 * (eps.pow(2) + math.log(2 * math.pi))).flatten(1).sum(1)
        return v, log_normal - ladj
