"""Normalizing flows: exact likelihoods by the change of variables."""

from .image import Glow, ImageFlow, RealNVP
from .vector import MAF, NSF, VectorFlow

__all__ = ["MAF", "NSF", "VectorFlow", "RealNVP", "Glow", "ImageFlow"]
