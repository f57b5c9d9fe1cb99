"""Building blocks shared by the families."""

from .blocks import MLP, ConvDecoder, ConvEncoder, activation

__all__ = ["MLP", "ConvEncoder", "ConvDecoder", "activation"]
