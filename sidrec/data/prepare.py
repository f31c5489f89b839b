"""Stage ``prepare``: any supported source -> the canonical dataset in ``RUN/data`` (written atomically)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from sidrec.artifacts import write_json
from sidrec.config import opt
from sidrec.data import sources
from sidrec.data.split import k_core, leave_one_out, time_split
from sidrec.data.store import save_canonical
from sidrec.data.synthetic import generate_synthetic
from sidrec.errors import InputError
from sidrec.stage import Stage, run_stage

log = logging.getLogger(__name__)

Source = Literal["synthetic", "amazon2018", "amazon2023", "minionerec", "seqfile", "lcrec"]
# Per-source defaults: processed sources are already filtered and have their own history window.
DEFAULT_K_CORE = {"synthetic": 0, "amazon2018": 5, "amazon2023": 5, "minionerec": 0, "seqfile": 0, "lcrec": 0}
DEFAULT_HISTORY = {"minionerec": 10}


@dataclass
class PrepareConfig:
    """Options of ``sidrec data prepare``."""

    source: Source = opt("synthetic", "input layout")
    out: str = opt("runs/demo/data", "output folder (RUN/data)")
    path: str | None = opt(None, "source folder (minionerec, lcrec) or sequence file (seqfile)")
    dataset: str | None = opt(None, "dataset name inside --path (e.g. Industrial_and_Scientific, Scientific)")
    reviews: str | None = opt(None, "raw reviews file (amazon2018 / amazon2023), .json/.jsonl, optionally .gz")
    meta: str | None = opt(None, "raw item metadata file (amazon2018 / amazon2023)")
    items: str | None = opt(None, "item table for seqfile: item_id<TAB>asin<TAB>title")
    split: Literal["auto", "loo", "time"] = opt("auto", "split protocol; auto = the source's own or leave-one-out")
    k_core: int | None = opt(None, "k-core filter on users and items (default: 5 for raw sources, off otherwise)")
    max_history: int | None = opt(None, "most recent items kept as history (default 20; 10 for minionerec)")
    valid_frac: float = opt(0.1, "time split: fraction of interactions (by time) in validation")
    test_frac: float = opt(0.1, "time split: fraction of interactions (by time) in test")
    seed: int = opt(0, "random seed (synthetic)")
    n_users: int = opt(1000, "synthetic: number of users")
    n_items: int = opt(300, "synthetic: number of items")
    lenient: bool = opt(False, "skip malformed lines in raw files, and keep items that one input names but the "
                               "item table given with it lacks, instead of failing (both counted in stats.json)")
    force: bool = opt(False, "redo even when --out holds a dataset made with the same options")

    def problems(self) -> list[str]:
        p = []
        need = {"minionerec": ("path", "dataset"), "lcrec": ("path", "dataset"), "seqfile": ("path",),
                "amazon2018": ("reviews",), "amazon2023": ("reviews",)}.get(self.source, ())
        p += [f"{f}: required for --source {self.source}" for f in need if not getattr(self, f)]
        if self.source == "minionerec" and self.split not in ("auto", "time"):
            p.append("split: minionerec ships its own time-based split; use auto")
        if self.max_history is not None and self.max_history < 1:
            p.append("max_history: must be >= 1")
        if not (0 < self.valid_frac < 1 and 0 < self.test_frac < 1 and self.valid_frac + self.test_frac < 1):
            p.append("valid_frac, test_frac: must be in (0, 1) with a sum below 1")
        if self.n_users < 1 or self.n_items < 10:
            p.append("n_users >= 1 and n_items >= 10 required")
        return p

    def resolved(self) -> PrepareConfig:
        """A copy with per-source defaults filled in (what is saved and hashed)."""
        out = PrepareConfig(**vars(self))
        if out.k_core is None:
            out.k_core = DEFAULT_K_CORE[out.source]
        if out.max_history is None:
            out.max_history = DEFAULT_HISTORY.get(out.source, 20)
        if out.split == "auto":
            out.split = "time" if out.source == "minionerec" else "loo"
        return out


def _load_source(cfg: PrepareConfig) -> sources.RawDataset:
    if cfg.source == "synthetic":
        return generate_synthetic(n_users=cfg.n_users, n_items=cfg.n_items, seed=cfg.seed)
    if cfg.source == "amazon2018":
        return sources.load_amazon2018(cfg.reviews, cfg.meta, cfg.lenient)
    if cfg.source == "amazon2023":
        return sources.load_amazon2023(cfg.reviews, cfg.meta, cfg.lenient)
    if cfg.source == "minionerec":
        return sources.load_minionerec(cfg.path, cfg.dataset, cfg.max_history, cfg.lenient)
    if cfg.source == "seqfile":
        return sources.load_seqfile(cfg.path, cfg.items, cfg.lenient)
    return sources.load_lcrec(cfg.path, cfg.dataset, cfg.lenient)


class PrepareStage(Stage[PrepareConfig]):
    """The source's files -> the canonical dataset (items, reviews, sequences, split, stats.json)."""

    name = "prepare"
    outputs = ("stats.json",)

    def resolve(self, cfg: PrepareConfig) -> PrepareConfig:
        return cfg.resolved()

    def run(self, cfg: PrepareConfig, out: Path) -> None:
        raw = _load_source(cfg)
        for unknown in raw.unknown_ids:
            log.warning("%s: %d references to %d items missing from %s, kept with empty metadata (--lenient)",
                        unknown["path"], unknown["references"], unknown["items"], unknown["defined_in"])
        if raw.fixed_splits is not None:
            splits, train_sequences, sequences = raw.fixed_splits, raw.train_sequences, raw.sequences
        else:
            sequences = k_core(raw.sequences, cfg.k_core)
            if not sequences:
                raise InputError(f"no users left after {cfg.k_core}-core filtering")
            if cfg.split == "time":
                splits, train_sequences = time_split(sequences, cfg.max_history, cfg.valid_frac, cfg.test_frac)
            else:
                splits, train_sequences = leave_one_out(sequences, cfg.max_history)
        # Items: processed sources keep their whole catalogue (item ids are fixed indices); raw sources keep the
        # items that survive filtering.
        keep_all = cfg.source in ("minionerec", "seqfile", "lcrec", "synthetic")
        used = {i for s in sequences for i in s.item_ids}
        item_rows = [{k: v for k, v in it.items() if k != "_where"} for iid, it in raw.items.items()
                     if keep_all or iid in used]
        if cfg.source in ("minionerec", "lcrec", "seqfile") and all(r["item_id"].isdigit() for r in item_rows):
            item_rows.sort(key=lambda r: int(r["item_id"]))
        # Reviews: drop the ones written for held-out interactions (never read the target's own future).
        held_out = {(u, t) for name in ("valid", "test")
                    for u, t in zip(splits[name].user_id, splits[name].target)}
        kept_items = {r["item_id"] for r in item_rows}
        reviews = [r for r in raw.reviews
                   if (r["user_id"], r["item_id"]) not in held_out and r["item_id"] in kept_items]
        seq_rows = [{"user_id": s.user_id, "item_ids": s.item_ids, "timestamps": s.timestamps} for s in sequences]
        train_rows = [{"user_id": u, "item_ids": v} for u, v in train_sequences.items()]
        stats = _stats(cfg, item_rows, reviews, sequences, splits, train_sequences, raw)
        save_canonical(out, item_rows, reviews, seq_rows, train_rows, {k: v.as_dict() for k, v in splits.items()})
        write_json(out / "stats.json", stats)
        if raw.ground_truth is not None:
            write_json(out / "ground_truth.json", raw.ground_truth, indent=None)


