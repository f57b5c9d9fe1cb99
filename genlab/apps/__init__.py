"""Applications built on the models: inpainting (genlab.apps.inpaint), anomaly detection (`AnomalyDetector`,
genlab.apps.anomaly) and generative oversampling of rare classes (`GenerativeOversampler`, genlab.apps.oversample);
synthetic tables are to come."""

from __future__ import annotations

__all__ = ["AnomalyDetector", "GenerativeOversampler"]


def __getattr__(name: str):
    if name == "AnomalyDetector":  # loaded on first use: scikit-learn stays out of the CLI's start-up
        from .anomaly import AnomalyDetector

        return AnomalyDetector
    if name == "GenerativeOversampler":
        from .oversample import GenerativeOversampler

        return GenerativeOversampler
    raise AttributeError(f"module 'genlab.apps' has no attribute {name!r}")
