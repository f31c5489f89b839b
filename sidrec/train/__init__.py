"""Stages ``sft`` and ``grpo``: TRL trainers on the align stage's data, validated by constrained decoding.

- :func:`run_sft` / :class:`SftArgs` (with TRL's ``SFTConfig``) -- :mod:`sidrec.train.sft`
- :class:`RankingCallback` -- validation HR@10 / NDCG@10 during training (:mod:`sidrec.train.validation`)

Names are resolved on first use so ``import sidrec.train.<module>`` (and ``sidrec --help``) stays light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"SftArgs": "sidrec.train.sft", "run_sft": "sidrec.train.sft",
            "RankingCallback": "sidrec.train.validation"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sidrec.train' has no attribute {name!r}")
