"""Normalizing flows: exact likelihoods by the change of variables."""

from .vector import MAF, NSF, VectorFlow

__all__ = ["MAF", "NSF", "VectorFlow"]
