"""Sample grids (PNG) and 2-D scatter plots, written atomically."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from ..data.spec import DataSpec
from ..io import atomic_write_bytes


def grid_array(x: torch.Tensor, spec: DataSpec, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) model-space images, or (R, S, C, H, W) rows of images -> one uint8 (H', W', C) mosaic."""
    if x.dim() == len(spec.shape) + 2:
        nrow = x.shape[1]
        x = x.flatten(0, 1)
    imgs = spec.to_original(x)  # (N, H, W, C) uint8
    n, h, w, c = imgs.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = imgs[i]
    return out


def png_bytes(arr: np.ndarray, scale: int = 1) -> bytes:
    from PIL import Image

    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(x: torch.Tensor, spec: DataSpec, path: str | Path, nrow: int | None = None) -> Path:
    """Write a grid of images as PNG (upscaled so small images stay visible)."""
    arr = grid_array(x, spec, nrow)
    scale = max(1, 256 // max(arr.shape[0], 1)) if spec.shape[-1] <= 16 else 2 if spec.shape[-1] <= 32 else 1
    atomic_write_bytes(Path(path), png_bytes(arr, min(scale, 4)))
    return Path(path)


def save_scatter(samples: torch.Tensor, spec: DataSpec, path: str | Path, reference: torch.Tensor | None = None,
                 title: str = "") -> Path:
    """2-D samples (model space) as a scatter plot in original units, over the reference data if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        r = spec.to_original(reference)
        ax.scatter(r[:, 0], r[:, 1], s=2, c="#bbbbbb", label="data")
    s = spec.to_original(samples)
    ax.scatter(s[:, 0], s[:, 1], s=2, c="#d62728", label="samples")
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def save_samples(x: torch.Tensor, spec: DataSpec, path: str | Path, reference: torch.Tensor | None = None,
                 title: str = "", nrow: int | None = None) -> Path | None:
    """A picture of samples suited to the data: image grid, 2-D scatter; None for other data."""
    if spec.is_image:
        return save_grid(x, spec, path, nrow)
    if spec.dims == 2:
        return save_scatter(x, spec, path, reference, title)
    return None
