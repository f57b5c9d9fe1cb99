"""Inputs for inpainting: images from PNG/NPZ or a run's test split, and masks (1 = fill, 0 = keep) from
files or by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.spec import DataSpec
from ..errors import GenlabError

NAMED_MASKS = ("center", "left", "right", "top", "bottom", "noise")


def load_inputs(source: str, spec: DataSpec, n: int, data: dict | None = None) -> torch.Tensor:
    """`test` (the first n examples of the run's test split), FILE.png (one image) or FILE.npz (array 'x' or
    the first array) -> (N, *spec.shape) in data space."""
    if source == "test":
        from ..data import load_dataset

        info = data or {"name": spec.name, "opts": {}}
        test = load_dataset(info["name"], "test", **info.get("opts", {}))
        return test.take(torch.arange(min(n, len(test))))[0]
    p = Path(source)
    if not p.is_file():
        raise GenlabError(f"no file {p}: give a PNG image, an NPZ of images, or 'test'")
    if p.suffix.lower() == ".npz":
        with np.load(p) as z:
            if not z.files:
                raise GenlabError(f"{p} holds no arrays")
            a = z["x"] if "x" in z.files else z[z.files[0]]
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert("L" if spec.shape[0] == 1 else "RGB"), dtype=np.uint8)[None]
        except (UnidentifiedImageError, OSError) as e:
            raise GenlabError(f"cannot read image {p} ({type(e).__name__}); give a PNG or an NPZ") from None
    if not spec.is_image:
        x = torch.as_tensor(a, dtype=torch.float32).reshape(-1, *spec.shape)
        return (x - torch.tensor(spec.mean)) / torch.tensor(spec.std)  # original units -> model space
    from ..data.user import images_from_array

    if a.ndim == 2:
        a = a[None]
    x = images_from_array(a, p)
    if tuple(x.shape[1:]) != tuple(spec.shape):
        raise GenlabError(f"{p} holds images of shape {tuple(x.shape[1:])}; this model makes {tuple(spec.shape)}")
    return x


def make_mask(mask: str, spec: DataSpec, seed: int = 0) -> torch.Tensor:
    """A named mask for images (center: the middle half square; left/right/top/bottom: that half; noise: a
    random half of the pixels) or a PNG/NPY/NPZ file whose nonzero entries mark what to fill."""
    if mask in NAMED_MASKS:
        if not spec.is_image:
            raise GenlabError(f"named masks are for images; for {spec.kind} data give an .npy file of 0/1 per column")
        _, h, w = spec.shape
        m = torch.zeros(h, w)
        if mask == "center":
            m[h // 4: h - h // 4, w // 4: w - w // 4] = 1
        elif mask == "left":
            m[:, : w // 2] = 1
        elif mask == "right":
            m[:, w // 2:] = 1
        elif mask == "top":
            m[: h // 2] = 1
        elif mask == "bottom":
            m[h // 2:] = 1
        else:
            m = (torch.rand(h, w, generator=torch.Generator().manual_seed(seed)) < 0.5).float()
        return m
    p = Path(mask)
    if not p.is_file():
        raise GenlabError(f"unknown mask '{mask}': use one of {', '.join(NAMED_MASKS)} or a PNG/NPY/NPZ file")
    if p.suffix.lower() == ".npy":
        a = np.load(p, allow_pickle=False)
    elif p.suffix.lower() == ".npz":
        with np.load(p, allow_pickle=False) as z:
            a = z["mask"] if "mask" in z.files else z[z.files[0]]
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert("L"))
        except (UnidentifiedImageError, OSError) as e:
            raise GenlabError(f"cannot read mask {p} ({type(e).__name__}); give a PNG, NPY or NPZ") from None
    return torch.as_tensor((np.asarray(a, dtype=np.float64) > 0).astype(np.float32))
