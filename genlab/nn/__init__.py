"""Building blocks shared by the families."""

from .blocks import MLP, Attention, ConvDecoder, ConvEncoder, activation, fourier_features, group_norm, zero_

__all__ = ["MLP", "Attention", "ConvEncoder", "ConvDecoder", "activation", "fourier_features", "group_norm", "zero_"]
