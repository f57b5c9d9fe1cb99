"""Normalizing flows: exact likelihoods by the change of variables."""

from .base import Flow, FlowSampleOptions
from .image import Glow, ImageFlow, RealNVP
from .vector import MAF, NSF, VectorFlow

__all__ = ["Flow", "FlowSampleOptions", "MAF", "NSF", "VectorFlow", "RealNVP", "Glow", "ImageFlow"]
