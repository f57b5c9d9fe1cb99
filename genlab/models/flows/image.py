"""Normalizing flows on images, written in genlab (no maintained library has them): `realnvp` (Dinh et al. 2017:
affine couplings with checkerboard and channel masks, squeeze, multi-scale factor-out; ActNorm in place of batch
norm between couplings) and `glow` (Kingma & Dhariwal 2018: steps of ActNorm, invertible 1x1 convolution with an
LU weight and a channel affine coupling, multi-scale).

Pipeline, x (B, C, H, W) in [-1, 1] with L levels per pixel:
    u = dequantise(x)                       noise within each level's bin: uniform (Theis et al. 2016), or
                                            variational, v ~ q(v | x) learned with the flow (Ho et al. 2019)
    y = logit(a + (1 - 2a) (u + 1) / 2)     a = 0.05 (RealNVP §4.1), onto the real line
    z = f(y)                                the flow; every scale factors half its channels out to the base
    log p(u) = log N(z; 0, I) + log|det dz/du|
`log_prob` is log p(u) - log q(v | x) - D log(L/2) (log q = 0 for uniform noise), one draw of the noise: the
usual lower bound on the 8-bit image's log-probability, and what papers report in bits/dim. `encode` is x -> z
flattened (B, D), `decode` z -> x, `sample` decodes z ~ N(0, T^2 I). Glow here is the paper's flow without its
learned split priors (factored-out z are standard normal), its coupling networks 3x3 convolutions only. The
capabilities run in eval mode (batch norm on running statistics), whatever mode the model is in. Precision: the
coupling networks run in autocast under bf16/fp16 training, every log-determinant and the 1x1 convolutions in
float32; `log_prob`, `encode` and `decode` run in float32 altogether.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from ...config import check
from ...data.dataset import bin_centres, dequantize
from ...errors import GenlabError
from ...nn.flows import ActNorm, AffineCoupling, InvConv1x1, VariationalDequantizer, squeeze, unsqueeze
from ...precision import exact
from ..base import evaluating
from .base import Flow

LOG2PI = math.log(2 * math.pi)


@dataclass
class ImageFlowConfig:
    hidden: int = 32  # channels of each coupling's network
    blocks: int = 1  # residual blocks per coupling network
    alpha: float = 0.05  # logit squashing: y = logit(alpha + (1 - 2 alpha) p)
    dequantization: str = "uniform"  # uniform | variational (a learned q(noise | image), Flow++: a tighter bound)

    def __post_init__(self):
        check(self.hidden >= 1 and self.blocks >= 0, "hidden must be >= 1 and blocks >= 0")
        check(0 < self.alpha < 0.5, f"alpha must be in (0, 0.5), got {self.alpha}")
        check(self.dequantization in ("uniform", "variational"),
              f"dequantization must be uniform or variational, got '{self.dequantization}'")


@dataclass
class RealNVPConfig(ImageFlowConfig):
    hidden: int = 32  # channels of each coupling's residual network (64 with 2 blocks: 2.4M parameters, 4.5x slower)
    blocks: int = 1  # residual blocks per coupling network
    scales: int = 2  # squeeze-and-factor-out scales before the final couplings (H and W divisible by 2^scales)

    def __post_init__(self):
        super().__post_init__()
        check(self.scales >= 1, f"scales must be >= 1, got {self.scales}")


@dataclass
class GlowConfig(ImageFlowConfig):
    hidden: int = 128  # channels of each coupling's network
    blocks: int = 0  # residual blocks in each coupling network (Glow: none)
    levels: int = 2  # levels L, each a squeeze then `steps` flow steps; all but the last factor half out
    steps: int = 8  # flow steps K per level: ActNorm, invertible 1x1 conv, affine coupling

    def __post_init__(self):
        super().__post_init__()
        check(self.levels >= 1 and self.steps >= 1, "levels and steps must be >= 1")


class Level(nn.Module):
    """layers before an optional squeeze, layers after it, then (optionally) half the channels factored out."""

    def __init__(self, pre: list[nn.Module], squeeze: bool, post: list[nn.Module], split: bool):
        super().__init__()
        self.pre, self.post = nn.ModuleList(pre), nn.ModuleList(post)
        self.squeeze, self.split = squeeze, split


class ImageFlow(Flow):
    def __init__(self, spec, config):
        super().__init__(spec, config)
        if not spec.is_image:
            raise GenlabError(f"{self.kind} models images; {spec.name} is {spec.kind} data (use maf or nsf)")
        C, H, W = spec.shape
        n = self._squeezes()
        if H % 2**n or W % 2**n:
            raise GenlabError(f"{self.kind} with {n} squeezes needs height and width divisible by {2**n}; "
                              f"{spec.name} is {H}x{W}: resize (--set data.size=...) or use fewer scales")
        self.levels = nn.ModuleList(self._build(C))
        self.z_shapes = self._z_shapes(C, H, W)
        variational = config.dequantization == "variational"
        self.dequantizer = VariationalDequantizer(C, 32) if variational else None  # Flow++ uses far more
        self.log_offset = -spec.dims * math.log((spec.levels or 256) / 2)  # the bin width is 2/L in [-1, 1]

    @abstractmethod
    def _squeezes(self) -> int:
        """How many times the image is squeezed (H and W must be divisible by 2 to that power)."""

    @abstractmethod
    def _build(self, channels: int) -> list[Level]:
        """The levels of the flow for images with `channels` channels."""

    def _z_shapes(self, C, H, W) -> list[tuple[int, int, int]]:
        shapes = []
        for lv in self.levels:
            if lv.squeeze:
                C, H, W = C * 4, H // 2, W // 2
            if lv.split:
                shapes.append((C // 2, H, W))
                C = C - C // 2
        return shapes + [(C, H, W)]

    def train_defaults(self):
        return {"lr": 1e-3, "warmup_steps": 200}

    # ---- the map
    def _logit(self, u):
        """u in [-1, 1] -> y on the real line, with log|dy/du| per example."""
        a = self.config.alpha
        s = a + (1 - 2 * a) * (u + 1) / 2
        y = torch.log(s) - torch.log1p(-s)
        ladj = (math.log((1 - 2 * a) / 2) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        return y, ladj

    def _unlogit(self, y):
        a = self.config.alpha
        return (torch.sigmoid(y) - a) / (1 - 2 * a) * 2 - 1

    def flow_forward(self, y: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """y (B, C, H, W) -> ([z per scale], log|det| (B,))."""
        ladj = torch.zeros(len(y), device=y.device)
        zs, h = [], y
        for lv in self.levels:
            for layer in lv.pre:
                h, step_ladj = layer(h)
                ladj = ladj + step_ladj
            if lv.squeeze:
                h = squeeze(h)
            for layer in lv.post:
                h, step_ladj = layer(h)
                ladj = ladj + step_ladj
            if lv.split:
                half = h.shape[1] // 2
                zs.append(h[:, :half])
                h = h[:, half:]
        return zs + [h], ladj

    def flow_inverse(self, zs: list[torch.Tensor]) -> torch.Tensor:
        h = zs[-1]
        k = len(zs) - 1
        for lv in reversed(self.levels):
            if lv.split:
                k -= 1
                h = torch.cat([zs[k], h], 1)
            for layer in reversed(lv.post):
                h = layer.inverse(h)
            if lv.squeeze:
                h = unsqueeze(h)
            for layer in reversed(lv.pre):
                h = layer.inverse(h)
        return h

    def _dequantised(self, x):
        """x -> (u, log q(v | x)): the image plus noise within each level's bin, and the log-density of that noise
        (0 for uniform noise)."""
        L = self.spec.levels or 256
        if self.dequantizer is None:
            return dequantize(x, L), torch.zeros(len(x), device=x.device)
        v, log_q = self.dequantizer(x)
        return bin_centres(x, L) + (v - 0.5) * 2 / L, log_q

    def _log_density(self, u):
        """log p(u) of dequantised images u (B, C, H, W): (B,)."""
        y, ladj = self._logit(u.float())
        zs, flow_ladj = self.flow_forward(y)
        base = sum((-0.5 * (z.float().pow(2) + LOG2PI)).flatten(1).sum(1) for z in zs)
        return base + ladj + flow_ladj

    # ---- training
    @torch.no_grad()
    def on_fit_start(self, x, y):
        """ActNorm's data-dependent initialisation (Glow §3.1) on the first batch."""
        for m in self.modules():
            if isinstance(m, ActNorm):
                m.pending = True
        self._log_density(dequantize(x, self.spec.levels or 256))

    def forward(self, x, y, phase="model", step=0):
        u, log_q = self._dequantised(x)
        logp = self._log_density(u) - log_q + self.log_offset
        bpd = -logp.mean() / (self.spec.dims * math.log(2))
        return bpd, {"loss": bpd.detach(), "nll_bpd": bpd.detach()}

    # ---- capabilities
    @torch.no_grad()
    @exact
    @evaluating
    def log_prob(self, x, y=None, **opts) -> torch.Tensor:
        """log p of the dequantised image minus log q of its noise and D log(L/2): (B, C, H, W) -> (B,) nats, a
        lower bound on log P(x) estimated with one draw of the noise."""
        u, log_q = self._dequantised(x.to(self.device).float())
        return self._log_density(u) - log_q + self.log_offset

    @torch.no_grad()
    @exact
    @evaluating
    def encode(self, x, y=None) -> torch.Tensor:
        """x -> z, every scale's z flattened and concatenated: (B, C, H, W) -> (B, D). The centre of each pixel's
        dequantisation bin is encoded (no noise), so decode(encode(x)) is x to within half a bin."""
        centre = bin_centres(x.to(self.device).float().clamp(-1, 1), self.spec.levels or 256)
        zs, _ = self.flow_forward(self._logit(centre)[0])
        return torch.cat([z.flatten(1) for z in zs], 1)

    @torch.no_grad()
    @exact
    @evaluating
    def decode(self, z, y=None) -> torch.Tensor:
        """(B, D) -> images (B, C, H, W) in [-1, 1]."""
        z = z.to(self.device).float()
        zs, at = [], 0
        for shape in self.z_shapes:
            size = math.prod(shape)
            zs.append(z[:, at:at + size].view(len(z), *shape))
            at += size
        return self._unlogit(self.flow_inverse(zs)).clamp(-1, 1)

    def channels_last(self, precision: str) -> bool:
        return True  # NHWC: a Glow step 1.1-1.25x faster, a RealNVP step 1.2x (batch 64-128, float32, 2 threads)


