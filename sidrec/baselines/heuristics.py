"""Sanity baselines that learn nothing sequential: most-popular and uniformly random rankings."""

from __future__ import annotations

import torch

from sidrec.data.store import CanonicalData


class Popularity:
    """Scores every item by its interaction count in the training sequences (ties: item table order).

    Every user gets the same list (history items included unless ``exclude_history``).
    """

    def __init__(self, data: CanonicalData):
        pop = data.train_popularity
        n = len(data.item_ids)
        order = sorted(range(n), key=lambda i: (-pop.get(data.item_ids[i], 0), i))
        # Score = n - position in the popularity order: distinct, so ranking is deterministic. (n_items + 1,)
        self.item_scores = torch.zeros(n + 1)
        self.item_scores[torch.tensor(order) + 1] = torch.arange(n, 0, -1, dtype=torch.float32)

    def full_sort_predict(self, history: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.item_scores.to(history.device).expand(history.shape[0], -1)


class RandomRanker:
    """Uniformly random scores, reproducible per (seed, sample row)."""

    def __init__(self, n_items: int, seed: int):
        self.n_items, self.seed = n_items, seed

    def full_sort_predict(self, history: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(rows), self.n_items + 1)
        for j, row in enumerate(rows.tolist()):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + row)
            out[j] = torch.rand(self.n_items + 1, generator=gen)
        return out.to(history.device)
