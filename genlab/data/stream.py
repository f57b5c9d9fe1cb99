"""Image folders that stream from disk: file paths and labels in memory, pixels decoded per item.

`folder:PATH` streams when `data.stream=true`, or under the default `data.stream=auto` when the folder's pixels
as float32 would pass STREAM_BYTES (256 MiB: 85,000 28x28 grey images, 5,400 64x64 RGB ones); `stream=false`
keeps it in memory. A streamed split decodes an image in `__getitem__` (in DataLoader workers while training),
with the same conversion as the in-memory loader, so an item is bitwise the same tensor either way.

Only the first image is read at load time (for the shape and grey/RGB): with mixed sizes and no `size=`, or a
corrupt file, the bad image is reported when it is first read, as a one-line DataReadError naming it. The first
image also decides grey or RGB for the whole folder (the in-memory loader makes it RGB if any image is colour).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataReadError, GenlabError
from .dataset import images_from_uint8
from .spec import DataSpec

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GREY_MODES = ("1", "L", "LA", "I", "I;16")
STREAM_BYTES = 256 * 2**20


def list_images(root: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Class names (sub-folders, sorted), the image files in a fixed order as paths relative to root (N,) bytes,
    and their labels (N,) int64, -1 when the folder is flat. Plain strings, no Path objects: a million files
    cost tens of MiB, not hundreds, while listed."""
    if not root.is_dir():
        raise GenlabError(f"folder: expects a directory, {root} is a file; use npz: or csv: for files")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    names: list[bytes] = []
    labels: list[int] = []
    for label, d in enumerate(classes or [""]):
        found = sorted(f for f in os.listdir(root / d) if os.path.splitext(f)[1].lower() in IMAGE_EXT)
        names += [os.fsencode(os.path.join(d, f)) for f in found]
        labels += [label if classes else -1] * len(found)
    if len(names) < 2:
        raise GenlabError(f"{root} holds {len(names)} images ({', '.join(sorted(IMAGE_EXT))}); need at least 2")
    return classes, np.array(names), np.array(labels, dtype=np.int64)


def read_image(path: Path) -> Image:
    """The decoded PIL image at `path`, or a one-line DataReadError naming the file."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataReadError(f"cannot read image {path} ({type(e).__name__}); remove or replace it") from None


def to_uint8(im: Image, grey: bool, size: int | None) -> np.ndarray:
    """A PIL image -> (H, W) or (H, W, 3) uint8: grey or RGB, bicubic resize to size x size when given."""
    from PIL import Image as PILImage

    im = im.convert("L" if grey else "RGB")
    if size is not None:
        im = im.resize((int(size), int(size)), PILImage.BICUBIC)
    return np.asarray(im, dtype=np.uint8)


def stream_choice(stream: bool | str | None, n: int, shape: tuple[int, ...]) -> bool:
    """Whether n images of decoded `shape` (C, H, W) stream: the data.stream option, 'auto' by their size."""
    value = str(stream).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    if value != "auto":
        raise GenlabError(f"data.stream must be auto, true or false, got '{stream}'")
    return n * int(np.prod(shape)) * 4 > STREAM_BYTES


class FolderStream(Dataset):
    """One split of an image folder, decoded per item. Items are (x_i (C, H, W) float32 in [-1, 1], y_i int64).

    Holds the files as one array `names` (N,) of paths relative to `root` (bytes) and `y` (N,) int64 labels (-1
    when unlabelled), so its memory grows by a few dozen bytes per image and DataLoader workers share it without
    touching Python objects (no copy-on-write of refcounts). `first` names the image that fixed the shape."""

    streams = True

    def __init__(self, root: Path, names: np.ndarray, labels: np.ndarray, spec: DataSpec, split: str, grey: bool,
                 size: int | None, first: str):
        if len(names) == 0:
            raise GenlabError(f"dataset '{spec.name}' split '{split}' is empty")
        self.root, self.spec, self.split, self.grey, self.size = root, spec, split, grey, size
        self.names, self.y, self.first = names, torch.from_numpy(labels), first

    def __len__(self) -> int:
        return len(self.names)

    def path(self, i: int) -> Path:
        return self.root / os.fsdecode(self.names[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.path(int(i))
        im = read_image(f)
        if self.size is None and im.size != self.spec.shape[:0:-1]:
            (w, h), (w0, h0) = im.size, self.spec.shape[:0:-1]
            raise DataReadError(f"mixed image sizes in {self.root}: {self.first} is {w0}x{h0}, "
                                f"{os.fsdecode(self.names[int(i)])} is {w}x{h}; resize them or pass "
                                f"--set data.size=N to resize on load")
        x = images_from_uint8(to_uint8(im, self.grey, self.size)[None])[0].contiguous()
        return x, self.y[int(i)]

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Items idx (B,) decoded here, in order: x (B, C, H, W), y (B,)."""
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        return torch.stack([self[int(i)][0] for i in idx]), self.y[idx]

    @property
    def x(self) -> torch.Tensor:
        raise GenlabError(f"{self.spec.name} streams from disk ({len(self)} images) and is never whole in memory, "
                          f"which this needs: name it {self.spec.name}:stream=false or pass --set data.stream=false")

    def __repr__(self) -> str:
        s = self.spec
        return f"FolderStream({s.name!r}, split={self.split!r}, n={len(self)}, shape={s.shape})"


def stream_folder(root: Path, classes: list[str], names: np.ndarray, labels: np.ndarray, tr: np.ndarray,
                  te: np.ndarray, first: Image, size: int | None) -> tuple[FolderStream, FolderStream, DataSpec]:
    """The train and test FolderStreams of listed `names` and `labels` (list_images), split by the index arrays
    tr and te; `first` is names[0] decoded, which fixes grey or RGB and, without `size`, every image's size."""
    grey = first.mode in GREY_MODES
    arr = to_uint8(first, grey, size)
    shape = (1 if grey else 3, *arr.shape[:2])
    spec = DataSpec(f"folder:{root}", "image", shape, len(classes) or None, classes or None, levels=256)
    f0 = os.fsdecode(names[0])

    def part(idx: np.ndarray, split: str) -> FolderStream:
        return FolderStream(root, names[idx], labels[idx], spec, split, grey, size, f0)

    return part(tr, "train"), part(te, "test"), spec
