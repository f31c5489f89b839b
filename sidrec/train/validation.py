"""Validation by ranking during training: HR@K / NDCG@K from constrained beam search on a sample of prompts.

:class:`RankingCallback` runs :func:`sidrec.decode.recommend` (the same decoder the pipeline uses) whenever the
trainer evaluates, logs ``eval_hr@10`` / ``eval_ndcg@10`` through the trainer (so they reach ``report_to`` and
``log_history``), and keeps every result in :attr:`RankingCallback.history`. Under several processes each rank
decodes an equal share of the sample and the hit counts are summed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from transformers import TrainerCallback

from sidrec.eval.metrics import per_sample_metrics, target_ranks
from sidrec.sid import SidTable

log = logging.getLogger(__name__)


def ranking_per_sample(model, tokenizer, prompts: Sequence[str], targets: Sequence[str], sid_table: SidTable,
                       beams: int = 20, ks: Sequence[int] = (10,), batch_size: int = 16, backend: str = "torch"
                       ) -> dict[str, np.ndarray]:
    """Per-sample ``{"hr@K": (n,), "ndcg@K": (n,)}`` of ``model`` on ``prompts`` whose next items are ``targets``."""
    import torch

    from sidrec.decode import recommend

    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        with torch.no_grad():
            ranked = recommend(model, tokenizer, list(prompts), sid_table, beams=beams, topk=max(ks),
                               backend=backend, batch_size=batch_size)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    per = per_sample_metrics(target_ranks([[item for item, _ in r] for r in ranked], list(targets)), ks)
    return {f"{m.lower()}@{k}": per[f"{m}@{k}"] for k in ks for m in ("HR", "NDCG")}


def ranking_metrics(model, tokenizer, prompts: Sequence[str], targets: Sequence[str], sid_table: SidTable,
                    beams: int = 20, ks: Sequence[int] = (10,), batch_size: int = 16, backend: str = "torch"
                    ) -> dict[str, float]:
    """``{"hr@K": mean, "ndcg@K": mean}`` of :func:`ranking_per_sample`."""
    per = ranking_per_sample(model, tokenizer, prompts, targets, sid_table, beams, ks, batch_size, backend)
    return {k: float(v.mean()) if v.size else 0.0 for k, v in per.items()}


class RankingCallback(TrainerCallback):
    """Report validation HR@K / NDCG@K by constrained decoding each time the trainer evaluates.

    Args:
        prompts, targets: the validation sample (formatted prompts and target item ids).
        sid_table: the catalogue's SIDs; tokenizer: the model's tokenizer (holds the SID tokens).
        beams, ks, batch_size, backend: passed to :func:`sidrec.decode.recommend`.
        at_train_end: also evaluate once after the last step.

    Set :attr:`trainer` after building the trainer (``callback.trainer = trainer``) so metrics are logged
    through it; without it they are only kept in :attr:`history` and printed to the log.
    """

    def __init__(self, prompts: Sequence[str], targets: Sequence[str], sid_table: SidTable, tokenizer,
                 beams: int = 20, ks: Sequence[int] = (10,), batch_size: int = 16, backend: str = "torch",
                 at_train_end: bool = True):
        self.prompts, self.targets = list(prompts), list(targets)
        self.sid_table, self.tokenizer = sid_table, tokenizer
        self.beams, self.ks, self.batch_size, self.backend = beams, tuple(ks), batch_size, backend
        self.at_train_end = at_train_end
        self.trainer = None
        self.history: list[dict[str, float]] = []
        self._last_step = -1

    def evaluate(self, model, step: int, epoch: float | None) -> dict[str, float]:
        import torch
        import torch.distributed as dist

        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        rank = dist.get_rank() if world > 1 else 0
        n = len(self.prompts)
        # Equal shares (the last one padded with repeats that are not counted) keep ZeRO-3 ranks in lock-step.
        share = -(-n // world)
        rows = [rank * share + j for j in range(share)]
        counted = np.array([r < n for r in rows])
        index = [min(r, n - 1) for r in rows]
        start = time.perf_counter()
        per = ranking_per_sample(model, self.tokenizer, [self.prompts[i] for i in index],
                                 [self.targets[i] for i in index], self.sid_table, self.beams, self.ks,
                                 self.batch_size, self.backend)
        names = sorted(per)
        sums = torch.tensor([float(per[k][counted].sum()) for k in names], dtype=torch.float64)
        if world > 1:
            sums = sums.to(next(model.parameters()).device)
            dist.all_reduce(sums)
        ranks_metrics = {k: float(v) / n for k, v in zip(names, sums.tolist())}
        result = {f"eval_{k}": round(v, 6) for k, v in ranks_metrics.items()}
        result["eval_ranking_seconds"] = round(time.perf_counter() - start, 2)
        self.history.append({"step": step, "epoch": epoch, **result})
        self._last_step = step
        log.info("validation ranking at step %d (%d samples, beam %d): %s", step, n, self.beams,
                 ", ".join(f"{k[5:]} {v:.4f}" for k, v in result.items() if "@" in k))
        return result

    def _report(self, model, state) -> dict[str, float] | None:
        if model is None or not self.prompts:
            return None
        if state.global_step == self._last_step:
            # A second evaluation at the same step (a run stopped mid-epoch evaluates again at the epoch's end):
            # the model has not changed, so the trainer gets the same metrics again, not a missing key.
            return dict(self.history[-1]) if self.history else None
        result = self.evaluate(model, state.global_step, state.epoch)
        if self.trainer is not None:
            self.trainer.log(dict(result))
        return result

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        result = self._report(model, state)
        if result is not None and metrics is not None:
            result = {k: v for k, v in result.items() if k.startswith("eval_")}
            # The trainer's metrics dict is the one it picks the best checkpoint from (metric_for_best_model:
            # eval_ndcg@10) and that EarlyStoppingCallback reads after this callback.
            metrics.update(result)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.at_train_end:
            self._report(model, state)
