"""Reading the semantics stage's item embeddings (``RUN/semantics``) aligned to the model's item indices.

Contract (DESIGN): ``text_emb.npy``, ``sensory_emb.npy`` and ``item_emb.npy`` (fused) are float arrays with one
row per item; ``item_index.json`` maps row -> item_id (a list, or a ``{"row": item_id}`` mapping).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from sidrec.errors import InputError

VIEW_FILES = {"text": "text_emb.npy", "sensory": "sensory_emb.npy", "fused": "item_emb.npy"}


def read_item_index(folder: Path) -> list[str]:
    path = folder / "item_index.json"
    if not path.is_file():
        raise InputError("item_index.json not found (run `sidrec semantics` first)", path)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", path, e.lineno) from None
    if isinstance(raw, dict):
        if "item_ids" in raw and isinstance(raw["item_ids"], list):
            return [str(i) for i in raw["item_ids"]]
        try:
            return [str(raw[k]) for k in sorted(raw, key=int)]
        except ValueError:
            raise InputError("expected a list of item ids or a {row: item_id} mapping", path) from None
    if not isinstance(raw, list):
        raise InputError("expected a list of item ids or a {row: item_id} mapping", path)
    return [str(i) for i in raw]


def load_item_embeddings(folder: str | Path, view: str, item_ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``<view>`` embeddings for the model's items, padding row 0 first.

    Returns (table (n_items + 1, dim) float32, known (n_items + 1,) bool). Items the semantics stage did not cover
    get a zero row and ``known = False``; an array whose row count disagrees with item_index.json is an error.
    """
    folder = Path(folder)
    if view not in VIEW_FILES:
        raise ValueError(f"unknown semantic view {view!r}; expected one of {list(VIEW_FILES)}")
    path = folder / VIEW_FILES[view]
    if not path.is_file():
        raise InputError(f"{VIEW_FILES[view]} not found (the {view} view of the semantics stage)", path)
    array = np.load(path, mmap_mode="r")
    if array.ndim != 2:
        raise InputError(f"expected a 2-D array (items, dim), got shape {array.shape}", path)
    index = read_item_index(folder)
    if len(index) != array.shape[0]:
        raise InputError(f"{array.shape[0]} rows but item_index.json lists {len(index)} items", path)
    row_of = {item: r for r, item in enumerate(index)}
    rows = np.array([row_of.get(i, -1) for i in item_ids])
    known = rows >= 0
    if not known.any():
        raise InputError("no item of the dataset appears in item_index.json (semantics of another dataset?)", path)
    table = np.zeros((len(item_ids) + 1, array.shape[1]), dtype=np.float32)
    table[1:][known] = np.asarray(array[rows[known]], dtype=np.float32)
    if not np.isfinite(table).all():
        raise InputError("embeddings contain NaN or infinite values", path)
    return torch.from_numpy(table), torch.from_numpy(np.concatenate([[False], known]))


def pca(table: torch.Tensor, dim: int) -> torch.Tensor:
    """Project rows onto their top ``dim`` principal components, scaled to unit average row norm. (n, dim)"""
    centred = table - table.mean(0, keepdim=True)
    q = min(dim, *centred.shape)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    out = centred @ v[:q].T
    if q < dim:
        out = torch.cat([out, torch.zeros(out.shape[0], dim - q)], 1)
    return out / out.norm(dim=1).mean().clamp_min(1e-8)
