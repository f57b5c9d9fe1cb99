"""GenDataset: an in-memory dataset of model-space tensors with its DataSpec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import GenlabError
from .spec import DataSpec


class GenDataset(Dataset):
    """x: (N, *spec.shape) float32 (int64 token ids for text); y: (N,) int64 labels, or -1 where unlabelled.
    Items are (x_i, y_i).

    `take(idx)` is the batch interface it shares with the streamed FolderStream, which has no `.x`."""

    streams = False  # in memory: the Trainer indexes it directly, no DataLoader

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, spec: DataSpec, split: str):
        if len(x) == 0:
            raise GenlabError(f"dataset '{spec.name}' split '{split}' is empty")
        if not torch.isfinite(x).all():
            raise GenlabError(f"dataset '{spec.name}' holds NaN or inf values; clean the data first")
        self.x = (x.long() if spec.kind == "text" else x.float()).contiguous()
        self.y = (y if y is not None else torch.full((len(x),), -1)).long()
        self.spec = spec
        self.split = split
        self.source: dict | None = None  # {"name", "opts"} when loaded by name (load_dataset)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Items idx (B,): x (B, *shape), y (B,), exactly x[idx] and y[idx]."""
        return self.x[idx], self.y[idx]

    def __repr__(self) -> str:
        s = self.spec
        return f"GenDataset({s.name!r}, split={self.split!r}, n={len(self)}, kind={s.kind}, shape={s.shape})"


def chunks(dataset: Any, size: int = 1000, n: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) of the first n items (default all) of a dataset with `take`, in order, `size` at a time:
    (B, *shape), (B,). Only one chunk of a streamed dataset is ever in memory."""
    n = len(dataset) if n is None else min(n, len(dataset))
    for i in range(0, n, size):
        yield dataset.take(torch.arange(i, min(i + size, n)))


def images_from_uint8(arr: np.ndarray, levels: int = 256) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) integers in [0, levels) -> (N, C, H, W) float in [-1, 1]."""
    if arr.ndim == 3:
        arr = arr[..., None]
    x = torch.from_numpy(np.array(arr)).permute(0, 3, 1, 2).float()
    return x / (levels - 1) * 2 - 1


def split_indices(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded train/test split of n items (at least one item on each side when n >= 2)."""
    if not 0 < test_fraction < 1:
        raise GenlabError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(max(1, round(n * test_fraction)), n - 1) if n >= 2 else 0
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def min_items(test_fraction: float, each: int = 2) -> int:
    """The fewest items whose seeded split leaves at least `each` on both sides (2: a spread to fit and test)."""
    n = 2 * each
    while min(len(part) for part in split_indices(n, test_fraction)) < each:
        n += 1
    return n


def standardize(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std of the train split (std of a constant column is set to 1)."""
    mean = train.mean(0)
    std = train.std(0)
    std[std < 1e-12] = 1.0
    return mean, std


def dequantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Uniform dequantisation (Theis et al. 2016): grid value k/(L-1)*2-1 -> (k+u)/L*2-1, u ~ U[0, 1).
    A density p on the result bounds the discrete data: log P(x) >= E_u log p(y) - D log(L/2)."""
    return (to_levels(x, levels) + torch.rand_like(x)) / levels * 2 - 1


def bin_centres(x: torch.Tensor, levels: int) -> torch.Tensor:
    """The centre of each value's dequantisation bin: k/(L-1)*2-1 -> (k+0.5)/L*2-1."""
    return (to_levels(x, levels) + 0.5) / levels * 2 - 1


def to_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Grid values in [-1, 1] -> their level k in 0..L-1 (as floats); from_levels is its inverse."""
    return torch.round((x + 1) / 2 * (levels - 1))


def from_levels(k: torch.Tensor, levels: int) -> torch.Tensor:
    """Levels k in 0..L-1 -> grid values k/(L-1)*2-1 in [-1, 1] (float32)."""
    return k.float() / (levels - 1) * 2 - 1
