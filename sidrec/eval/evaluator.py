"""The one evaluator: HR/NDCG/MRR@K over all samples of a split, overall and for head/tail items and users.

Trusts only ``items`` and ``target`` of each prediction (never SID strings or scores). Groups:
- head items: the top ``head_item_frac`` of catalogue items by training popularity; a sample belongs to the
  group of its target item;
- head users: the top ``head_user_frac`` of users by training-sequence length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sidrec.config import opt
from sidrec.data.store import CanonicalData, load_data
from sidrec.errors import InputError
from sidrec.eval.metrics import DEFAULT_KS, per_sample_metrics, summarize, target_ranks
from sidrec.predictions import read_predictions


@dataclass
class EvalConfig:
    """Options of ``sidrec evaluate``."""

    predictions: str = opt(help="predictions JSONL (one object per sample)")
    data: str = opt(help="prepared dataset folder (RUN/data)")
    split: str = opt("test", "split to score: valid or test")
    out: str | None = opt(None, "write the metrics JSON here")
    ks: list[int] = opt(list(DEFAULT_KS), "cut-offs K, comma-separated")
    head_item_frac: float = opt(0.2, "fraction of items (by training popularity) that are 'head'")
    head_user_frac: float = opt(0.2, "fraction of users (by training-sequence length) that are 'head'")
    allow_missing: bool = opt(False, "count samples without a prediction as misses instead of failing")
    limit: int | None = opt(None, "score only the first N samples of the split, in split order (one per user under "
                                  "leave-one-out): the predictions of `sidrec decode --limit N`; the report says so")

    def problems(self) -> list[str]:
        p = []
        if self.limit is not None and self.limit < 1:
            p.append("limit: must be >= 1")
        if not self.ks or any(k < 1 for k in self.ks):
            p.append("ks: every K must be >= 1")
        for name in ("head_item_frac", "head_user_frac"):
            if not 0 < getattr(self, name) < 1:
                p.append(f"{name}: must be in (0, 1)")
        return p


def head_items(data: CanonicalData, frac: float) -> set[str]:
    """Top ``frac`` of the catalogue by training popularity (ties broken by item table order)."""
    pop = data.train_popularity
    n_head = max(1, math.ceil(frac * len(data.item_ids)))
    order = sorted(range(len(data.item_ids)), key=lambda i: -pop.get(data.item_ids[i], 0))
    return {data.item_ids[i] for i in order[:n_head]}


def head_users(data: CanonicalData, frac: float) -> set[str]:
    """Top ``frac`` of users by training-sequence length."""
    lengths = data.train_length
    users = sorted(lengths, key=lambda u: -lengths[u])
    return set(users[: max(1, math.ceil(frac * len(users)))])


def aligned_ranks(predictions_path: str | Path, data: CanonicalData, split: str = "test",
                  allow_missing: bool = False, limit: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Rank of the target for every sample of ``split``, in split order (0 = miss or no prediction).

    ``limit``: score only the first ``limit`` samples of the split (a smoke run's or a benchmark's subset); the
    file's predictions for later samples of the split are then ignored. Validates each prediction against the
    split and the item table; errors name the file and line.
    """
    samples = data.split(split)
    later: set[int] = set()
    if limit is not None and limit < len(samples):
        later = {int(s) for s in samples["sample_id"][limit:]}
        samples = samples.select(range(limit))
    row_of = {int(s): r for r, s in enumerate(samples["sample_id"])}
    targets, users = samples["target"], samples["user_id"]
    known_items = data.item_index
    ranked: list[list[str]] = [[] for _ in range(len(samples))]
    seen: dict[int, int] = {}
    for line, pred in read_predictions(predictions_path):
        row = row_of.get(pred.sample_id)
        if row is None and pred.sample_id in later:
            continue
        if row is None:
            raise InputError(f"sample_id {pred.sample_id} is not in the {split} split of {data.root}",
                             predictions_path, line)
        if pred.sample_id in seen:
            raise InputError(f"sample_id {pred.sample_id} predicted twice (first at line {seen[pred.sample_id]})",
                             predictions_path, line)
        seen[pred.sample_id] = line
        if pred.target != targets[row]:
            raise InputError(f"target {pred.target!r} of sample {pred.sample_id} differs from the {split} split's "
                             f"{targets[row]!r} (predictions made for another split or dataset?)",
                             predictions_path, line)
        if pred.user_id and pred.user_id != str(users[row]):
            raise InputError(f"user_id {pred.user_id!r} of sample {pred.sample_id} differs from the {split} split's "
                             f"{users[row]!r} (predictions made for another split or dataset?)",
                             predictions_path, line)
        unknown = [i for i in pred.items if i not in known_items]
        if unknown:
            raise InputError(f"unknown item id {unknown[0]!r} in 'items' ({len(unknown)} unknown); item ids must "
                             "come from the canonical item table", predictions_path, line)
        ranked[row] = pred.items
    missing = len(samples) - len(seen)
    if missing and not allow_missing:
        first = next(int(s) for s in samples["sample_id"] if int(s) not in seen)
        raise InputError(f"{missing} of {len(samples)} {split} samples have no prediction (first: sample_id "
                         f"{first}); pass --allow-missing to count them as misses", predictions_path)
    info = {"n_samples": len(samples), "n_predicted": len(seen), "n_missing": missing,
            "min_list_length": min((len(r) for r in ranked if r), default=0)}
    return target_ranks(ranked, targets), info


def evaluate(predictions: str | Path, data: str | Path | CanonicalData, split: str = "test",
             ks: Sequence[int] = DEFAULT_KS, head_item_frac: float = 0.2, head_user_frac: float = 0.2,
             allow_missing: bool = False, limit: int | None = None) -> dict[str, Any]:
    """Score a predictions file (on the first ``limit`` samples of the split when given). Returns
    ``{"overall": {...}, "groups": {...}, "n_samples": N, ...}``, with ``limit`` and ``split_samples`` (the split's
    size) when only the first ``limit`` samples were scored."""
    data = data if isinstance(data, CanonicalData) else load_data(data)
    ranks, info = aligned_ranks(predictions, data, split, allow_missing, limit)
    per_sample = per_sample_metrics(ranks, ks)
    samples = data.split(split)
    samples = samples.select(range(len(ranks))) if len(ranks) < len(samples) else samples
    head_i, head_u = head_items(data, head_item_frac), head_users(data, head_user_frac)
    is_head_item = np.array([t in head_i for t in samples["target"]], dtype=bool)
    is_head_user = np.array([u in head_u for u in samples["user_id"]], dtype=bool)
    groups = {}
    for name, mask in (("head_items", is_head_item), ("tail_items", ~is_head_item),
                       ("head_users", is_head_user), ("tail_users", ~is_head_user)):
        groups[name] = {"n_samples": int(mask.sum()), **summarize(per_sample, mask)}
    subset = {"limit": limit, "split_samples": len(data.split(split))} if limit is not None else {}
    return {"overall": summarize(per_sample), "groups": groups, **info, "split": split, **subset,
            "predictions": str(predictions), "data": str(data.root),
            "thresholds": {"head_item_frac": head_item_frac, "head_user_frac": head_user_frac}}
