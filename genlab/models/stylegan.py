"""Kind `stylegan`: a style-based generator (Karras et al. 2019, "A Style-Based Generator Architecture for GANs";
the modulated convolutions of StyleGAN2, Karras et al. 2020) trained with progressive growing (Karras et al. 2018,
"Progressive Growing of GANs"), both as small as CPU training of 28x28 images allows.

Generator:
    z (B, L) -> pixel norm -> mapping MLP (equalized lr, lr multiplier 0.01) -> w (B, L), one per layer
    a learned constant (C0, H/2^k, W/2^k) -> per resolution: [upsample] modulated 3x3 conv(s), each with
    per-pixel noise (a learned strength per channel) and leaky ReLU -> toRGB (1x1, modulated, not demodulated)
Style mixing: in training, with probability `mixing`, the layers after a random crossover take the w of a second
z (the network cannot assume that adjacent styles are correlated). Truncation at sample time: w' = w_avg +
psi (w - w_avg), w_avg the running mean of the mapping's output.

Discriminator: fromRGB (1x1) -> per resolution two 3x3 convs and 2x average pooling -> minibatch std -> conv ->
linear -> one logit (ProGAN's, equalized lr). Losses: any of gan's; R1 on real data (StyleGAN's choice).

Progressive growing: both networks start at the lowest resolution (7x7 for 28x28 data) and add a resolution every
2 x `grow_steps` iterations; the new layers fade in over `grow_steps` iterations: the output is (1 - alpha) x the
upsampled output of the previous resolution + alpha x the new one, and D's input mixes the same way, while the
real images are average-pooled to the current resolution (and blended with their upsampled half-resolution
version during the fade, as G's output is). At alpha = 0 the grown networks compute exactly what the smaller
ones did. Samples are drawn at the current resolution and upsampled (nearest) to the data's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check
from ..errors import GenlabError
from ..precision import fp32
from .base import GenerativeModel, generator
from .gan import LOSSES, d_loss, g_loss, input_gradient_norm, minibatch_std


@dataclass
class StyleGANConfig:
    loss: str = "ns"  # as gan's: minimax | ns | wgan | wgan-gp | hinge | lsgan (wgan* without their penalties)
    latent_dim: int = 128  # z and w
    mapping: int = 4  # layers of the mapping network (the paper: 8)
    channels: tuple[int, ...] = (128, 128, 64)  # G's widths from the lowest resolution up (D mirrors them)
    noise: bool = True  # per-pixel noise inputs
    mixing: float = 0.9  # style-mixing probability in training (Karras et al. 2019 §3.1: 90%)
    progressive: bool = True  # grow from the lowest resolution; false: train at full resolution from the start
    grow_steps: int = 600  # iterations per fade-in and per stable phase of each new resolution
    r1: float = 0.1  # R1 penalty gamma on real data (0: off)
    r1_every: int = 16  # lazy regularisation (StyleGAN2 §3.1): R1, times this, on every r1_every-th D step only
    minibatch_std: bool = True  # in D's last block
    w_avg_decay: float = 0.995  # the running mean of w used by truncation (StyleGAN's w_avg_beta)

    def __post_init__(self):
        check(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got '{self.loss}'")
        check(self.latent_dim >= 1 and self.mapping >= 1, "latent_dim and mapping must be >= 1")
        check(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "channels must be widths >= 1")
        check(0 <= self.mixing <= 1, f"mixing is a probability in [0, 1], got {self.mixing}")
        check(self.grow_steps >= 1, f"grow_steps must be >= 1, got {self.grow_steps}")
        check(self.r1 >= 0 and math.isfinite(self.r1), f"r1 must be >= 0, got {self.r1}")
        check(self.r1_every >= 1, f"r1_every must be >= 1, got {self.r1_every}")
        check(0 <= self.w_avg_decay < 1, f"w_avg_decay must be in [0, 1), got {self.w_avg_decay}")


@dataclass
class StyleGANSampleOptions:
    psi: float = 1.0  # truncation in w space: 1 off, 0 every sample the average image; < 1 trades variety for quality
    cutoff: int | None = None  # truncate only the first `cutoff` layers' styles (the coarse ones); None: all

    def __post_init__(self):
        check(math.isfinite(self.psi), f"psi must be a finite number, got {self.psi}")
        check(self.cutoff is None or self.cutoff >= 0, f"cutoff must be >= 0, got {self.cutoff}")


# ---- equalized learning rate (Karras et al. 2018 §4.1): weights drawn N(0, 1) and scaled at run time by He's
# constant, so that Adam's per-parameter step moves every layer at the same relative speed
class EqualLinear(nn.Module):
    def __init__(self, d_in: int, d_out: int, lr_mul: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((d_out,), bias_init / lr_mul))
        self.scale, self.lr_mul = lr_mul / math.sqrt(d_in), lr_mul

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = 1 / math.sqrt(c_in * k * k)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.weight.shape[-1] // 2)


class ModulatedConv2d(nn.Module):
    """x (B, Cin, H, W), w (B, L) -> (B, Cout, H, W): the conv with weights W'_boi = W_oi s_bi, s = affine(w), each
    output filter rescaled to unit norm when `demodulate` (StyleGAN2 eq. 1-3). Computed as the conv of x s with
    the shared W, times the per-sample demodulation: the same numbers as one grouped conv, at a batched conv's
    speed (StyleGAN2's non-fused path)."""

    def __init__(self, c_in: int, c_out: int, k: int, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)  # styles start at 1: an unmodulated conv
        self.scale, self.demodulate = 1 / math.sqrt(c_in * k * k), demodulate

    def forward(self, x, w):
        s = self.affine(w)  # (B, Cin)
        weight = self.weight * self.scale
        out = F.conv2d(x * s[:, :, None, None], weight, padding=weight.shape[-1] // 2)
        if self.demodulate:  # 1 / ||W'_bo||: sum over inputs and taps of (W_oi s_bi)^2
            d = torch.rsqrt(s.pow(2) @ weight.pow(2).sum((2, 3)).T + 1e-8)  # (B, Cout)
            out = out * d[:, :, None, None]
        return out + self.bias[None, :, None, None]


class ScaledLeakyReLU(nn.Module):
    """Leaky ReLU (slope 0.2) times sqrt(2), which keeps unit-variance activations at unit variance (StyleGAN2)."""

    def forward(self, x):
        return F.leaky_relu(x, 0.2) * math.sqrt(2)


class StyleLayer(nn.Module):
    """Modulated 3x3 conv + per-pixel noise (a learned strength per channel) + leaky ReLU."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, noise: bool):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, 3, w_dim)
        self.strength = nn.Parameter(torch.zeros(c_out)) if noise else None

    def forward(self, x, w, g: torch.Generator | None):
        x = self.conv(x, w)
        if self.strength is not None:
            b, _, h, wd = x.shape
            n = (torch.randn(b, 1, h, wd, generator=g).to(x) if g is not None
                 else torch.randn(b, 1, h, wd, device=x.device, dtype=x.dtype))
            x = x + self.strength[None, :, None, None] * n
        return F.leaky_relu(x, 0.2) * math.sqrt(2)  # the gain keeps the activations' scale (StyleGAN2)


def upsample(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


class StyleGenerator(nn.Module):
    """z (B, L) -> images (B, C, h_l, w_l) at level l (0: the lowest resolution), blending level l - 1's
    upsampled output by 1 - alpha. Layer j of the synthesis takes ws[:, j]."""

    def __init__(self, cfg: StyleGANConfig, shape):
        super().__init__()
        c, h, w = shape
        k = len(cfg.channels) - 1
        self.h0, self.w0 = h // 2**k, w // 2**k
        self.latent = cfg.latent_dim
        L = cfg.latent_dim
        self.mapping = nn.Sequential(*[m for _ in range(cfg.mapping) for m in (EqualLinear(L, L, lr_mul=0.01),
                                                                                ScaledLeakyReLU())])
        self.const = nn.Parameter(torch.randn(cfg.channels[0], self.h0, self.w0))
        self.blocks = nn.ModuleList()
        self.to_rgb = nn.ModuleList()
        for i, width in enumerate(cfg.channels):
            prev = cfg.channels[max(i - 1, 0)]
            layers = [StyleLayer(prev, width, L, cfg.noise)] + ([StyleLayer(width, width, L, cfg.noise)] if i else [])
            self.blocks.append(nn.ModuleList(layers))
            self.to_rgb.append(ModulatedConv2d(width, c, 1, L, demodulate=False))
        self.n_ws = sum(len(b) for b in self.blocks)

    def map(self, z: torch.Tensor) -> torch.Tensor:
        z = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)  # pixel norm of z (Karras et al. 2018 §4.2)
        return self.mapping(z)

    def synthesize(self, ws: torch.Tensor, level: int, alpha: float = 1.0, g: torch.Generator | None = None):
        """ws (B, n_ws, L) -> (B, C, h_level, w_level)."""
        x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        j, prev_rgb = 0, None
        for i in range(level + 1):
            if i:
                x = upsample(x)
            for layer in self.blocks[i]:
                x = layer(x, ws[:, j], g)
                j += 1
            if i == level - 1 and alpha < 1:
                prev_rgb = self.to_rgb[i](x, ws[:, j - 1])
        rgb = self.to_rgb[level](x, ws[:, j - 1])
        if prev_rgb is not None:
            rgb = torch.lerp(upsample(prev_rgb), rgb, alpha)
        return rgb


class StyleDiscriminator(nn.Module):
    """x (B, C, h_l, w_l) at level l -> (logits (B,), features); blends in level l - 1's fromRGB of the
    average-pooled input by 1 - alpha."""

    def __init__(self, cfg: StyleGANConfig, shape):
        super().__init__()
        c, h, w = shape
        k = len(cfg.channels) - 1
        ch = cfg.channels
        self.from_rgb = nn.ModuleList([EqualConv2d(c, width, 1) for width in ch])
        self.blocks = nn.ModuleList([nn.ModuleList([EqualConv2d(ch[i], ch[i], 3), EqualConv2d(ch[i], ch[i - 1], 3)])
                                     for i in range(1, k + 1)])  # blocks[i - 1]: level i down to level i - 1
        self.mbstd = cfg.minibatch_std
        self.final_conv = EqualConv2d(ch[0] + cfg.minibatch_std, ch[0], 3)
        self.final_fc = EqualLinear(ch[0] * (h // 2**k) * (w // 2**k), ch[0])
        self.out = EqualLinear(ch[0], 1)

    def forward(self, x, level: int, alpha: float = 1.0):
        act = lambda t: F.leaky_relu(t, 0.2) * math.sqrt(2)  # noqa: E731
        h = act(self.from_rgb[level](x))
        for i in range(level, 0, -1):
            h = act(self.blocks[i - 1][1](act(self.blocks[i - 1][0](h))))
            h = F.avg_pool2d(h, 2)
            if i == level and alpha < 1:
                h = torch.lerp(act(self.from_rgb[i - 1](F.avg_pool2d(x, 2))), h, alpha)
        if self.mbstd:
            h = minibatch_std(h)
        h = act(self.final_fc(act(self.final_conv(h)).flatten(1)))
        h = fp32(h)
        return fp32(self.out(h).squeeze(1)), h


class StyleGAN(GenerativeModel):
    kind = "stylegan"
    family = "gan"
    data_kinds = ("image",)
    Config = StyleGANConfig
    SampleOptions = StyleGANSampleOptions

    def __init__(self, spec, config: StyleGANConfig):
        super().__init__(spec, config)
        k = len(config.channels) - 1
        _, h, w = spec.shape
        if h % 2**k or w % 2**k:
            raise GenlabError(f"image size {h}x{w} cannot be halved {k} times; set fewer channels (resolutions)")
        self.top = k
        self.G = StyleGenerator(config, spec.shape)
        self.D = StyleDiscriminator(config, spec.shape)
        self.register_buffer("w_avg", torch.zeros(config.latent_dim))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))  # training iterations: where growing is
        self.phases = (("discriminator", 1), ("generator", 1))

    # ---- the growing schedule
    def schedule(self, step: int) -> tuple[int, float]:
        """(level, alpha) at training iteration `step`: level 0 for grow_steps, then each new level fades in over
        grow_steps and is trained alone for grow_steps more."""
        if not self.config.progressive:
            return self.top, 1.0
        s = self.config.grow_steps
        level = min(self.top, (step + s) // (2 * s))
        alpha = 1.0 if level == 0 else min(1.0, (step - (2 * level - 1) * s) / s)
        return level, alpha

    def real_at(self, x: torch.Tensor, level: int, alpha: float) -> torch.Tensor:
        """The real images as D sees them at (level, alpha): average-pooled to the level's resolution and, while
        it fades in, blended with their upsampled half-resolution version (as G's output is)."""
        x = F.avg_pool2d(x, 2 ** (self.top - level)) if level < self.top else x
        return torch.lerp(upsample(F.avg_pool2d(x, 2)), x, alpha) if alpha < 1 else x

    # ---- training
    def param_groups(self):
        return {"discriminator": list(self.D.parameters()), "generator": list(self.G.parameters())}

    def train_defaults(self) -> dict[str, Any]:  # StyleGAN2's Adam(0.002, 0, 0.99), at a CPU batch
        return {"lr": 2e-3, "betas": (0.0, 0.99), "grad_clip": 0.0, "warmup_steps": 0, "schedule": "constant",
                "ema_decay": 0.999, "batch_size": 64}

    def _ws(self, b: int, device, mix: bool, level: int) -> torch.Tensor:
        """(B, n_ws, L) styles of fresh z; with style mixing, the layers from a random crossover on take a second
        z's w (the crossover drawn among the layers in use at `level`)."""
        L, n = self.config.latent_dim, self.G.n_ws
        used = sum(len(block) for block in self.G.blocks[: level + 1])
        w = self.G.map(torch.randn(b, L, device=device))
        ws = w[:, None].expand(-1, n, -1)
        if mix and self.config.mixing > 0 and torch.rand(()) < self.config.mixing:
            w2 = self.G.map(torch.randn(b, L, device=device))
            cross = torch.randint(1, used, ()) if used > 1 else used
            ws = torch.where((torch.arange(n, device=device) >= cross)[None, :, None], w2[:, None], ws)
        return ws

    def forward(self, x: torch.Tensor, y: torch.Tensor, phase: str = "discriminator", step: int = 0):
        c, b = self.config, x.shape[0]
        level, alpha = self.schedule(step)
        self.seen.fill_(step)

        def D(inp, _y=None):
            return self.D(inp, level, alpha)

        if phase == "discriminator":
            with torch.no_grad():
                fake = self.G.synthesize(self._ws(b, x.device, True, level), level, alpha)
            real = self.real_at(x, level, alpha)
            real_logit, _ = D(real)
            fake_logit, _ = D(fp32(fake))
            loss = d_loss(c.loss, real_logit, fake_logit)
            logs = {"loss": loss, "real": real_logit.mean(), "fake": fake_logit.mean(),
                    "level": torch.tensor(level + alpha)}
            if c.r1 > 0 and step % c.r1_every == 0:  # the double backward is most of a D step's cost on CPUs
                r1 = input_gradient_norm(D, real, None).pow(2).mean()
                loss = loss + 0.5 * c.r1 * c.r1_every * r1
                logs["r1"] = r1
            return loss, logs
        ws = self._ws(b, x.device, True, level)
        with torch.no_grad():
            self.w_avg.lerp_(ws[:, 0].mean(0).float(), 1 - c.w_avg_decay)
        fake_logit, _ = D(fp32(self.G.synthesize(ws, level, alpha)))
        loss = g_loss(c.loss, fake_logit)
        return loss, {"loss": loss}

    # ---- sampling
    def styles(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """z (B, L) -> (B, n_ws, L) styles, truncated towards w_avg by psi on the first `cutoff` layers."""
        w = self.G.map(z)
        ws = w[:, None].expand(-1, self.G.n_ws, -1)
        if psi != 1:
            trunc = torch.lerp(self.w_avg.to(w.dtype)[None, None], ws, psi)
            on = torch.arange(self.G.n_ws, device=w.device) < (self.G.n_ws if cutoff is None else cutoff)
            ws = torch.where(on[None, :, None], trunc, ws)
        return ws

    def render(self, ws: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Styles (B, n_ws, L) -> images (B, *spec.shape) at the current stage, upsampled to the data's size."""
        level, alpha = self.schedule(int(self.seen))
        x = fp32(self.G.synthesize(ws, level, alpha, generator(seed)))
        return F.interpolate(x, size=self.spec.shape[1:], mode="nearest") if level < self.top else x

    @torch.no_grad()
    def mix(self, z_coarse: torch.Tensor, z_fine: torch.Tensor, crossover: int, seed: int | None = 0,
            psi: float = 1.0) -> torch.Tensor:
        """Style mixing (Karras et al. 2019 Fig. 3): images with the first `crossover` layers' styles from
        z_coarse (B, L) and the rest from z_fine (B, L); the same `seed` draws the same noise."""
        if not 0 <= crossover <= self.G.n_ws:
            raise GenlabError(f"crossover must be in [0, {self.G.n_ws}] (the generator's layers), got {crossover}")
        a, b = self.styles(z_coarse.to(self.device), psi), self.styles(z_fine.to(self.device), psi)
        ws = torch.cat([a[:, :crossover], b[:, crossover:]], 1)
        return self.in_range(self.render(ws, seed))

    @torch.no_grad()
    def _sample(self, n, *, seed, labels, options: StyleGANSampleOptions, progress):
        g = generator(seed)
        z = torch.randn(n, self.config.latent_dim, generator=g).to(self.device)
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=g))
        return self.render(self.styles(z, options.psi, options.cutoff), noise_seed), {}
