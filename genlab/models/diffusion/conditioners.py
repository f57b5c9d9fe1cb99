"""Conditioners: what samples are conditioned on, turned into the denoiser's `cond`.

A conditioner names the kind of condition (`CONDITIONERS`, keyed like a model's `conditioning` declaration:
none | class), turns labels into `cond`, gives the null condition classifier-free guidance contrasts with
(Ho & Salimans 2022), drops conditions at random in training so one network learns both, and tells the
denoiser how to embed `cond` at the denoiser's own width (the parameters live in the denoiser, so saved
weights keep their names).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import partial
from typing import Any, ClassVar

import torch

from ...data.spec import DataSpec
from ...errors import GenlabError
from ...nn.embeddings import ClassEmbedding, CondEmbedding


class Conditioner(ABC):
    name: ClassVar[str]

    def __init__(self, spec: DataSpec):
        self.spec = spec

    @abstractmethod
    def embedding(self) -> CondEmbedding | None:
        """width -> the module the denoiser embeds cond with (None: nothing to embed)."""

    @abstractmethod
    def __call__(self, labels: torch.Tensor | None) -> Any:
        """The denoiser's cond for validated labels (n,) (or None)."""

    @abstractmethod
    def null(self, cond: Any) -> Any:
        """The "no condition" cond of the same batch, for the unconditional branch of guidance."""

    def drop(self, cond: Any, p: float) -> Any:
        """Training: each example's cond replaced by the null one with probability p."""
        return cond


class NoConditioner(Conditioner):
    name = "none"

    def embedding(self) -> None:
        return None

    def __call__(self, labels: torch.Tensor | None) -> None:
        return None

    def null(self, cond: Any) -> None:
        return None


class ClassConditioner(Conditioner):
    """cond = the labels (B,) themselves; the null condition is the extra label num_classes, the last row of
    the denoiser's ClassEmbedding."""

    name = "class"

    def __init__(self, spec: DataSpec):
        super().__init__(spec)
        self.num_classes = int(spec.num_classes or 0)

    def embedding(self) -> CondEmbedding:
        return partial(ClassEmbedding, self.num_classes)

    def __call__(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return labels

    def null(self, cond: torch.Tensor) -> torch.Tensor:
        return torch.full_like(cond, self.num_classes)

    def drop(self, cond: torch.Tensor, p: float) -> torch.Tensor:
        drop = torch.rand(cond.shape[0], device=cond.device) < p
        return torch.where(drop, self.null(cond), cond)


CONDITIONERS: dict[str, type[Conditioner]] = {c.name: c for c in (NoConditioner, ClassConditioner)}


def make_conditioner(name: str, spec: DataSpec) -> Conditioner:
    if name not in CONDITIONERS:
        raise GenlabError(f"no diffusion conditioner for '{name}' conditioning: use one of {', '.join(CONDITIONERS)}")
    return CONDITIONERS[name](spec)
