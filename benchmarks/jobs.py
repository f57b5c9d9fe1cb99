"""Run a benchmark's independent units (one seed, one draw) side by side in processes of one thread each.

On the 2-core machine of docs/BENCHMARKS.md, small models (tables, 2-D data) train faster as two single-thread
processes than as one process of two threads (§29: 32 minutes for ten seeds against 25 for three). Each unit is
`fn(*unit, threads)`; results come back in the order they finish, so the caller aggregates order-free statistics.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed


def run_units(fn: Callable, units: Iterable[tuple], jobs: int, threads_alone: int = 2) -> Iterator:
    """fn(*unit, threads) for every unit: in this process with `threads_alone` threads when jobs <= 1, else in
    `jobs` spawned processes of one thread each (fn must be a module-level function)."""
    if jobs <= 1:
        for unit in units:
            yield fn(*unit, threads_alone)
        return
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(fn, *unit, 1) for unit in units]
        for f in as_completed(futures):
            yield f.result()


def _exit_with_parent(parent: int) -> None:
    """In each worker: exit when the benchmark that started it is gone (killed), instead of running on."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
