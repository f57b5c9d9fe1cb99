"""Training: the one Trainer (trainer.py) for every family, and atomic checkpoints (checkpoint.py).

`genlab.train(model, data, steps=...)` is `genlab.training.train`."""

from .trainer import EMA, Run, TrainConfig, Trainer, train

__all__ = ["EMA", "Run", "TrainConfig", "Trainer", "train"]
