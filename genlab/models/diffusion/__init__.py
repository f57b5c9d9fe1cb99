"""Diffusion models, assembled from parts: the noise schedule, the samplers, the conditioners, a denoiser from
genlab.nn, and kinds `ddpm`, `ldm` (latent diffusion), `consistency` and `progressive` (distillation)."""

from ...nn.denoisers import DENOISERS, MLPDenoiser, UNet
from .conditioners import CONDITIONERS
from .consistency import Consistency
from .latent import LDM
from .model import DDPM, DiffusionConfig
from .progressive import Progressive
from .samplers import SAMPLERS
from .schedule import NoiseSchedule

__all__ = ["CONDITIONERS", "Consistency", "DDPM", "DENOISERS", "DiffusionConfig", "LDM", "MLPDenoiser",
           "NoiseSchedule", "Progressive", "SAMPLERS", "UNet"]
