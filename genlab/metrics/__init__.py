"""Metrics on any features: FID, KID, precision/recall, density/coverage, IS, mode metrics, sharpness, bits/dim, a
memorisation check. Feature extractors live in genlab.metrics.features, the protocol in genlab.metrics.protocol."""

from .distances import frechet_distance, kid
from .manifold import density_coverage, memorization, precision_recall
from .scores import bits_per_dim, inception_score, laplacian_variance, mode_metrics

__all__ = ["frechet_distance", "kid", "precision_recall", "density_coverage", "inception_score", "mode_metrics",
           "laplacian_variance", "bits_per_dim", "memorization"]
