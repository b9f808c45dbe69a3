"""torch's thread pool sized to the cores this process may use, leaving room for data workers."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from echofm.runtime.hardware import available_cores


def compute_threads(workers: int = 0, cores: int | None = None) -> int:
    """Threads for the process that runs the model when ``workers`` data-loader processes
    share its cores: one core per worker, but never fewer than half the cores for the
    model (loading a prepared clip is light next to a forward pass)."""
    cores = cores or available_cores()
    return max(1, cores // 2, cores - max(0, workers))


def configure_threads(workers: int = 0, threads: int | None = None) -> int:
    """Set torch's intra-op threads (``threads``, else ``compute_threads(workers)``); returns it.

    DataLoader workers already run with one thread each (torch sets that in every worker).
    """
    n = threads or compute_threads(workers)
    if n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextmanager
def threads_for(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block (None: left as they are),
    then put back, so a library call that pins them (for reproducible sums) does not change
    the caller's process for good."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
