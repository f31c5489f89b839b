"""LLM-ESR's retrieval step: similar users by their semantic user representation (Liu et al., NeurIPS 2024 §3.3).

A user's semantic representation is the mean of the semantic (LLM-view) embeddings of the items in the training
sequence (the paper embeds the user's history text with the LLM; the items' embeddings are what RUN/semantics holds);
each user's N neighbours are the most cosine-similar other users, and the self-distillation teacher is the mean of
their representations (:class:`sidrec.baselines.model.DualViewRecommender`). Only long-tail users are distilled:
the paper splits users 80/20 by sequence length (Pareto), hence the default ``llmesr_tail_user_frac`` of 0.8.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def semantic_user_vectors(semantic: torch.Tensor, user_seqs: list[list[int]]) -> torch.Tensor:
    """Mean semantic item embedding per user, L2-normalised. (U, d)"""
    flat = torch.tensor([i for seq in user_seqs for i in seq], dtype=torch.int64)
    owner = torch.repeat_interleave(torch.arange(len(user_seqs)), torch.tensor([len(s) for s in user_seqs]))
    sums = torch.zeros(len(user_seqs), semantic.shape[1]).index_add_(0, owner, semantic[flat])
    return F.normalize(sums, dim=1)


def similar_users(semantic: torch.Tensor, user_seqs: list[list[int]], k: int, tail_frac: float,
                  chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """(neighbors (U, k) user indices, most similar first, never the user itself; distill (U,) bool: the users
    whose sequence is within the ``tail_frac`` quantile of lengths)."""
    vectors = semantic_user_vectors(semantic, user_seqs)
    n = len(user_seqs)
    k = max(1, min(k, n - 1))
    neighbors = torch.zeros(n, k, dtype=torch.int64)
    for start in range(0, n, chunk):
        sims = vectors[start:start + chunk] @ vectors.T  # (chunk, U)
        rows = torch.arange(start, min(start + chunk, n))
        sims[torch.arange(len(rows)), rows] = -torch.inf  # never oneself
        neighbors[rows] = sims.topk(k, dim=1).indices
    lengths = np.array([len(s) for s in user_seqs])
    threshold = np.quantile(lengths, tail_frac)
    distill = torch.from_numpy(lengths <= threshold) if tail_frac < 1 else torch.ones(n, dtype=torch.bool)
    return neighbors, distill
