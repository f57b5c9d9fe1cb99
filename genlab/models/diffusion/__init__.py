"""Diffusion models, assembled from parts: the noise schedule, the samplers, the conditioners, a denoiser from
genlab.nn, and kinds `ddpm` and `ldm` (latent diffusion)."""

from ...nn.denoisers import DENOISERS, MLPDenoiser, UNet
from .conditioners import CONDITIONERS
from .latent import LDM
from .model import DDPM, DiffusionConfig
from .samplers import SAMPLERS
from .schedule import NoiseSchedule

__all__ = ["CONDITIONERS", "DDPM", "DENOISERS", "DiffusionConfig", "LDM", "MLPDenoiser", "NoiseSchedule", "SAMPLERS",
           "UNet"]
