"""Reproducible runs (issue 22): the same config and seed give the same artifacts, byte for byte, on CPU.

What makes a CPU run repeatable lives where the randomness is: every stage seeds its own generators from the config
(``seed``), iterates sets and dicts in sorted order, learns tokenizer vocabularies with ``sidrec.bpe`` (ties broken
by string order), runs faiss k-means on one thread and resumes trainers from complete checkpoints only, with
per-epoch seeded samplers (sidrec/train/checkpoints.py). Figures are equal for the same thread count
(``OMP_NUM_THREADS``); another thread count may change float sums in their last bits.

GPU kernels are not all deterministic (atomics in scatter/index_add, cuBLAS split-K reductions, cuDNN algorithm
choice): :func:`use_deterministic_algorithms` (``sidrec pipeline --deterministic``) switches on what torch can
guarantee, and makes an operation without a deterministic implementation fail instead of varying silently.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def use_deterministic_algorithms() -> None:
    """Deterministic torch kernels for the rest of the process (CUDA: cuBLAS workspace, cuDNN without autotuning).

    Call it before the first CUDA operation: cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when it starts.
    """
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    os.environ.setdefault("FLASH_ATTENTION_DETERMINISTIC", "1")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    log.info("deterministic torch algorithms on (an operation without one raises an error)")
