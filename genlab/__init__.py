"""genlab: train, sample, evaluate and compare generative models on real data.

    import genlab
    data = genlab.load_dataset("fashion-mnist")
    model = genlab.create("vae", data.spec, latent_dim=16)
    run = genlab.train(model, data, epochs=5, out="runs/vae")
    x = genlab.load("runs/vae").sample(64, seed=0)

    train, test = genlab.from_arrays(X, y)             # your own (N, D) floats or (N, H, W[, C]) uint8 images
    run = genlab.train(genlab.create("vae", train.spec), train, steps=500, out=None)  # in memory, nothing written

Heavy modules (torch, the families) load on first use, so `import genlab` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_dataset", "from_arrays", "DataSpec", "create", "train", "load", "evaluate", "__version__"]


def __getattr__(name: str):
    if name == "load_dataset":
        from .data import load_dataset

        return load_dataset
    if name == "from_arrays":
        from .data import from_arrays

        return from_arrays
    if name == "DataSpec":
        from .data import DataSpec

        return DataSpec
    if name == "create":
        from .models import create

        return create
    if name == "load":
        from .models import load_model

        return load_model
    if name == "train":
        from .training import train

        return train
    if name == "evaluate":
        from .metrics.protocol import evaluate

        return evaluate
    raise AttributeError(f"module 'genlab' has no attribute '{name}'")
