"""Shared base for latent-variable models with an encoder and a decoder (autoencoders, VAEs):
network construction (MLP or conv, optionally label-conditioned), interpolation and latent traversals."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check
from ..data.spec import DataSpec
from ..errors import GenlabError
from ..nn import MLP, ConvDecoder, ConvEncoder
from ..precision import fp32
from .base import GenerativeModel


@dataclass
class LatentConfig:
    latent_dim: int = 16  # size of the code z
    arch: str = "auto"  # auto (conv for images, mlp otherwise) | mlp | conv
    hidden: tuple[int, ...] = (512, 256)  # MLP widths, encoder side (the decoder mirrors them)
    channels: tuple[int, ...] = (32, 64)  # conv widths, one stride-2 stage each (the decoder mirrors them)
    act: str = "silu"  # activation: silu | relu | gelu | leaky_relu | tanh
    conditional: bool = False  # condition encoder and decoder on class labels (Sohn et al. 2015)
    latent_channels: int = 0  # conv: a map of this many channels at H/2^n x W/2^n (sets latent_dim); 0: a vector

    def __post_init__(self):
        check(self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}")
        check(self.latent_channels >= 0, f"latent_channels must be >= 0, got {self.latent_channels}")
        check(self.arch in ("auto", "mlp", "conv"), f"arch must be auto, mlp or conv, got '{self.arch}'")
        check(all(c >= 1 for c in self.channels) and len(self.channels) >= 1, "channels must be positive widths")
        check(all(h >= 1 for h in self.hidden), "hidden must be positive widths")


def interpolate_codes(model, a, b, steps: int = 8, method: str = "slerp", y=None) -> torch.Tensor:
    """A model's `decode` along a path between its `encode` of a and of b: (B, *shape) twice -> (B, steps, *shape).
    method: slerp (for Gaussian codes: keeps the path at the typical radius) | lerp."""
    if method not in ("lerp", "slerp"):
        raise GenlabError(f"unknown interpolation '{method}': use lerp or slerp")
    if steps < 2:
        raise GenlabError(f"steps must be >= 2, got {steps}")
    za, zb = model.encode(a, y), model.encode(b, y)
    t = torch.linspace(0, 1, steps, device=za.device)
    if method == "slerp":
        path = slerp(za, zb, t)
    else:
        path = (1 - t)[None, :, None] * za[:, None] + t[None, :, None] * zb[:, None]
    yy = None if y is None else torch.as_tensor(y, device=za.device).reshape(-1).expand(len(za))
    yy = None if y is None else yy.repeat_interleave(steps)
    return model.decode(path.flatten(0, 1), yy).view(len(za), steps, *model.spec.shape)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b (White 2016); lerp where they are nearly parallel.
    a, b: (B, L); t: (S,) -> (B, S, L)."""
    an, bn = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.acos((an * bn).sum(-1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None, None]  # (B, 1, 1)
    t = t[None, :, None]
    so = torch.sin(omega)
    lerp = (1 - t) * a[:, None] + t * b[:, None]
    sl = torch.sin((1 - t) * omega) / so * a[:, None] + torch.sin(t * omega) / so * b[:, None]
    return torch.where(so.abs() < 1e-4, lerp, sl)


class LatentModel(GenerativeModel):
    """Builds `encoder` (-> enc_out features) and `decoder` (-> `out_factor` tensors of the data's shape)."""

    def __init__(self, spec: DataSpec, config: LatentConfig, enc_out: int, out_factor: int = 1):
        super().__init__(spec, config)
        c = config
        self.n_cond = self._classes()
        arch = self._arch("conv")
        self.arch, self.out_factor = arch, out_factor
        self.latent_map: tuple[int, int, int] | None = None
        if c.latent_channels:
            self._latent_map(enc_out // c.latent_dim)
        elif arch == "conv":
            ch, h, w = spec.shape
            self.encoder = ConvEncoder((ch + self.n_cond, h, w), c.channels, enc_out, c.act)
            self.decoder = ConvDecoder(c.latent_dim + self.n_cond, spec.shape, tuple(reversed(c.channels)),
                                       ch * out_factor, c.act)
        else:
            self.encoder = MLP(spec.dims + self.n_cond, c.hidden, enc_out, c.act)
            self.decoder = MLP(c.latent_dim + self.n_cond, tuple(reversed(c.hidden)), spec.dims * out_factor, c.act)

    def _latent_map(self, factor: int) -> None:
        """A spatial latent (Rombach et al. 2022's first stage): the encoder ends in a 1x1 conv to `factor` maps of
        latent_channels (a VAE's means and log-variances), the decoder starts from the map; z is that map
        flattened, so latent_dim becomes latent_channels * h * w."""
        c = self.config
        if self.arch != "conv":
            raise GenlabError(f"latent_channels needs the conv arch (image data); this {self.kind} is arch={self.arch}")
        if self.n_cond:
            raise GenlabError("latent_channels and conditional=true do not combine yet: use a vector latent "
                              "(latent_channels=0) for a conditional model")
        f = 2 ** len(c.channels)
        ch, H, W = self.spec.shape
        self.latent_map = (c.latent_channels, H // f, W // f)
        c.latent_dim = math.prod(self.latent_map)
        self.encoder = nn.Sequential(ConvEncoder(self.spec.shape, c.channels, factor * c.latent_channels, c.act,
                                                 spatial=True), nn.Flatten())
        self.decoder = nn.Sequential(nn.Unflatten(1, self.latent_map),
                                     ConvDecoder(c.latent_channels, self.spec.shape, tuple(reversed(c.channels)),
                                                 ch * self.out_factor, c.act, spatial=True))

    # ---- as the first stage of latent diffusion (ldm)
    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one code: (latent_channels, h, w) for a spatial latent, else (latent_dim,)."""
        return self.latent_map or (self.config.latent_dim,)

    @torch.no_grad()
    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images or vectors (B, *shape) -> codes (B, *latent_shape): `encode`, shaped."""
        return self.encode(x).reshape(len(x), *self.latent_shape)

    @torch.no_grad()
    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (B, *latent_shape) -> data (B, *shape): `decode`."""
        return self.decode(z.reshape(len(z), -1))

    def _onehot(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if not self.n_cond:
            return None
        if y is None or (y < 0).any():
            raise GenlabError(f"this {self.kind} is conditional: pass labels (0..{self.n_cond - 1})")
        return F.one_hot(y.reshape(-1).expand(n) if y.numel() == 1 else y, self.n_cond).float()

    def _encode_raw(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        oh = self._onehot(y, len(x))
        if self.arch == "conv":
            if oh is not None:
                x = torch.cat([x, oh[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
            return fp32(self.encoder(x))
        x = x.flatten(1)
        return fp32(self.encoder(x if oh is None else torch.cat([x, oh], 1)))

    def _decode_raw(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """(B, L) -> (B, out_factor, *spec.shape)."""
        oh = self._onehot(y, len(z))
        out = fp32(self.decoder(z if oh is None else torch.cat([z, oh], 1)))
        return out.view(len(z), self.out_factor, *self.spec.shape)

    def latent_center_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Where latent traversals centre and how far one unit reaches: (L,), (L,)."""
        L = self.config.latent_dim
        return torch.zeros(L, device=self.device), torch.ones(L, device=self.device)

    @torch.no_grad()
    def interpolate(self, a, b, steps: int = 8, method: str = "slerp", y=None) -> torch.Tensor:
        """Decode a path between the codes of a and b: (B, *shape) twice -> (B, steps, *shape)."""
        return interpolate_codes(self, a, b, steps, method, y)

    @torch.no_grad()
    def traverse(self, x=None, y=None, dims=None, steps: int = 9, span: float = 3.0) -> torch.Tensor:
        """Move one latent dimension at a time over [-span, span] units around x's code (or the prior centre):
        (len(dims), steps, *shape)."""
        center, scale = self.latent_center_scale()
        if x is None:
            z0 = center
        else:
            z0 = self.encode(x[None] if x.dim() == len(self.spec.shape) else x, y)[0]
        dims = list(range(min(self.config.latent_dim, 10))) if dims is None else [int(d) for d in dims]
        bad = [d for d in dims if not 0 <= d < self.config.latent_dim]
        if bad:
            raise GenlabError(f"latent dimension {bad[0]} out of range 0..{self.config.latent_dim - 1}")
        vals = torch.linspace(-span, span, steps, device=z0.device)
        z = z0.repeat(len(dims), steps, 1)
        for i, d in enumerate(dims):
            z[i, :, d] = z0[d] + vals * scale[d]
        if self.n_cond:
            y = torch.zeros(1, dtype=torch.long, device=z.device) if y is None else torch.as_tensor(y, device=z.device)
        return self.decode(z.flatten(0, 1), y).view(len(dims), steps, *self.spec.shape)
