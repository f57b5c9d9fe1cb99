"""DataSpec: what a model needs to know about its data, JSON-serialisable so a saved model carries it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Column:
    """One column of a table. Numeric columns take 1 dim; categorical ones a one-hot block."""

    name: str
    type: str = "numeric"  # numeric | categorical
    categories: list[str] | None = None

    @property
    def width(self) -> int:
        return len(self.categories) if self.type == "categorical" else 1


@dataclass
class DataSpec:
    """kind: image (C, H, W) in [-1, 1] | vector (D,) standardized | table (D,) standardized + one-hot | text
    (L,) character token ids (the alphabet in extra["vocab"]).

    `mean`/`std` are the per-dim standardisation (vectors, tables); `levels` the number of discrete values per
    pixel (256 for 8-bit images), used for dequantisation and bits/dim.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    num_classes: int | None = None
    class_names: list[str] | None = None
    levels: int | None = None
    value_range: tuple[float, float] = (-1.0, 1.0)
    mean: list[float] | None = None
    std: list[float] | None = None
    columns: list[Column] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return math.prod(self.shape)

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        d["value_range"] = list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        d = dict(d)
        d["shape"] = tuple(d["shape"])
        d["value_range"] = tuple(d.get("value_range", (-1.0, 1.0)))
        if d.get("columns") is not None:
            d["columns"] = [Column(**c) for c in d["columns"]]
        return cls(**d)

    @classmethod
    def from_arrays(cls, x: Any, y: Any = None, *, kind: str | None = None, name: str = "arrays",
                    class_names: list[str] | None = None) -> DataSpec:
        """The spec of arrays or tensors in original units (see `genlab.data.from_arrays`): x (N, D) floats ->
        vector (mean and std of x kept), (N, H, W[, C]) uint8 -> image (C, H, W) on 256 levels; y (N,) class
        indices -> num_classes. `spec.to_model(x)` then gives x in model space. Bad input: a GenlabError."""
        from .arrays import spec_from_arrays

        return spec_from_arrays(x, y, kind=kind, name=name, class_names=class_names)

    def to_model(self, x: Any) -> torch.Tensor:
        """Original units -> model space, the inverse of `to_original`: (N, D) rows -> standardised float32
        (N, D); images (N, H, W[, C]) uint8 -> (N, C, H, W) in [-1, 1]."""
        if self.kind == "text":
            from .text import text_to_ids

            return text_to_ids(self, x)
        from .arrays import to_model

        return to_model(self, x)

    def to_original(self, x: torch.Tensor) -> Any:
        """Model space -> original units. Images: uint8 (N, H, W, C). Vectors: float array.
        Tables: dict column -> array (categories decoded by argmax of their one-hot block)."""
        if self.kind == "text":
            from .text import ids_to_text

            return ids_to_text(self, x.detach().cpu())
        x = x.detach().float().cpu()
        if self.kind == "image":
            levels = self.levels or 256
            k = torch.round((x.clamp(-1, 1) + 1) / 2 * (levels - 1))
            img = (k * 255.0 / (levels - 1)).round().to(torch.uint8)
            return img.permute(0, 2, 3, 1).numpy()
        arr = x.numpy().astype(np.float64)
        if self.mean is not None:
            arr = arr * np.asarray(self.std) + np.asarray(self.mean)
        if self.kind == "vector" or not self.columns:
            return arr
        out: dict[str, np.ndarray] = {}
        i = 0
        for col in self.columns:
            block = x.numpy()[:, i : i + col.width]
            if col.type == "categorical":
                out[col.name] = np.asarray(col.categories, dtype=object)[block.argmax(1)]
            else:
                out[col.name] = arr[:, i]
            i += col.width
        return out
