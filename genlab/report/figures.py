"""Pictures of what a model can do, by capability: reconstructions, latent traversals, interpolations."""

from __future__ import annotations

from pathlib import Path

import torch

from .images import save_grid


@torch.no_grad()
def model_figures(run: str | Path, n: int = 10, seed: int = 0) -> list[Path]:
    """Write RUN/figures/*.png for every picture the run's model supports (images only); return the paths."""
    from ..runs import RunDir

    rd = RunDir.open(run)
    run = rd.path
    model = rd.model()
    if not model.spec.is_image:
        return []
    test = rd.dataset("test")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(test), generator=g)[: 2 * n]
    x, y = test.take(idx)
    y = y if model.conditioning == "class" else None
    out: list[Path] = []
    caps = model.capabilities
    if "reconstruct" in caps:
        rec = model.reconstruct(x[:n], None if y is None else y[:n])
        out.append(save_grid(torch.stack([x[:n], rec]), model.spec, run / "figures" / "reconstructions.png"))
    if "traverse" in caps:
        dims = None
        kl = _last_kl(run)
        if kl is not None:  # the most informative dimensions first
            dims = sorted(range(len(kl)), key=lambda i: -kl[i])[: min(8, len(kl))]
        grid = model.traverse(dims=dims, steps=9, y=None if y is None else y[:1])
        out.append(save_grid(grid, model.spec, run / "figures" / "traversal.png"))
    if "interpolate" in caps:
        path = model.interpolate(x[:6], x[n:n + 6], steps=10, y=None if y is None else y[:6])
        out.append(save_grid(path, model.spec, run / "figures" / "interpolation.png"))
    return out


def _last_kl(run: Path) -> list[float] | None:
    from ..runs import RunDir

    return next((r["kl_per_dim"] for r in reversed(RunDir(run).history) if "kl_per_dim" in r), None)
