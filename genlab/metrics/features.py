"""Feature extractors of the evaluation protocol (DESIGN §4).

Each image dataset gets a small classifier trained by genlab on its train split (`genlab extractor`); its
penultimate layer (128 ReLU units) gives the features for FID/KID/P-R/D-C, its softmax the class probabilities
for IS and for the accuracy of class-conditional samples. Weights ship inside the package, sha256-pinned.
Inception-v3 (pytorch-fid-compatible weights from a local file) goes through the same interface.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import GenlabError
from ..io import file_sha256

WEIGHTS = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ExtractorInfo:
    file: str
    sha256: str
    test_accuracy: float


# filled by `genlab extractor --data NAME --out genlab/metrics/weights/NAME.safetensors` (see docs/BENCHMARKS.md)
SHIPPED: dict[str, ExtractorInfo] = {
    "digits": ExtractorInfo("digits.safetensors",
                            "1e46083eefed42f14f59ad3e41b46e863ca4e5871c51ce0162d8db636de02bd0", 0.9916),
    "mnist5k": ExtractorInfo("mnist5k.safetensors",
                             "1ba0b5329d415be022ba7529503a9d5aca666b2d89ce48640b2af5e81106796e", 0.9890),
    "fashion-mnist": ExtractorInfo("fashion-mnist.safetensors",
                                   "c7b0623d3edb37b232939e25cf5662d649d3b35005bed3d7246b9f345788d875", 0.9343),
}


class ClassifierNet(nn.Module):
    """(B, C, H, W) in [-1, 1] -> logits. Two stages of [conv3x3-BN-ReLU] x2 + max-pool, then a 128-unit layer
    whose ReLU output is the feature vector."""

    def __init__(self, shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...] = (32, 64),
                 feat_dim: int = 128):
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        for width in widths:
            for _ in range(2):
                layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                c = width
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * w, feat_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feat_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Extractor(nn.Module):
    """features(x) -> (B, d); probs(x) -> (B, classes). `name` and `sha256` identify it in eval.json."""

    def __init__(self, net: nn.Module, shape: tuple[int, ...], name: str, sha256: str, has_classes: bool = True):
        super().__init__()
        self.net, self.shape, self.name, self.sha256, self.has_classes = net, tuple(shape), name, sha256, has_classes
        self.eval()

    def check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise GenlabError(f"images of shape {tuple(x.shape[1:])} do not fit the {self.name} extractor, which takes "
                              f"{self.shape}")

    @torch.no_grad()
    def run(self, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features and class probabilities of (N, C, H, W) model-space images, float32 on the CPU."""
        self.check(x)
        dev = next(self.net.parameters()).device
        feats, probs = [], []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(dev).contiguous(memory_format=torch.channels_last)
            f = self.net.body(xb)
            feats.append(f.float().cpu())
            if self.has_classes:
                probs.append(torch.softmax(self.net.head(f), 1).float().cpu())
        return torch.cat(feats), (torch.cat(probs) if probs else None)


def save_extractor(net: ClassifierNet, path: Path, meta: dict) -> str:
    """Weights + the metadata needed to rebuild the net, in one safetensors file; returns its sha256."""
    from ..io import save_tensors

    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(net.state_dict(), path, metadata={"genlab_extractor": json.dumps(meta)})
    return file_sha256(path)


def load_extractor_file(path: str | Path, expected_sha256: str | None = None, device: str = "cpu") -> Extractor:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"extractor weights not found: {path}")
    digest = file_sha256(path)
    if expected_sha256 and digest != expected_sha256:
        raise GenlabError(f"extractor weights {path} fail their sha256 check; reinstall genlab")
    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["genlab_extractor"])
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except (KeyError, json.JSONDecodeError, OSError, ValueError):
        raise GenlabError(f"{path} is not a genlab extractor file (train one with `genlab extractor`)") from None
    net = ClassifierNet(tuple(meta["shape"]), meta["num_classes"], tuple(meta["widths"]), meta["feat_dim"])
    net.load_state_dict(state)
    net.to(device).to(memory_format=torch.channels_last)
    return Extractor(net, tuple(meta["shape"]), f"classifier:{meta['dataset']}", digest)


def extractor_for(dataset: str, extractor: str | None = None, device: str = "cpu") -> Extractor:
    """The protocol's extractor for an image dataset: an explicit file, or the one genlab ships for it."""
    if extractor:
        if extractor.startswith("inception:"):
            return inception_extractor(extractor.split(":", 1)[1], device)
        return load_extractor_file(extractor, device=device)
    if dataset not in SHIPPED:
        raise GenlabError(f"no feature extractor ships for '{dataset}': train one with "
                          f"`genlab extractor --data {dataset} --out FILE.safetensors`, then pass --extractor FILE")
    info = SHIPPED[dataset]
    return load_extractor_file(WEIGHTS / info.file, info.sha256, device)


def inception_extractor(weights: str, device: str = "cpu") -> Extractor:
    """Inception-v3 pool features (2048-d) with pytorch-fid-compatible weights from a local file, through
    torch-fidelity's network (via torchmetrics). Greyscale images are repeated to 3 channels."""
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError:
        raise GenlabError("the Inception extractor needs torchmetrics and torch-fidelity: "
                          "pip install torchmetrics torch-fidelity") from None
    path = Path(weights)
    if not path.is_file():
        raise GenlabError(f"Inception weights not found: {path} (pytorch-fid's pt_inception-2015-12-05 file)")
    net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                             feature_extractor_weights_path=str(path))

    class _Inception(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = net

        def body(self, x):  # model space [-1, 1] -> uint8 RGB as torch-fidelity expects
            img = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            if img.shape[1] == 1:
                img = img.repeat(1, 3, 1, 1)
            return self.inner(img).reshape(len(x), -1)

    ext = Extractor(_Inception().to(device), (0, 0, 0), "inception-v3", file_sha256(path), has_classes=False)
    ext.check = lambda x: None  # any size: torch-fidelity resizes to 299x299
    return ext


def extractor_meta(net_shape, num_classes, widths, feat_dim, dataset, accuracy) -> dict:
    """What load_extractor_file needs to rebuild the net, plus the test accuracy it reached."""
    return {"shape": list(net_shape), "num_classes": num_classes, "widths": list(widths), "feat_dim": feat_dim,
            "dataset": dataset, "test_accuracy": accuracy}
