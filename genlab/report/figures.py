"""Pictures of what a model can do, by capability: reconstructions, latent traversals, interpolations, and the
latent space of test examples projected to 2-D, coloured by class."""

from __future__ import annotations

from pathlib import Path

import torch

from .images import save_grid


@torch.no_grad()
def model_figures(run: str | Path, n: int = 10, seed: int = 0) -> list[Path]:
    """Write RUN/figures/*.png for every picture the run's model supports (the latent view for any labelled data,
    the rest for images); return the paths."""
    from ..runs import RunDir

    rd = RunDir.open(run)
    run = rd.path
    model = rd.model()
    test = rd.dataset("test")
    out: list[Path] = []
    if "encode" in model.capabilities and getattr(test, "y", None) is not None and len(test):
        idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:2000]
        xs, ys = test.take(idx)
        cond = model.conditioning == "class"
        z = torch.cat([model.encode(xs[i:i + 256], ys[i:i + 256] if cond else None) for i in range(0, len(xs), 256)])
        if z.is_floating_point() and z[0].numel() >= 2:
            out.append(latent_scatter(z, ys if model.spec.num_classes else None, run / "figures" / "latent.png",
                                      model.spec.class_names))
    if not model.spec.is_image:
        return out
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(test), generator=g)[: 2 * n]
    x, y = test.take(idx)
    y = y if model.conditioning == "class" else None
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


def project_2d(z: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float]]:
    """(N, ...) codes -> their first two principal components (N, 2) and the share of variance each explains."""
    z = z.flatten(1).double()
    z = z - z.mean(0)
    _, s, vh = torch.linalg.svd(z, full_matrices=False)
    var = s.pow(2) / s.pow(2).sum()
    return z @ vh[:2].T, (float(var[0]), float(var[1]))


def latent_scatter(z: torch.Tensor, labels: torch.Tensor | None, path: Path, names=None) -> Path:
    """The codes of test examples in 2-D (their own axes if 2-D, else the first two principal components)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_bytes
    from .html import figure_png

    if z.flatten(1).shape[1] == 2:
        p, title = z.flatten(1).double(), "latent space of test examples"
    else:
        p, (a, b) = project_2d(z)
        title = f"latent space of test examples: first two principal components ({100 * a:.0f}% + {100 * b:.0f}%)"
    fig, ax = plt.subplots(figsize=(6, 5), dpi=90)
    if labels is None:
        ax.scatter(p[:, 0], p[:, 1], s=4, alpha=0.6)
    else:
        for c in sorted(set(labels.tolist())):
            keep = labels == c
            name = names[c] if names is not None and c < len(names) else str(c)
            ax.scatter(p[keep, 0], p[keep, 1], s=4, alpha=0.6, label=name)
        ax.legend(fontsize=7, markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    atomic_write_bytes(path, figure_png(fig))
    return path


def _last_kl(run: Path) -> list[float] | None:
    from ..runs import RunDir

    return next((r["kl_per_dim"] for r in reversed(RunDir(run).history) if "kl_per_dim" in r), None)
