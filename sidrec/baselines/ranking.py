"""From full-catalogue scores to ranked lists, validation metrics and prediction files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from sidrec.baselines.sequences import PAD, EvalSamples
from sidrec.eval.metrics import per_sample_metrics, summarize
from sidrec.predictions import Prediction, write_predictions

# scores for a batch of samples: (history (b, L), sample rows (b,)) -> (b, n_items + 1), column 0 = padding
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mask_scores(scores: torch.Tensor, history: torch.Tensor, exclude_history: bool) -> torch.Tensor:
    """Padding never ranks; history items drop out only when ``exclude_history``. Shapes (b, V), (b, L)."""
    scores = scores.float().clone()
    scores[:, PAD] = -torch.inf
    if exclude_history:
        scores.scatter_(1, history, -torch.inf)
        scores[:, PAD] = -torch.inf
    return scores


def iter_topk(score_fn: ScoreFn, samples: EvalSamples, k: int, batch_size: int, exclude_history: bool,
              device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (top-k indices (b, k), their scores (b, k), 1-based target rank (b,)) per batch, in sample order.

    The rank is over all items (ties counted pessimistically), so validation needs no cut-off. Samples are
    scored in batches of similar history length (less padding to trim) and yielded back in sample order.
    """
    lengths = (samples.history != PAD).sum(1)
    by_length = torch.argsort(lengths, stable=True)
    results: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for start in range(0, len(samples), batch_size):
        rows = by_length[start:start + batch_size]
        history = samples.history[rows].to(device)
        scores = mask_scores(score_fn(history, rows), history, exclude_history)
        target = samples.target_index[rows].to(device)
        target_score = scores.gather(1, target[:, None])
        rank = (scores >= target_score).sum(1)  # includes the target itself
        top_scores, top_index = scores.topk(min(k, scores.shape[1] - 1), dim=1)
        results.append((rows, top_index.cpu(), top_scores.cpu(), rank.cpu()))
    if not results:
        return
    rows = torch.cat([r[0] for r in results])
    restore = torch.argsort(rows)
    top_index, top_scores, ranks = (torch.cat([r[i] for r in results])[restore] for i in (1, 2, 3))
    for start in range(0, len(samples), batch_size):
        yield top_index[start:start + batch_size], top_scores[start:start + batch_size], ranks[start:start + batch_size]


def ranking_metrics(ranks: np.ndarray, ks=(5, 10, 20)) -> dict[str, float]:
    """HR@K and NDCG@K (the shared evaluator's definitions) from 1-based ranks over the whole catalogue."""
    metrics = summarize(per_sample_metrics(np.asarray(ranks, dtype=np.int64), ks))
    return {name: value for name, value in metrics.items() if not name.startswith("MRR")}


@torch.no_grad()
def evaluate_scores(score_fn: ScoreFn, samples: EvalSamples, batch_size: int, exclude_history: bool,
                    device: torch.device) -> dict[str, float]:
    ranks = [r for _, _, r in iter_topk(score_fn, samples, 1, batch_size, exclude_history, device)]
    return ranking_metrics(torch.cat(ranks).numpy() if ranks else np.zeros(0))


@torch.no_grad()
def write_ranked(path: str | Path, score_fn: ScoreFn, samples: EvalSamples, item_ids: list[str], k: int,
                 batch_size: int, exclude_history: bool, device: torch.device) -> dict[str, float]:
    """Rank every item for every sample, write the top ``k`` as predictions; returns quick HR/NDCG."""
    predictions, ranks = [], []
    for top_index, top_scores, rank in iter_topk(score_fn, samples, k, batch_size, exclude_history, device):
        start = len(predictions)
        for j in range(top_index.shape[0]):
            row = start + j
            keep = torch.isfinite(top_scores[j])
            items = [item_ids[i - 1] for i in top_index[j][keep].tolist()]
            predictions.append(Prediction(samples.sample_id[row], samples.user_id[row], samples.target[row], items,
                                          top_scores[j][keep].tolist()))
        ranks.append(rank)
    write_predictions(path, predictions)
    return ranking_metrics(torch.cat(ranks).numpy() if ranks else np.zeros(0))
