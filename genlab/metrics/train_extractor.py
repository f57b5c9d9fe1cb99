"""Train the protocol's feature extractor for an image dataset: `genlab extractor --data NAME --out FILE`."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import GenlabError
from .features import ClassifierNet, extractor_meta, save_extractor


def augment(x: torch.Tensor, g: torch.Generator, flip: bool) -> torch.Tensor:
    """Random shifts by up to 2 pixels (pad and crop) and, where the data allows, horizontal flips."""
    b, _, h, w = x.shape
    pad = F.pad(x, (2, 2, 2, 2), value=-1.0)
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()
    out = pad[:, :, dy:dy + h, dx:dx + w]
    if flip:
        m = torch.rand(b, generator=g) < 0.5
        out = torch.where(m[:, None, None, None], out.flip(3), out)
    return out


@torch.no_grad()
def accuracy(net: ClassifierNet, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    net.eval()
    hits = 0
    for i in range(0, len(x), batch):
        pred = net(x[i:i + batch].contiguous(memory_format=torch.channels_last)).argmax(1)
        hits += int((pred == y[i:i + batch]).sum())
    return hits / len(x)


def train_extractor(dataset: str, out: Path, epochs: int = 12, batch_size: int = 128, lr: float = 2e-3,
                    seed: int = 0, flip: bool | None = None, progress: bool = True) -> dict:
    """Train ClassifierNet on the train split (AdamW, one-cycle, shift augmentation), report test accuracy,
    write weights + metadata to `out`. Returns the metadata (with sha256)."""
    from ..data import load_dataset

    train, test = load_dataset(dataset), load_dataset(dataset, "test")
    spec = train.spec
    if not spec.is_image or not spec.num_classes:
        raise GenlabError(f"an extractor needs labelled images; {dataset} is {spec.kind} data"
                          + ("" if spec.num_classes else " without classes"))
    flip = dataset == "fashion-mnist" if flip is None else flip  # digits must not be mirrored
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    widths = (32, 64)
    net = ClassifierNet(spec.shape, spec.num_classes, widths).to(memory_format=torch.channels_last)
    steps = epochs * (len(train) // batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0, step = time.perf_counter(), 0
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(train), generator=g)
        for i in range(len(train) // batch_size):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = augment(train.x[idx], g, flip).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net(x), train.y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, test accuracy "
                  f"{accuracy(net, test.x, test.y):.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    acc = accuracy(net, test.x, test.y)
    meta = extractor_meta(spec.shape, spec.num_classes, widths, 128, dataset, round(acc, 4))
    meta |= {"epochs": epochs, "seed": seed, "train_seconds": round(time.perf_counter() - t0, 1)}
    meta["sha256"] = save_extractor(net.to(memory_format=torch.contiguous_format), Path(out), meta)
    return meta
