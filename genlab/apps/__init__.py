"""Applications built on the models: inpainting (genlab.apps.inpaint), anomaly detection (`AnomalyDetector`,
genlab.apps.anomaly), generative oversampling of rare classes (`GenerativeOversampler`, genlab.apps.oversample) and
synthetic tables (`TabularSynthesizer`, genlab.apps.tabular, with its metrics in genlab.apps.table_metrics) and
domain-adversarial adaptation (`DomainAdversarialClassifier`, genlab.apps.domain)."""

from __future__ import annotations

__all__ = ["AnomalyDetector", "DomainAdversarialClassifier", "GenerativeOversampler", "TabularSynthesizer"]


def __getattr__(name: str):
    if name == "AnomalyDetector":  # loaded on first use: scikit-learn stays out of the CLI's start-up
        from .anomaly import AnomalyDetector

        return AnomalyDetector
    if name == "GenerativeOversampler":
        from .oversample import GenerativeOversampler

        return GenerativeOversampler
    if name == "TabularSynthesizer":
        from .tabular import TabularSynthesizer

        return TabularSynthesizer
    if name == "DomainAdversarialClassifier":
        from .domain import DomainAdversarialClassifier

        return DomainAdversarialClassifier
    raise AttributeError(f"module 'genlab.apps' has no attribute {name!r}")