def prepare(config: PrepareConfig) -> Path:
    """Build ``config.out`` from the source; skipped when it already holds the output of the same options."""
    return run_stage(PrepareStage(), config)


def _stats(cfg, items, reviews, sequences, splits, train_sequences, raw) -> dict:
    lengths = np.array([len(s.item_ids) for s in sequences]) if sequences else np.zeros(1)
    n_inter = int(lengths.sum())
    trained_items = {i for seq in train_sequences.values() for i in seq}
    stats = {
        "source": cfg.source,
        "split_protocol": cfg.split,
        "k_core": cfg.k_core,
        "max_history": cfg.max_history,
        "n_users": len(sequences),
        "n_items": len(items),
        "n_items_in_train": len(trained_items),
        "n_interactions": n_inter,
        "n_reviews": len(reviews),
        "density": n_inter / max(1, len(sequences) * len(items)),
        "sequence_length": {"mean": float(lengths.mean()), "median": float(np.median(lengths)),
                            "max": int(lengths.max())},
        "samples": {name: len(splits[name]) for name in ("train", "valid", "test")},
        "users_in": {name: len(set(splits[name].user_id)) for name in ("train", "valid", "test")},
        "mean_history": {name: float(np.mean([len(h) for h in splits[name].history])) if len(splits[name]) else 0.0
                         for name in ("train", "valid", "test")},
        "read_reports": raw.reports,
        "notes": raw.notes,
    }
    if raw.unknown_ids:  # only with --lenient (else they are errors)
        stats["unknown_ids"] = raw.unknown_ids
    return stats
