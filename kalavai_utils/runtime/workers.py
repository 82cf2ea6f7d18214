"""Independent jobs side by side in worker processes, on a CPU with idle cores.

Whole cooperatives are independent of one another: each reads only files, and a specialist
one of them trains another may copy (cooperative.copy_trained) or, if it is not finished
yet, train the same way. So a notebook with many cooperatives can run several at a time.

Why it pays on a CPU: at `tiny`'s sizes a torch process gains little from its second
thread. Measured on the 2-core machine the README's times come from: 60 specialist steps
took 1.9 s on two threads and 3.1 s on one (1.6x, the same for a model with nothing frozen),
and two one-thread processes side by side each ran as fast as one alone. Two one-thread
workers therefore finish two cooperatives about 1.2x sooner than one two-thread process
running them in turn.

`run_in_workers(jobs)` runs the jobs that way and returns what each took; the caller then runs its
usual loop, which finds every step cached. Numbers equal a serial run's up to float rounding
(one thread sums in another order than two: at most 4e-8 nats on the losses of one measured
cooperative), and the same worker count gives the same numbers every run.

KALAVAI_WORKERS sets the count: by default 2 on a CPU with at least 2 threads, and 1 on a GPU
(one process owns the device). With 1, `run_in_workers` does nothing and the caller's loop runs
every job in the notebook's own process.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..settings import WORKERS_ENV as WORKERS_ENV  # the variable's name, for callers
from ..settings import settings


def worker_count() -> int:
    """KALAVAI_WORKERS (settings.py), else 1 on a GPU and 2 on a CPU with at least 2 threads."""
    n = settings().workers
    if n is None:
        return 1 if torch.cuda.is_available() else min(2, torch.get_num_threads())
    return n


def _start(threads: int) -> None:
    torch.set_num_threads(threads)


def _timed(fn: Callable, args: tuple) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run_in_workers(jobs: list[tuple[Callable, tuple]], desc: str = "jobs") -> list[float] | None:
    """Run each `fn(*args)` of `jobs` in worker processes, as many at a time as there are
    workers, for what they leave on disk; returns each job's seconds (in the order given).

    Returns None without running anything when there is one worker or fewer than two jobs:
    the caller's own loop then does the work. `fn` must be a module-level function and
    `args` picklable (workers are spawned, not forked: a fork after torch has started its
    threads can hang). Each worker gets an equal share of this process's threads. The first
    job to fail stops the rest and its error is raised here.
    """
    n = worker_count()
    if n < 2 or len(jobs) < 2:
        return None
    threads = max(1, torch.get_num_threads() // n)
    seconds: list[float | None] = [None] * len(jobs)
    with ProcessPoolExecutor(
        min(n, len(jobs)), mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(threads,)
    ) as pool:
        futures = {pool.submit(_timed, fn, args): i for i, (fn, args) in enumerate(jobs)}
        try:
            for done in tqdm(as_completed(futures), total=len(futures), desc=f"{desc} ({n} workers)", disable=None):
                seconds[futures[done]] = done.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return seconds
