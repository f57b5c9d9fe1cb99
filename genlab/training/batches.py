"""The seeded data order, shared by in-memory indexing and streamed loading, and the streamed loader.

Epoch e is `torch.randperm(n)` under a generator seeded `seed * 1_000_003 + e`; draw d (the Trainer's count of
batches drawn) is batch d % steps_per_epoch of epoch d // steps_per_epoch, the last partial batch dropped, and
each DDP process takes every world-th index of it from its rank. Any draw's indices are known without replaying
the run, so a resumed run (which restarts at its checkpoint's draw) sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader


class BatchOrder:
    """Indices of any draw: `indices(d)` -> (batch_size // world,) int64, the epoch's permutation cached."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.steps_per_epoch = n // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def indices(self, draw: int) -> torch.Tensor:
        B = self.batch_size
        epoch, i = divmod(draw, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.n, generator=g), epoch
        return self._perm[i * B: (i + 1) * B][self.rank:: self.world]


class DrawSampler:
    """A DataLoader batch sampler: the index lists of draws start, start + 1, ... without end."""

    def __init__(self, order: BatchOrder, start: int):
        self.order, self.start = order, start

    def __iter__(self) -> Iterator[list[int]]:
        draw = self.start
        while True:
            yield self.order.indices(draw).tolist()
            draw += 1


class StreamedBatches:
    """Batches of a streamed dataset from draw `start` on, decoded by `workers` DataLoader processes (0: here).

    `next()` -> (x (B, *shape), y (B,)) on the CPU, pinned for a CUDA copy when `pin`. One iterator serves the
    whole run (the sampler has no end), so the workers live as long as it. The loader draws its base seed from its
    own generator, not the global one, so the training noise streams match in-memory training."""

    def __init__(self, dataset: Any, order: BatchOrder, start: int, workers: int, pin: bool, seed: int):
        own = BatchOrder(order.n, order.batch_size, order.seed, order.rank, order.world)  # runs ahead of training
        loader = DataLoader(dataset, batch_sampler=DrawSampler(own, start),
                            num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                            generator=torch.Generator().manual_seed(seed), worker_init_fn=_ignore_ctrl_c)
        self._it: Any = iter(loader)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        return next(self._it)

    def close(self) -> None:
        """Stop the worker processes now. Dropping the iterator is not enough after an error: the traceback keeps
        it alive until garbage collection, whose shutdown then stalls a later step (10 s measured in the tests)."""
        shutdown = getattr(self._it, "_shutdown_workers", None)  # what DataLoader iterators run when deleted
        if shutdown is not None:
            shutdown()
        self._it = None


def _ignore_ctrl_c(worker_id: int) -> None:
    """Workers leave Ctrl-C (sent to the whole process group) to the trainer, which saves a checkpoint at the
    end of its step, for which it may still need a batch or two."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
