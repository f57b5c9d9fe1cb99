"""Building blocks shared by the families."""

from .blocks import MLP, Attention, ConvDecoder, ConvEncoder, activation, group_norm, zero_

__all__ = ["MLP", "Attention", "ConvEncoder", "ConvDecoder", "activation", "group_norm", "zero_"]
