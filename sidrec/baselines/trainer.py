"""The one training loop of the neural baselines.

Adam on ``calculate_loss`` (full-softmax CE over all items by default), validation NDCG@10 over the whole catalogue
after every ``eval_every`` epochs, early stopping with ``patience``, the best weights kept in memory and in
``CKPT/best.pt``; the best model then ranks every item for each test sample. ``CKPT`` also receives
``config.yaml``, ``log.jsonl`` (one line per validation), ``summary.json`` (times, best epoch, quick metrics) and
the done marker ``_stage.json``: training is a stage of the runner (:class:`BaselineTraining`,
:func:`sidrec.stage.run_stage`), so a finished model of the same options and inputs is reused and a changed option
or a new dataset / semantics folder retrains it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sidrec.artifacts import atomic_path, config_hash, write_json
from sidrec.baselines.config import BaselineConfig
from sidrec.baselines.model import SequentialRecommender
from sidrec.baselines.ranking import evaluate_scores, write_ranked
from sidrec.baselines.sequences import (
    EvalSamples,
    TrainRows,
    cloze_mask,
    cloze_rows,
    eval_samples,
    left_pad,
    prefix_rows,
    sequence_rows,
    train_sequences,
)
from sidrec.data.store import CanonicalData
from sidrec.stage import Marker, Stage, run_stage

log = logging.getLogger(__name__)
RUN_ONLY = ("split", "out", "valid_out", "checkpoint_dir", "device", "force", "eval_batch_size")  # not the model
LAST = "last.pt"  # resume state of an unfinished training run


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def legacy_fingerprint(cfg: BaselineConfig, data: CanonicalData) -> str:
    """The options hash ``summary.json`` recorded before training had a stage marker (to reuse models made then)."""
    view = {k: v for k, v in vars(cfg).items() if k not in RUN_ONLY}
    view["data"] = str(Path(cfg.data).resolve())
    view["data_stats"] = {k: data.stats.get(k) for k in ("n_users", "n_items", "samples", "max_history")}
    return config_hash(view)


def build_model(cfg: BaselineConfig, data: CanonicalData, max_len: int, user_seqs: list[list[int]],
                ckpt: Path, device: torch.device) -> SequentialRecommender:
    """Backbone + fusion mode -> a recommender (semantic tables read from ``cfg.semantics``)."""
    from sidrec.baselines import fusion
    from sidrec.baselines.model import DualViewRecommender, SingleViewRecommender
    from sidrec.baselines.semantic import load_item_embeddings

    n_items, dim = len(data.item_ids), cfg.hidden_size
    if cfg.fusion == "id":
        items = fusion.IdItems(n_items, dim)
    elif cfg.fusion == "asegr":
        sensory, known = load_item_embeddings(cfg.semantics, "sensory", data.item_ids)
        items = fusion.AsegrItems(n_items, dim, sensory, known, cfg.semantic_dropout)
    elif cfg.fusion == "guided":
        sensory, known = load_item_embeddings(cfg.semantics, "sensory", data.item_ids)
        items = fusion.GuidedItems(n_items, dim, cfg.guided_base_dim or dim // 2, sensory, known,
                                   cfg.semantic_dropout)
    elif cfg.fusion == "said":
        from sidrec.baselines.said import said_embeddings

        said_emb, known = said_embeddings(cfg, data, ckpt, device)
        items = fusion.SaidItems(n_items, dim, said_emb, known, cfg.semantic_dropout)
    elif cfg.fusion == "llmesr":
        from sidrec.baselines.retrieval import similar_users

        semantic, known = load_item_embeddings(cfg.semantics, "fused", data.item_ids)
        neighbors, distill = similar_users(semantic, user_seqs, cfg.llmesr_neighbors, cfg.llmesr_tail_user_frac)
        return DualViewRecommender(cfg.model, n_items, max_len, cfg, semantic, known,
                                   user_sequences=left_pad(user_seqs, max_len), neighbors=neighbors,
                                   distill_users=distill)
    else:
        raise ValueError(f"unknown fusion {cfg.fusion!r}")
    return SingleViewRecommender(cfg.model, items, n_items, max_len, cfg)


def training_rows(cfg: BaselineConfig, seqs: list[list[int]], max_len: int) -> TrainRows:
    if cfg.model == "bert4rec":
        return cloze_rows(seqs, max_len)
    return prefix_rows(seqs, max_len) if cfg.resolved_train_mode() == "prefix" else sequence_rows(seqs, max_len)


class BaselineTraining(Stage[BaselineConfig]):
    """Training one neural baseline into its checkpoint folder (``best.pt``, ``log.jsonl``, ``summary.json``),
    in place: ``last.pt``, saved after every epoch, is what a killed run resumes from. The fingerprint covers the
    options that change the model and the digests of the dataset and (for a fusion mode) the semantics folder."""

    name = "baseline"
    unhashed = RUN_ONLY
    in_place = True
    outputs = ("best.pt", "summary.json")

    def __init__(self, data: CanonicalData, device: torch.device):
        self.data, self.device = data, device
        self.model: SequentialRecommender | None = None  # the trained model, when this call trained it

    def target(self, cfg: BaselineConfig) -> Path:
        return cfg.checkpoint_path()

    def inputs(self, cfg: BaselineConfig) -> dict[str, str | Path | None]:
        return {"data": cfg.data, "semantics": cfg.semantics if cfg.fusion != "id" else None}

    def key(self, cfg: BaselineConfig, **changes) -> str:
        """The fingerprint of ``cfg`` with ``changes`` (``max_minutes=None``: the budget-free fingerprint)."""
        return self.fingerprint(dataclasses.replace(cfg, **changes))[0]

    def reusable(self, cfg: BaselineConfig, marker: Marker | None) -> bool:
        """A model trained under another time budget serves when it stopped on its own (early stopping, max
        epochs) within this budget. A ``summary.json`` from before the marker is read with its own fingerprints."""
        if not (cfg.checkpoint_path() / "best.pt").is_file():
            return False
        try:  # the training time it took (kept out of the marker, which stays the same from run to run)
            summary = json.loads((cfg.checkpoint_path() / "summary.json").read_text())
        except (OSError, ValueError):
            return False
        if marker is not None and marker.current:
            record = marker.fields.get("summary") or {}
            budget_free, wanted = record.get("budget_free"), self.key(cfg, max_minutes=None)
        else:
            record = summary
            if record.get("fingerprint") == legacy_fingerprint(cfg, self.data):
                return True
            budget_free = record.get("budget_free_fingerprint")
            wanted = legacy_fingerprint(dataclasses.replace(cfg, max_minutes=None), self.data)
        minutes = (summary.get("train_seconds", 0) + summary.get("eval_seconds", 0)) / 60
        converged = budget_free == wanted and not record.get("budget_cut", True)
        return converged and (cfg.max_minutes is None or minutes <= cfg.max_minutes)

    def build(self, cfg: BaselineConfig) -> tuple[SequentialRecommender, torch.Generator, list[list[int]], int]:
        max_len = cfg.max_len or int(self.data.stats.get("max_history") or 20)
        generator = seed_everything(cfg.seed)
        users, seqs = train_sequences(self.data)
        model = build_model(cfg, self.data, max_len, seqs, cfg.checkpoint_path(), self.device).to(self.device)
        model.trim_padding = cfg.resolved_trim()
        return model, generator, seqs, max_len

    def run(self, cfg: BaselineConfig, out: Path) -> dict:
        (out / "summary.json").unlink(missing_ok=True)  # its figures (and old fingerprints) belong to the old model
        model, generator, seqs, max_len = self.build(cfg)
        # The resume state is keyed without the time budget and the validation protocol, so an interrupted run can
        # go on under another max_minutes (the budget counts the training and evaluation time of every attempt) or
        # another exclude_history (training is the same; the best model is re-scored under the new protocol).
        resume_keys = (self.key(cfg, max_minutes=None, exclude_history=False),
                       legacy_fingerprint(dataclasses.replace(cfg, max_minutes=None, exclude_history=False),
                                          self.data))
        summary = _fit(cfg, self.data, model, training_rows(cfg, seqs, max_len), max_len, generator, out,
                       self.device, resume_keys)
        write_json(out / "summary.json", summary)
        self.model = model
        return {"budget_free": self.key(cfg, max_minutes=None), "budget_cut": summary["budget_cut"]}


def trained_model(cfg: BaselineConfig, data: CanonicalData, device: torch.device
                  ) -> tuple[SequentialRecommender, Path]:
    """``(model, checkpoint folder)``: the best model of ``cfg``, trained now or, when a finished run of the same
    options and inputs exists, loaded from it."""
    stage = BaselineTraining(data, device)
    ckpt = run_stage(stage, cfg)
    model = stage.model
    if model is None:  # reused
        model = stage.build(cfg)[0]
        model.load_state_dict(torch.load(ckpt / "best.pt", map_location=device))
    return model, ckpt


def fit_and_predict(cfg: BaselineConfig, data: CanonicalData, out: Path, device: torch.device) -> Path:
    """Train (or reuse a finished run of the same options and inputs), then write test (and validation)
    predictions."""
    model, ckpt = trained_model(cfg, data, device)
    max_len = cfg.max_len or int(data.stats.get("max_history") or 20)
    summary_path = ckpt / "summary.json"
    summary = json.loads(summary_path.read_text())
    model.eval()
    scores = _score_fn(model)
    quick = {}
    for split, path in cfg.outputs():
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        quick[split] = write_ranked(path, scores, eval_samples(data, split, max_len), data.item_ids, cfg.topk,
                                    cfg.eval_batch_size, cfg.exclude_history, device)
        log.info("%s %s (%.1fs): %s", cfg.name, split, time.perf_counter() - t0,
                 " ".join(f"{k}={v:.4f}" for k, v in quick[split].items()))
    summary["quick_metrics"] = quick
    summary["predictions"] = {split: str(path) for split, path in cfg.outputs()}
    write_json(summary_path, summary)
    if not summary.get("budget_cut"):
        (ckpt / LAST).unlink(missing_ok=True)  # converged: the resume state is no longer needed
    return out


def _score_fn(model: SequentialRecommender):
    return lambda history, rows: model.full_sort_predict(history)


def batch_order(n: int, lengths: torch.Tensor | None, batch_size: int, generator: torch.Generator,
                pool_batches: int = 50) -> list[torch.Tensor]:
    """Shuffled batches of row indices. With ``lengths``, rows are sorted by length inside random pools of
    ``pool_batches`` batches (so little padding survives trimming) and the batches are then shuffled."""
    if lengths is None:
        return list(torch.randperm(n, generator=generator).split(batch_size))
    order = torch.randperm(n, generator=generator)
    batches = []
    for pool in order.split(batch_size * pool_batches):
        pool = pool[torch.argsort(lengths[pool], stable=True)]
        batches += list(pool.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _fit(cfg: BaselineConfig, data: CanonicalData, model: SequentialRecommender, rows: TrainRows, max_len: int,
         generator: torch.Generator, ckpt: Path, device: torch.device, resume_keys: tuple[str, ...]) -> dict:
    """Train with early stopping; returns the run summary. After every epoch the full training state (weights,
    optimizer, RNGs, early-stopping counters) goes to ``CKPT/last.pt`` under ``resume_keys[0]``, so a killed run
    resumes where it stopped (from a state saved under any of ``resume_keys``)."""
    valid = eval_samples(data, "valid", max_len)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_params = sum(p.numel() for p in params)
    log.info("%s: %d training rows, %d validation samples, %d items, %s trainable parameters, device %s",
             cfg.name, len(rows), len(valid), model.n_items, f"{n_params:,}", device)
    lengths = ((rows.inputs != 0) | (rows.labels != 0)).sum(1)
    state = {"epoch": 0, "best": {"ndcg": -1.0, "epoch": 0, "metrics": {}}, "stale": 0, "train_seconds": 0.0,
             "eval_seconds": 0.0}
    best_state = copy.deepcopy(model.state_dict())
    log_path = ckpt / "log.jsonl"
    resumed = None if cfg.force else _load_last(ckpt / LAST, resume_keys, device)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        generator.set_state(resumed["generator"])
        torch.set_rng_state(resumed["torch_rng"])
        state = resumed["state"]
        if (ckpt / "best.pt").is_file():
            best_state = torch.load(ckpt / "best.pt", map_location=device)
        log.info("%s: resuming after epoch %d from %s", cfg.name, state["epoch"], ckpt / LAST)
        if state.get("exclude_history", False) != cfg.exclude_history and state["best"]["epoch"] > 0:
            _rescore_best(cfg, model, best_state, state, valid, device, log_path)
    else:
        log_path.write_text("")
    state["exclude_history"] = cfg.exclude_history
    best = state["best"]
    epoch = state["epoch"]
    started = time.perf_counter() - state["train_seconds"] - state["eval_seconds"]
    stop_reason, budget_cut = "max epochs", False
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        model.start_epoch()  # LLM-ESR: this epoch's teacher representations
        total, batches = 0.0, 0
        bar = tqdm(batch_order(len(rows), lengths if model.trim_padding else None, cfg.batch_size, generator),
                   desc=f"{cfg.name} epoch {epoch}", leave=False, disable=None, mininterval=2.0)
        for idx in bar:
            batch = {"input": rows.inputs[idx], "labels": rows.labels[idx], "user": rows.users[idx]}
            if model.cloze:
                batch["input"], batch["labels"] = cloze_mask(batch["input"], cfg.mask_prob, model.mask_index,
                                                             generator, cfg.last_only_prob)
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model.calculate_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            total += loss.item()
            batches += 1
            bar.set_postfix(loss=f"{total / batches:.4f}", refresh=False)
        state["train_seconds"] += time.perf_counter() - t0
        state["epoch"] = epoch
        out_of_time = cfg.max_minutes is not None and time.perf_counter() - started > 60 * cfg.max_minutes
        stop = False
        if not (epoch % cfg.eval_every and epoch != cfg.epochs and not out_of_time):
            t0 = time.perf_counter()
            model.eval()
            metrics = evaluate_scores(_score_fn(model), valid, cfg.eval_batch_size, cfg.exclude_history, device)
            state["eval_seconds"] += time.perf_counter() - t0
            record = {"epoch": epoch, "loss": total / max(1, batches), "valid": metrics,
                      "train_seconds": round(state["train_seconds"], 1),
                      "eval_seconds": round(state["eval_seconds"], 1)}
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            improved = metrics["NDCG@10"] > best["ndcg"]
            log.info("%s epoch %d loss %.4f valid HR@10 %.4f NDCG@10 %.4f%s (%.0fs)", cfg.name, epoch,
                     record["loss"], metrics["HR@10"], metrics["NDCG@10"], " *" if improved else "",
                     time.perf_counter() - started)
            if improved:
                best.update(ndcg=metrics["NDCG@10"], epoch=epoch, metrics=metrics)
                best_state = copy.deepcopy(model.state_dict())
                with atomic_path(ckpt / "best.pt") as tmp:
                    torch.save(best_state, tmp)
                state["stale"] = 0
            else:
                state["stale"] += 1
                if state["stale"] >= cfg.patience:
                    stop_reason, stop = f"no validation improvement for {cfg.patience} evaluations", True
            if out_of_time and not stop:
                stop_reason, stop, budget_cut = f"time budget of {cfg.max_minutes} minutes", True, True
        if stop and not budget_cut:
            break
        # A run cut by its time budget keeps its resume state: rerun it under a larger budget (or none) to go on.
        with atomic_path(ckpt / LAST) as tmp:
            torch.save({"fingerprint": resume_keys[0], "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "state": state}, tmp)
        if stop:
            break
    model.load_state_dict(best_state)
    log.info("%s: stopped after epoch %d (%s); best epoch %d, valid NDCG@10 %.4f", cfg.name, epoch, stop_reason,
             best["epoch"], best["ndcg"])
    train_seconds = state["train_seconds"]
    return {"config": cfg, "epochs_run": epoch, "best_epoch": best["epoch"], "best_valid": best["metrics"],
            "stop_reason": stop_reason, "budget_cut": budget_cut, "train_seconds": round(train_seconds, 1),
            "eval_seconds": round(state["eval_seconds"], 1),
            "seconds_per_epoch": round(train_seconds / max(1, epoch), 2),
            "trainable_parameters": n_params, "training_rows": len(rows), "resumed": resumed is not None,
            "device": str(device), "torch_threads": torch.get_num_threads()}


def _rescore_best(cfg: BaselineConfig, model: SequentialRecommender, best_state: dict, state: dict,
                  valid: EvalSamples, device: torch.device, log_path: Path) -> None:
    """The resumed run was validated under the other ``exclude_history`` protocol: score its best model under this
    one, so early stopping compares like with like (the model itself is put back afterwards)."""
    current = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    metrics = evaluate_scores(_score_fn(model), valid, cfg.eval_batch_size, cfg.exclude_history, device)
    model.load_state_dict(current)
    best = state["best"]
    log.warning("%s: validation protocol changed (exclude_history %s); best epoch %d re-scored: NDCG@10 %.4f -> %.4f",
                cfg.name, cfg.exclude_history, best["epoch"], best["ndcg"], metrics["NDCG@10"])
    best.update(ndcg=metrics["NDCG@10"], metrics=metrics)
    with open(log_path, "a") as fh:
        fh.write(json.dumps({"epoch": best["epoch"], "rescored": True, "exclude_history": cfg.exclude_history,
                             "valid": metrics}) + "\n")


def _load_last(path: Path, fingerprints: tuple[str, ...], device: torch.device) -> dict | None:
    """The resume state in ``path`` when it belongs to a run of the same options, else None."""
    if not path.is_file():
        return None
    try:
        last = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # a truncated file from a killed save: start over
        log.warning("ignoring unreadable resume state %s (%s)", path, e)
        return None
    return last if last.get("fingerprint") in fingerprints else None
