"""Ranking metrics from the 1-based rank of the target in each ranked list (0 = not in the list).

HR@K = 1[rank <= K]; NDCG@K = 1/log2(rank + 1) if rank <= K (one relevant item, so IDCG = 1);
MRR@K = 1/rank if rank <= K. Every function is vectorised over samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10, 20)
METRICS: tuple[str, ...] = ("HR", "NDCG", "MRR")


def target_ranks(ranked_lists: Sequence[Sequence[str]], targets: Sequence[str]) -> np.ndarray:
    """1-based rank of each target in its list, 0 when absent. Shape (n_samples,)."""
    ranks = np.zeros(len(targets), dtype=np.int64)
    for i, (items, target) in enumerate(zip(ranked_lists, targets)):
        try:
            ranks[i] = list(items).index(target) + 1
        except ValueError:
            pass
    return ranks


def per_sample_metrics(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """{"HR@K": (n,), "NDCG@K": (n,), "MRR@K": (n,)} per-sample values for every K.

    >>> m = per_sample_metrics(np.array([1, 3, 0]), ks=(1, 5))
    >>> m["HR@5"].tolist(), round(float(m["NDCG@5"][1]), 4), m["MRR@5"].tolist()
    ([1.0, 1.0, 0.0], 0.5, [1.0, 0.3333333333333333, 0.0])
    """
    ranks = np.asarray(ranks)
    found = ranks > 0
    safe = np.where(found, ranks, 1).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = found & (ranks <= k)
        out[f"HR@{k}"] = hit.astype(np.float64)
        out[f"NDCG@{k}"] = np.where(hit, 1.0 / np.log2(safe + 1.0), 0.0)
        out[f"MRR@{k}"] = np.where(hit, 1.0 / safe, 0.0)
    return out


def summarize(per_sample: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict[str, float]:
    """Mean of each per-sample metric (over ``mask`` when given)."""
    return {name: float(values[mask].mean() if mask is not None else values.mean()) if values.size and (
        mask is None or mask.any()) else 0.0 for name, values in per_sample.items()}
