"""Independent runs in single-thread worker processes: replicated experiments on a small CPU.

Small networks use a CPU core poorly when one process trains with several threads; two
single-thread processes, each training its own runs, finish a sweep sooner. Every run is
single-threaded wherever it executes, so the numbers do not depend on how many workers there
are. On a GPU (or with ``workers=1``) the runs execute one after another in this process.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable

import torch

_SHARED: Any = None


def _init_worker(shared: Any) -> None:
    global _SHARED
    torch.set_num_threads(1)
    _SHARED = shared


def _call(fn: Callable[[Any, Any], Any], job: Any) -> Any:
    return fn(job, _SHARED)


WORKERS_ENV = "TLUTILS_WORKERS"
"""Environment variable that sets the default worker count, e.g. ``1`` where several labs already
share the cores (``make test``, and ``make book`` running two labs at a time)."""


def default_workers(device: torch.device | str | None = None) -> int:
    """Two workers on a CPU with at least two cores (none on a GPU, where one process is best),
    unless ``TLUTILS_WORKERS`` says how many."""
    if device is not None and torch.device(device).type != "cpu":
        return 1
    value = os.environ.get(WORKERS_ENV, "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{WORKERS_ENV} must be a positive integer, got {value!r}")
        return int(value)
    return 2 if (os.cpu_count() or 1) >= 2 else 1


class WorkerPool:
    """Runs ``fn(job, shared)`` for many jobs; ``shared`` (data, models) is sent to each worker once.

    ``fn`` must be importable (a function of a module, not one defined in a notebook), and so must
    everything in ``shared``. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, shared: Any = None, workers: int | None = None,
                 device: torch.device | str | None = None) -> None:
        self.workers = default_workers(device) if workers is None else int(workers)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.shared = shared
        self._pool = None
        if self.workers > 1:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                             initializer=_init_worker, initargs=(shared,))

    def map(self, fn: Callable[[Any, Any], Any], jobs: Iterable[Any]) -> list:
        """``[fn(job, shared) for job in jobs]``, in order, each run on one thread."""
        jobs = list(jobs)
        if self._pool is not None:
            return list(self._pool.map(_call, [fn] * len(jobs), jobs))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [fn(job, self.shared) for job in jobs]
        finally:
            torch.set_num_threads(threads)

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
