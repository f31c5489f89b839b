"""Run small torch models on one CPU thread.

Small matrices (the sensory student, the RQ-VAE MLP) gain little from intra-op threads and lose a lot when the
cores are busy: measured here, a student training step took 10x longer with 2 threads than with 1 on a loaded
2-core machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread(enabled: bool = True) -> Iterator[None]:
    """Limit torch to one intra-op thread inside the block (no-op when ``enabled`` is false)."""
    before = torch.get_num_threads()
    if enabled:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
