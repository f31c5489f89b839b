"""The canonical dataset on disk (``RUN/data``) and its loader.

Layout (all ``datasets`` Arrow folders written with ``save_to_disk``)::

    items/            item_id, title, description, categories, brand, price
    reviews/          user_id, item_id, rating, text, timestamp
    sequences/        user_id, item_ids, timestamps (chronological, after k-core)
    train_sequences/  user_id, item_ids (what a model may train on)
    splits/           DatasetDict train / valid / test: sample_id, user_id, history, target
    stats.json, config.yaml, ground_truth.json (synthetic only)
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets

from sidrec.errors import InputError

ITEM_FEATURES = datasets.Features({
    "item_id": datasets.Value("string"), "title": datasets.Value("string"),
    "description": datasets.Value("string"), "categories": datasets.List(datasets.Value("string")),
    "brand": datasets.Value("string"), "price": datasets.Value("float64"),
})
REVIEW_FEATURES = datasets.Features({
    "user_id": datasets.Value("string"), "item_id": datasets.Value("string"), "rating": datasets.Value("float32"),
    "text": datasets.Value("string"), "timestamp": datasets.Value("int64"),
})
SEQUENCE_FEATURES = datasets.Features({
    "user_id": datasets.Value("string"), "item_ids": datasets.List(datasets.Value("string")),
    "timestamps": datasets.List(datasets.Value("int64")),
})
TRAIN_SEQUENCE_FEATURES = datasets.Features({
    "user_id": datasets.Value("string"), "item_ids": datasets.List(datasets.Value("string")),
})
SAMPLE_FEATURES = datasets.Features({
    "sample_id": datasets.Value("int64"), "user_id": datasets.Value("string"),
    "history": datasets.List(datasets.Value("string")), "target": datasets.Value("string"),
})
SPLITS = ("train", "valid", "test")


@dataclass
class CanonicalData:
    """A prepared dataset: item table, reviews, sequences and the train/valid/test samples."""

    root: Path
    items: datasets.Dataset
    reviews: datasets.Dataset
    sequences: datasets.Dataset
    train_sequences: datasets.Dataset
    splits: datasets.DatasetDict
    stats: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def item_ids(self) -> list[str]:
        """Item ids in table order (row i of every item-level artifact is item_ids[i])."""
        return list(self.items["item_id"])

    @cached_property
    def item_index(self) -> dict[str, int]:
        return {item: i for i, item in enumerate(self.item_ids)}

    def split(self, name: str) -> datasets.Dataset:
        if name not in self.splits:
            raise InputError(f"unknown split {name!r}; this dataset has {list(self.splits)}", self.root)
        return self.splits[name]

    @cached_property
    def train_popularity(self) -> Counter:
        """Interaction counts per item over the training sequences (what head/tail and popularity use)."""
        return Counter(i for seq in self.train_sequences["item_ids"] for i in seq)

    @cached_property
    def train_length(self) -> dict[str, int]:
        """Training-sequence length per user."""
        return dict(zip(self.train_sequences["user_id"], (len(s) for s in self.train_sequences["item_ids"])))

    def ground_truth(self) -> dict[str, Any] | None:
        path = self.root / "ground_truth.json"
        return json.loads(path.read_text()) if path.is_file() else None


def save_canonical(out: Path, items: list[dict], reviews: list[dict], sequences: list[dict],
                   train_sequences: list[dict], splits: dict[str, dict[str, list]]) -> None:
    """Write the Arrow folders into ``out`` (a temporary directory the caller renames into place)."""
    datasets.disable_progress_bars()
    for name, rows, features in (("items", items, ITEM_FEATURES), ("reviews", reviews, REVIEW_FEATURES),
                                 ("sequences", sequences, SEQUENCE_FEATURES),
                                 ("train_sequences", train_sequences, TRAIN_SEQUENCE_FEATURES)):
        columns = {key: [row[key] for row in rows] for key in features}  # works for zero rows too
        datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(out / name), num_shards=1)
    datasets.DatasetDict({name: datasets.Dataset.from_dict(splits[name], features=SAMPLE_FEATURES)
                          for name in SPLITS}).save_to_disk(str(out / "splits"), num_shards={s: 1 for s in SPLITS})


def load_data(root: str | Path) -> CanonicalData:
    """Load a prepared ``RUN/data`` folder; raises :class:`InputError` naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("prepared data folder not found (run `sidrec data prepare` first)", root)
    missing = [p for p in ("items", "reviews", "sequences", "train_sequences", "splits", "stats.json")
               if not (root / p).exists()]
    if missing:
        raise InputError(f"not a prepared sidrec dataset: missing {', '.join(missing)}", root)
    datasets.disable_progress_bars()
    parts: dict[str, Any] = {}
    for part in ("items", "reviews", "sequences", "train_sequences", "splits", "stats.json"):
        try:
            parts[part] = (json.loads((root / part).read_text()) if part == "stats.json"
                           else datasets.load_from_disk(str(root / part)))
        except (OSError, ValueError) as e:  # a deleted split, a truncated arrow file, broken JSON
            raise InputError(f"damaged ({type(e).__name__}: {str(e)[:160]}); prepare the data again with --force",
                             root / part) from None
    if not isinstance(parts["stats.json"], dict):
        raise InputError("damaged: expected a JSON object; prepare the data again with --force", root / "stats.json")
    return CanonicalData(root=root, items=parts["items"], reviews=parts["reviews"], sequences=parts["sequences"],
                         train_sequences=parts["train_sequences"], splits=parts["splits"], stats=parts["stats.json"])
