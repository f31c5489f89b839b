"""``train_baseline``: the one entry point of the baselines stage (training loop, early stopping, predictions)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from sidrec.artifacts import write_json
from sidrec.baselines.config import BaselineConfig
from sidrec.baselines.heuristics import Popularity, RandomRanker
from sidrec.baselines.ranking import write_ranked
from sidrec.baselines.sequences import eval_samples
from sidrec.data.store import CanonicalData, load_data

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_baseline(cfg: BaselineConfig) -> Path:
    """Train ``cfg.model`` on ``cfg.data`` (validation for early stopping), write test predictions; returns the path.

    Sanity baselines (popularity, random) train nothing. Neural backbones train with the loop in
    :mod:`sidrec.baselines.trainer`; the best checkpoint by validation NDCG@10 makes the predictions.
    """
    data = load_data(cfg.data)
    out = cfg.out_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.model in ("popularity", "random"):
        return _write_heuristic(cfg, data, out, device)
    from sidrec.baselines.trainer import fit_and_predict

    return fit_and_predict(cfg, data, out, device)


def _write_heuristic(cfg: BaselineConfig, data: CanonicalData, out: Path, device: torch.device) -> Path:
    model = Popularity(data) if cfg.model == "popularity" else RandomRanker(len(data.item_ids), cfg.seed)
    max_len = cfg.max_len or int(data.stats.get("max_history") or 20)
    summary = {}
    for split, path in cfg.outputs():
        samples = eval_samples(data, split, max_len)
        summary[split] = write_ranked(path, model.full_sort_predict, samples, data.item_ids, cfg.topk,
                                      cfg.eval_batch_size, cfg.exclude_history, device)
        log.info("%s %s: %s", cfg.name, split, _fmt(summary[split]))
    ckpt = cfg.checkpoint_path()
    ckpt.mkdir(parents=True, exist_ok=True)
    write_json(ckpt / "summary.json", {"config": cfg, "quick_metrics": summary})
    return out


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
