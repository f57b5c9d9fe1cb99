"""`shapes`: a dSprites-like dataset (Matthey et al. 2017) written by genlab, for measuring disentanglement.

White shapes on black, 28x28, every combination of five factors of variation: shape (square, ellipse,
triangle), scale (6 values), rotation (6 values in [0, 90) degrees), x and y (8 positions each): 6,912 images.
Intensities are the covered share of each pixel (4x4 supersampling), so edges are anti-aliased. The label is
the shape; `factors()` gives every item's five factor values for the disentanglement metrics
(genlab.metrics.disentanglement), in the order of `grid()`.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

FACTORS = ("shape", "scale", "rotation", "x", "y")
SHAPES = ("square", "ellipse", "triangle")
SIZE = 28
SCALES = np.linspace(0.5, 1.0, 6)  # times the largest shape's size, 0.4 of the image
ROTATIONS = np.linspace(0, np.pi / 2, 6, endpoint=False)
POSITIONS = np.linspace(0.28, 0.72, 8)  # centres, as fractions of the image side
SUPERSAMPLE = 4


def _inside(shape: int, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Points (u, v) in the shape's own frame (centred, unrotated) that it covers; r: half its size."""
    if shape == 0:  # square of side 2r
        return (np.abs(u) <= r) & (np.abs(v) <= r)
    if shape == 1:  # ellipse, semi-axes r and 0.6 r
        return (u / r) ** 2 + (v / (0.6 * r)) ** 2 <= 1
    # equilateral triangle with circumradius 1.2 r, a vertex up: inside its three half-planes
    R = 1.2 * r
    out = np.ones_like(u, dtype=bool)
    for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        # the edge opposite the vertex at angle a lies at distance R/2 from the centre, on the far side
        out &= -(u * np.cos(a) + v * np.sin(a)) <= R / 2
    return out


def render(shape: int, scale: float, rotation: float, x: float, y: float, size: int = SIZE) -> np.ndarray:
    """One image (size, size) uint8: the share of each pixel the shape covers, times 255."""
    k = SUPERSAMPLE
    c = (np.arange(size * k) + 0.5) / (size * k)  # sub-pixel centres in [0, 1]
    X, Y = np.meshgrid(c, c)  # Y grows downwards: row index
    dx, dy = X - x, Y - y
    cos, sin = np.cos(rotation), np.sin(rotation)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # into the shape's frame
    cover = _inside(shape, u, v, 0.2 * scale).reshape(size, k, size, k).mean((1, 3))
    return np.round(cover * 255).astype(np.uint8)


@lru_cache(maxsize=1)
def grid() -> tuple[np.ndarray, np.ndarray]:
    """(images (6912, 28, 28) uint8, factors (6912, 5) int64): every combination, shape slowest."""
    combos = np.array(list(itertools.product(range(len(SHAPES)), range(len(SCALES)), range(len(ROTATIONS)),
                                             range(len(POSITIONS)), range(len(POSITIONS)))))
    images = np.stack([render(s, SCALES[a], ROTATIONS[r], POSITIONS[i], POSITIONS[j]) for s, a, r, i, j in combos])
    return images, combos


def factors() -> np.ndarray:
    """Every item's factor values (6912, 5): shape, scale, rotation, x, y indices, in the order of grid()."""
    return grid()[1]


def load_shapes():
    """The registered dataset: 90% / 10% of the grid at random (seed 0), labelled by shape."""
    from .arrays import model_splits
    from .dataset import split_indices

    images, f = grid()
    tr, te = split_indices(len(images), 0.1, seed=0)
    return model_splits("shapes", "image", images[tr], f[tr, 0], images[te], f[te, 0], num_classes=len(SHAPES),
                        class_names=list(SHAPES), where="shapes")
