"""Diffusion models: the noise schedule, the samplers, the denoising networks and kind `ddpm`."""

from .model import DDPM, DiffusionConfig
from .networks import MLPDenoiser, UNet
from .samplers import SAMPLERS
from .schedule import NoiseSchedule

__all__ = ["DDPM", "DiffusionConfig", "MLPDenoiser", "NoiseSchedule", "SAMPLERS", "UNet"]
