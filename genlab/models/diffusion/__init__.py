"""Diffusion models, assembled from parts: the noise schedule, the samplers, the conditioners, a denoiser from
genlab.nn, and kind `ddpm`."""

from ...nn.denoisers import DENOISERS, MLPDenoiser, UNet
from .conditioners import CONDITIONERS
from .model import DDPM, DiffusionConfig
from .samplers import SAMPLERS
from .schedule import NoiseSchedule

__all__ = ["CONDITIONERS", "DDPM", "DENOISERS", "DiffusionConfig", "MLPDenoiser", "NoiseSchedule", "SAMPLERS",
           "UNet"]
