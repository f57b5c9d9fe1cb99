"""Kind `ldm`: latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models"). A trained autoencoder, VAE or VQ-VAE run, named by `first_stage=RUN`, is loaded frozen; the diffusion
(everything of `ddpm`: targets, schedules, samplers, guidance) runs on its codes z = E(x) scaled to unit variance,
and samples are decoded by D. The first stage is trained first and separately (its minutes count in any
comparison with pixel diffusion: docs/BENCHMARKS.md).

    genlab train vae --data fashion-mnist --set latent_channels=4 --set channels=32,64      # 4 x 7 x 7 codes
    genlab train ldm --data fashion-mnist --set first_stage=runs/vae --minutes 10

The denoiser: `arch=auto` takes a DiT on map latents (patch 2 where the map's side is even, else 1) and the MLP on
vector latents; `--set net=unet` works where the map can be halved by its levels (--set net.mults=1,2 on 14x14).
A first stage must offer `latent_shape`, `to_latent(x)` and `from_latent(z)` (ae, dae, vae, vqvae do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...config import check
from ...data.spec import DataSpec
from ...errors import GenlabError
from ..base import GenerativeModel
from .model import DDPM, DiffusionConfig, resolve_arch


@dataclass
class LDMConfig(DiffusionConfig):
    first_stage: str = ""  # run directory of a trained ae, dae, vae or vqvae (required)
    scale: float = 0.0  # codes are multiplied by this; 0: 1 / std of the first batch's codes (Rombach et al. §4.3.2)

    def __post_init__(self):
        super().__post_init__()
        check(bool(self.first_stage), "ldm needs the autoencoder it diffuses in: --set first_stage=RUN_DIR "
                                      "(a trained ae, vae or vqvae run)")
        check(self.scale >= 0, f"scale must be >= 0 (0: from the data), got {self.scale}")


class LDM(DDPM):
    kind = "ldm"
    Config = LDMConfig
    log_prob_type = ""
    log_prob = GenerativeModel.log_prob  # the bound would be on the codes, not on the images

    def diffusion_space(self) -> DataSpec:
        first = self.component("first_stage")
        if not hasattr(first, "to_latent"):
            raise GenlabError(f"ldm diffuses in the codes of an ae, dae, vae or vqvae run; {self.config.first_stage} "
                              f"is a {first.kind} run")
        if tuple(first.spec.shape) != tuple(self.spec.shape):
            raise GenlabError(f"the first stage models {'x'.join(map(str, first.spec.shape))} data, this data is "
                              f"{'x'.join(map(str, self.spec.shape))}: train the ldm on the first stage's data")
        if getattr(first.config, "conditional", False):
            raise GenlabError("the first stage is class-conditional; ldm needs an unconditional one "
                              "(condition the ldm itself with --set conditional=true)")
        shape = tuple(first.latent_shape)
        self.register_buffer("latent_scale", torch.tensor(float(self.config.scale or 1.0)))
        return DataSpec(name=f"{self.spec.name} codes", kind="image" if len(shape) == 3 else "vector", shape=shape,
                        num_classes=self.spec.num_classes, class_names=self.spec.class_names)

    def resolve_arch(self, arch: str) -> str:
        if arch == "auto":
            arch = "dit" if self.space.is_image else "mlp"
        return resolve_arch(arch, self.space)

    def net_options(self, net: dict[str, Any]) -> dict[str, Any]:
        if self.arch == "dit" and "patch" not in net:
            return {**net, "patch": 2 if self.space.shape[1] % 2 == 0 and self.space.shape[2] % 2 == 0 else 1}
        return net

    def channels_last(self, precision: str) -> bool:
        return False  # the images only pass the frozen encoder; the codes are small maps or vectors

    def to_space(self, x: torch.Tensor) -> torch.Tensor:
        return self.codes(x)

    def from_space(self, z: torch.Tensor) -> torch.Tensor:
        return self.frozen("first_stage").from_latent(z / self.latent_scale)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Data (B, *shape) -> scaled codes (B, *latent_shape), float32."""
        with torch.no_grad():
            return self.frozen("first_stage").to_latent(x).float() * self.latent_scale

    @torch.no_grad()
    def on_fit_start(self, x, y):
        """The scale factor: 1 / std of the first batch's codes (unless `scale` is set), so that the diffusion's
        data have unit variance, as its noise schedule assumes."""
        if not self.config.scale:
            z = self.frozen("first_stage").to_latent(x).float()
            self.latent_scale.fill_(1.0 / float(z.std()))

    def forward(self, x, y, phase="model", step=0):
        return super().forward(self.codes(x), y, phase, step)

    def diagnostics(self, x, y):
        return super().diagnostics(self.codes(x[:64]), y[:64] if y is not None else None)

    @torch.no_grad()
    def _sample(self, n, *, seed, labels, options, progress):
        z, info = super()._sample(n, seed=seed, labels=labels, options=options, progress=progress)
        return self.from_space(z), info

    inpaint = GenerativeModel.inpaint  # RePaint works on pixels; an ldm diffuses codes (a ddpm run inpaints)
