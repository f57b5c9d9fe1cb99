"""Training: the one Trainer (trainer.py) and atomic checkpoints (checkpoint.py).

`genlab.train` is both this package and the train() function: the package is made callable, so
`genlab.train(model, data, steps=...)` works however genlab.train was first imported."""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from .trainer import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