class RealNVP(ImageFlow):
    kind = "realnvp"
    Config = RealNVPConfig

    @classmethod
    def bench_samplers(cls, spec):
        return ({},)

    @classmethod
    def for_data(cls, spec):
        """Images: this flow; vectors and tables: zuko's affine couplings (flows.vector.VectorRealNVP)."""
        if spec.is_image:
            return cls
        from .vector import VectorRealNVP

        return VectorRealNVP

    def _squeezes(self):
        return self.config.scales

    def _build(self, C):
        c = self.config

        def couplings(ch, mask, k):
            out = []
            for i in range(k):
                out += [ActNorm(ch), AffineCoupling(ch, mask, i % 2, c.hidden, c.blocks)]
            return out

        levels = []
        for _ in range(c.scales):
            levels.append(Level(couplings(C, "checkerboard", 3), True, couplings(4 * C, "channel", 3), True))
            C = 4 * C - (4 * C) // 2
        levels.append(Level(couplings(C, "checkerboard", 4), False, [], False))
        return levels


class Glow(ImageFlow):
    kind = "glow"
    Config = GlowConfig

    def _squeezes(self):
        return self.config.levels

    def _build(self, C):
        c = self.config
        levels = []
        for i in range(c.levels):
            C = 4 * C
            steps = []
            for _ in range(c.steps):
                steps += [ActNorm(C), InvConv1x1(C), AffineCoupling(C, "channel", 0, c.hidden, c.blocks)]
            last = i == c.levels - 1
            levels.append(Level([], True, steps, not last))
            C = C if last else C - C // 2
        return levels
