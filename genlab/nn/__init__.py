"""Building blocks shared by the families: MLPs, conv encoder/decoder, attention, embeddings, denoisers."""

from .blocks import MLP, Attention, ConvDecoder, ConvEncoder, activation, fourier_features, group_norm, zero_
from .denoisers import DENOISERS, MLPDenoiser, MLPOptions, UNet, UNetOptions, build_denoiser, denoiser_class
from .embeddings import ClassEmbedding, Conditioning, timestep_embedding

__all__ = ["MLP", "Attention", "ConvEncoder", "ConvDecoder", "activation", "fourier_features", "group_norm", "zero_",
           "DENOISERS", "MLPDenoiser", "MLPOptions", "UNet", "UNetOptions", "build_denoiser", "denoiser_class",
           "ClassEmbedding", "Conditioning", "timestep_embedding"]
