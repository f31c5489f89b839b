"""The collaborative view of the quantized embedding: the item table of an ID-only sequential recommender.

SIDs made from text alone put items that read alike under one prefix, whether or not they are bought in the same
sequences; the generative model then has to learn the co-purchase structure inside each prefix, and the items it sees
rarely (the tail) lose. Concatenating the item embeddings of an ID-only SASRec trained on the *training split* (the
collaborative signal LC-Rec and LETTER fold into their SIDs) lets the quantizer group items that are both alike and
bought together. The baseline is trained through the baselines' own stage (resumable, fingerprinted, early stopping on
validation), so it is the same model the results tables report as SASRec-id.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from sidrec.errors import InputError

log = logging.getLogger(__name__)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def combine(semantic: np.ndarray, collaborative: np.ndarray, weight: float) -> np.ndarray:
    """``[u(semantic), weight * u(collaborative)] / sqrt(1 + weight^2)``, ``u`` = unit rows: each view's share of a
    squared distance is fixed by ``weight`` (1 = equal), whatever the views' dimensions and scales."""
    if len(semantic) != len(collaborative):
        raise ValueError(f"{len(semantic)} semantic rows but {len(collaborative)} collaborative rows")
    return (np.concatenate([_unit_rows(semantic), weight * _unit_rows(collaborative)], axis=1)
            / np.sqrt(1.0 + weight ** 2)).astype(np.float32)


def collaborative_embeddings(data_dir: str | Path, item_ids: list[str], checkpoint_dir: str | Path, options: dict,
                             seed: int, device: str) -> tuple[np.ndarray, dict]:
    """``(len(item_ids), D)`` item embeddings of an ID-only recommender trained on the training split of
    ``data_dir`` (a finished run in ``checkpoint_dir`` with the same options and data is reused), in the order of
    ``item_ids``, and a summary. Items with no training interaction get a zero row: their embedding was never
    trained, so only their semantic view places them."""
    from sidrec.baselines.config import NEURAL_MODELS, BaselineConfig
    from sidrec.baselines.sequences import train_sequences
    from sidrec.baselines.train import resolve_device
    from sidrec.baselines.trainer import trained_model
    from sidrec.config import resolve
    from sidrec.data.store import load_data

    overrides = {"model": "sasrec", **options}
    if overrides.get("fusion", "id") != "id" or overrides["model"] not in NEURAL_MODELS:
        raise InputError(f"collaborative: needs an ID-only neural model (one of {', '.join(NEURAL_MODELS)}, "
                         f"fusion id), got model {overrides['model']!r} fusion {overrides.get('fusion')!r}",
                         "quantize.collaborative")
    cfg = resolve(BaselineConfig, overrides={**overrides, "fusion": "id", "data": str(data_dir), "seed": seed,
                                             "device": device, "checkpoint_dir": str(checkpoint_dir)})
    data = load_data(cfg.data)
    index = data.item_index
    unknown = [i for i in item_ids if i not in index]
    if unknown:
        raise InputError(f"{len(unknown)} items of the semantics folder are not in the dataset, e.g. "
                         f"{unknown[:3]}: the semantics and the data come from different catalogues", data_dir)
    model, ckpt = trained_model(cfg, data, resolve_device(cfg.device))
    model.eval()
    with torch.no_grad():
        table = model.item_table().float().cpu().numpy()  # row 0 = padding, row i + 1 = item i of the data
    rows = np.asarray([index[i] + 1 for i in item_ids], dtype=np.int64)
    emb = table[rows].copy()
    seen = np.zeros(len(table), dtype=bool)
    for seq in train_sequences(data)[1]:  # model indices (row + 1)
        seen[seq] = True
    unseen = ~seen[rows]
    emb[unseen] = 0.0
    summary = {"model": cfg.model, "checkpoint": str(ckpt), "dim": int(emb.shape[1]),
               "items_without_training_interactions": int(unseen.sum())}
    log.info("collaborative view: %s item table (%d dims) from %s; %d items without a training interaction get "
             "no collaborative signal", cfg.model, emb.shape[1], ckpt, int(unseen.sum()))
    return emb, summary
