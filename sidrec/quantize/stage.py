"""Stage ``quantize``: RUN/semantics/item_emb.npy -> RUN/sids (sids.json, rqvae.pt, stats.json).

``run_quantize`` trains the quantizer (RQ-VAE or residual k-means), assigns every item its codes, resolves
collisions so every SID is unique, and writes the statistics of the assignment before and after resolution.
``assign_sids`` gives new items SIDs from the trained quantizer without retraining (cold start).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sidrec.artifacts import load_npy, read_json, to_plain, write_json
from sidrec.config import opt
from sidrec.errors import InputError
from sidrec.quantize.analysis import sid_stats
from sidrec.quantize.collisions import extra_level, fill_extra_level, group_sizes, item_level, reassign
from sidrec.quantize.rqvae import RQVAE, ResidualKMeans, residual_quantize
from sidrec.stage import Stage, run_stage

log = logging.getLogger(__name__)

MODEL_FILE = "rqvae.pt"


@dataclass
class QuantizeConfig:
    """Options of ``sidrec quantize``."""

    semantics: str = opt("runs/demo/semantics", "semantics folder with item_emb.npy and item_index.json")
    out: str = opt("runs/demo/sids", "output folder (RUN/sids)")
    data: str | None = opt(None, "prepared dataset (RUN/data): item texts for `sids inspect`; the training split for "
                                 "--collaborative-weight")
    method: Literal["rqvae", "rq-kmeans"] = opt("rqvae", "quantizer: RQ-VAE or faiss residual k-means")
    embedding: Literal["item", "text", "sensory", "lexical"] = opt(
        "item", "which semantics embedding to quantize (item = fused; lexical = the TF-IDF view a semantics "
                "folder made with lexical_dim holds)")
    collaborative_weight: float = opt(
        0.0, "weight of the collaborative view: the item table of an ID-only SASRec trained on --data's training "
             "split, concatenated to the chosen embedding (both unit rows; 1 = equal share of a distance; 0 = off)")
    collaborative: dict = opt({}, "options of that recommender (`sidrec baseline` options, e.g. {hidden_size: 64})")
    collaborative_dir: str | None = opt(None, "where it trains and resumes (default: <out>_collaborative)")
    levels: int = opt(3, "number of code levels")
    codebook_size: int = opt(256, "codes per level (use ~16-32 for catalogues of a few hundred items)")
    codebook_sizes: list[int] = opt([], "per-level codebook sizes (overrides --codebook-size), e.g. 256,256,256")
    latent_dim: int = opt(32, "RQ-VAE latent dimensions")
    hidden_dims: list[int] = opt([256, 128], "RQ-VAE encoder hidden layers (decoder mirrors them)")
    dropout: float = opt(0.0, "RQ-VAE dropout")
    epochs: int = opt(500, "RQ-VAE training epochs")
    batch_size: int = opt(1024, "RQ-VAE batch size")
    lr: float = opt(1e-3, "RQ-VAE learning rate (AdamW)")
    weight_decay: float = opt(0.0, "RQ-VAE weight decay")
    beta: float = opt(0.25, "commitment loss weight")
    kmeans_init: bool = opt(True, "initialise codebooks with faiss k-means")
    kmeans_iters: int = opt(20, "k-means iterations")
    reseed_every: int = opt(20, "re-seed dead codes every N epochs (0 = never)")
    reseed_until: float = opt(0.8, "stop re-seeding after this fraction of the epochs")
    sinkhorn_last_level: bool = opt(False, "balanced (Sinkhorn-Knopp) assignment at the last level")
    sinkhorn_epsilon: float = opt(0.05, "Sinkhorn temperature (on standardised distances)")
    collision: Literal["reassign", "extra_level", "item_level"] = opt(
        "reassign", "how to make SIDs unique: move to the nearest free code (reassign), add a level that tells "
                    "colliding items apart (extra_level), or add a level with one code per item (item_level)")
    seed: int = opt(0, "random seed")
    device: str = opt("auto", "auto, cpu, cuda")
    progress: bool = opt(True, "show a progress bar")
    force: bool = opt(False, "redo even when --out holds SIDs made with the same options and inputs")

    @property
    def sizes(self) -> list[int]:
        return list(self.codebook_sizes) if self.codebook_sizes else [self.codebook_size] * self.levels

    def problems(self) -> list[str]:
        p = []
        if self.levels < 1 or self.levels > 8:
            p.append("levels: must be 1..8")
        if self.codebook_sizes and len(self.codebook_sizes) != self.levels:
            p.append(f"codebook_sizes: {len(self.codebook_sizes)} sizes for {self.levels} levels")
        if any(k < 2 for k in self.sizes):
            p.append("codebook sizes must be >= 2")
        if self.collaborative_weight < 0:
            p.append("collaborative_weight: must be >= 0")
        if self.collaborative_weight > 0 and not self.data:
            p.append("collaborative_weight: needs data (the prepared dataset whose training split trains the view)")
        for name in ("latent_dim", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                p.append(f"{name}: must be >= 1")
        return p


EMBEDDING_FILES = {"item": "item_emb.npy", "text": "text_emb.npy", "sensory": "sensory_emb.npy",
                   "lexical": "lexical_emb.npy"}


def load_embeddings(semantics_dir: str | Path, which: str = "item") -> tuple[list[str], np.ndarray]:
    """(item ids, embeddings) of a semantics folder; raises InputError naming what is missing or mismatched."""
    folder = Path(semantics_dir)
    path, index_path = folder / EMBEDDING_FILES[which], folder / "item_index.json"
    for p in (path, index_path):
        if not p.is_file():
            raise InputError("missing: set the semantics option lexical_dim (e.g. 128) and rerun `sidrec semantics "
                             "all`" if which == "lexical" else "missing: run `sidrec semantics all` first", p)
    from sidrec.baselines.semantic import read_item_index

    ids = read_item_index(folder)
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"item {dup!r} is listed more than once ({len(ids) - len(set(ids))} repeats)", index_path)
    array = load_npy(path)  # a file that is not .npy, or holds objects, is named
    try:
        emb = array.astype(np.float32)
    except ValueError as e:
        raise InputError(f"not a numeric .npy array ({e})", path) from None
    if emb.ndim != 2 or len(emb) != len(ids):
        raise InputError(f"shape {emb.shape} does not match {len(ids)} items of item_index.json", path)
    if not np.isfinite(emb).all():
        raise InputError("embeddings contain NaN or infinite values", path)
    return ids, emb


def train_rqvae(x: torch.Tensor, cfg: QuantizeConfig, device: str) -> tuple[RQVAE, dict]:
    """Train an RQ-VAE on ``x (n, dim)``; returns it (on CPU, eval mode) and its training history."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = RQVAE(x.shape[1], cfg.hidden_dims, cfg.latent_dim, cfg.sizes, cfg.dropout)
    if cfg.kmeans_init:
        model.init_codebooks(x, cfg.kmeans_iters, cfg.seed)
    model.to(device)
    xd = x.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: dict[str, list] = {"loss": [], "recon": [], "reseeded": []}
    n = len(x)
    bar = tqdm(range(cfg.epochs), desc="rqvae", disable=not cfg.progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(n, generator=gen).to(device)
        tot, rec = 0.0, 0.0
        for start in range(0, n, cfg.batch_size):
            batch = xd[order[start:start + cfg.batch_size]]
            out = model(batch, cfg.beta, cfg.sinkhorn_last_level, cfg.sinkhorn_epsilon)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            tot += float(out["loss"].detach()) * len(batch)
            rec += float(out["recon"].detach()) * len(batch)
        history["loss"].append(tot / n)
        history["recon"].append(rec / n)
        if cfg.reseed_every and (epoch + 1) % cfg.reseed_every == 0 and epoch < cfg.reseed_until * cfg.epochs:
            model.eval()
            history["reseeded"].append(model.cpu().reseed_dead_codes(x, gen))
            model.to(device)
        bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", recon=f"{history['recon'][-1]:.4f}")
    return model.cpu().eval(), history


class QuantizeStage(Stage[QuantizeConfig]):
    """Item embeddings -> unique SIDs (sids.json), the trained quantizer and the assignment's statistics.

    The semantics folder is its input, and the SID table's bytes join its digest: new SIDs redo what was aligned
    to the old ones, a rerun that wrote the same SIDs does not.
    """

    name = "quantize"
    unhashed = ("out", "force", "progress", "data", "collaborative_dir")  # data's marker digest is an input instead
    outputs = ("sids.json", MODEL_FILE, "stats.json")
    digest_outputs = ("sids.json",)

    def inputs(self, cfg: QuantizeConfig) -> dict[str, str | Path | None]:
        paths: dict[str, str | Path | None] = {"semantics": cfg.semantics}
        if cfg.collaborative_weight > 0:
            paths["data"] = cfg.data
        return paths

    def options(self, cfg: QuantizeConfig) -> dict:
        view = super().options(cfg)
        if cfg.collaborative_weight == 0:  # off: the fingerprint SIDs made before the option existed carry
            view.pop("collaborative_weight")
            view.pop("collaborative")
        return view

    def legacy_view(self, cfg: QuantizeConfig) -> dict:
        """Before format 2: the options with the semantics path and the embeddings' content hash."""
        view = self.options(cfg)
        emb = Path(cfg.semantics) / EMBEDDING_FILES[cfg.embedding]
        view["input"] = hashlib.sha256(emb.read_bytes()).hexdigest()[:16] if emb.is_file() else None
        return view

    def run(self, cfg: QuantizeConfig, out: Path) -> None:
        from sidrec.semantics.text import resolve_device
        from sidrec.torch_threads import one_thread

        ids, emb = load_embeddings(cfg.semantics, cfg.embedding)
        timings, collab = {}, None
        device = resolve_device(cfg.device)
        if cfg.collaborative_weight > 0:
            from sidrec.quantize.collaborative import collaborative_embeddings, combine

            t0 = time.perf_counter()
            where = cfg.collaborative_dir or f"{Path(cfg.out)}_collaborative"
            cf, collab = collaborative_embeddings(cfg.data, ids, where, cfg.collaborative, cfg.seed, cfg.device)
            collab.update(weight=cfg.collaborative_weight, semantic_dim=int(emb.shape[1]))
            emb = combine(emb, cf, cfg.collaborative_weight)
            np.save(out / "collaborative_emb.npy", cf)
            timings["collaborative_s"] = round(time.perf_counter() - t0, 2)
        x = torch.from_numpy(emb)
        t0 = time.perf_counter()
        if cfg.method == "rqvae":
            with one_thread(device == "cpu"):
                model, history = train_rqvae(x, cfg, device)
        else:
            model = ResidualKMeans(x.shape[1], cfg.sizes)
            model.fit(x, cfg.kmeans_iters, cfg.seed)
            history = {}
        timings["train_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        with torch.no_grad():
            z = model.encode(x)
            codes_t, _, _ = residual_quantize(z, model.codebooks, cfg.sinkhorn_last_level, cfg.sinkhorn_epsilon)
            codes = codes_t.numpy()
            if cfg.method == "rqvae":
                z_q = sum(book[codes_t[:, lv]] for lv, book in enumerate(model.codebooks))
                recon = float(((model.decoder(z_q) - x) ** 2).sum(-1).mean())
            else:
                x_q = sum(book[codes_t[:, lv]] for lv, book in enumerate(model.codebooks))
                recon = float(((x_q - x) ** 2).sum(-1).mean())
            text_path = Path(cfg.semantics) / "text_emb.npy"
            text_emb = np.load(text_path) if text_path.is_file() else None
            before = sid_stats(codes, cfg.sizes, text_emb)
            if cfg.collision == "extra_level":
                final, report = extra_level(z, model.codebooks, codes)
            elif cfg.collision == "item_level":
                final, report = item_level(codes)
            else:
                final, report = reassign(z, model.codebooks, codes)
            sizes = [*cfg.sizes, report["extra_level_size"]] if cfg.collision != "reassign" else cfg.sizes
            after = sid_stats(final, sizes, text_emb)
        timings["assign_s"] = round(time.perf_counter() - t0, 2)
        if after["unique_fraction"] != 1.0:
            raise AssertionError("collision resolution left duplicate SIDs")  # a bug, never a user error
        stats = {"method": cfg.method, "n_items": len(ids), "codebook_sizes": sizes, "reconstruction_mse": recon,
                 "collision_rate_before": before["collision_rate"],
                 "largest_collision_group_before": before["largest_collision_group"],
                 "collision_resolution": report, "before_resolution": before, "final": after,
                 "training": {"final_loss": history["loss"][-1] if history.get("loss") else None,
                              "first_loss": history["loss"][0] if history.get("loss") else None,
                              "epochs": len(history.get("loss", [])),
                              "reseeded_codes": int(np.sum(history.get("reseeded", [])))},
                 "collaborative": collab, "timings": timings}
        write_json(out / "sids.json", {i: [int(c) for c in row] for i, row in zip(ids, final)}, indent=None)
        torch.save({"kind": model.kind, "state_dict": model.state_dict(), "in_dim": int(x.shape[1]),
                    "codebook_sizes": cfg.sizes, "sid_codebook_sizes": sizes, "latent_dim": cfg.latent_dim,
                    "hidden_dims": cfg.hidden_dims, "dropout": cfg.dropout, "collision": cfg.collision,
                    "collaborative": collab, "config": to_plain(cfg)}, out / MODEL_FILE)
        write_json(out / "stats.json", stats)
        if history.get("loss"):
            write_json(out / "history.json", history, indent=None)
        log.info("quantize: %d items, %d levels %s, collisions before resolution %.2f%% (%s), recon MSE %.4f",
                 len(ids), len(sizes), sizes, 100 * before["collision_rate"], cfg.collision, recon)


def run_quantize(cfg: QuantizeConfig) -> Path:
    """Quantize the semantics embeddings into unique SIDs in ``cfg.out``; skipped when it holds the SIDs of the
    same options and embeddings (``cfg.force`` redoes them)."""
    return run_stage(QuantizeStage(), cfg)


def load_quantizer(sids_dir: str | Path) -> tuple[RQVAE | ResidualKMeans, dict]:
    """The trained quantizer of a SIDs folder and its saved settings."""
    path = Path(sids_dir) / MODEL_FILE
    if not path.is_file():
        raise InputError("quantizer not found: run `sidrec quantize` first", path)
    blob = torch.load(path, weights_only=False)
    if blob["kind"] == "rqvae":
        model = RQVAE(blob["in_dim"], blob["hidden_dims"], blob["latent_dim"], blob["codebook_sizes"],
                      blob["dropout"])
    else:
        model = ResidualKMeans(blob["in_dim"], blob["codebook_sizes"])
    model.load_state_dict(blob["state_dict"])
    return model.eval(), blob


def assign_sids(sids_dir: str | Path, new_item_embeddings: np.ndarray) -> list[list[int]]:
    """SIDs for new items from the trained quantizer, unique against ``sids.json`` and among themselves.

    No retraining: the new embeddings (made like the catalogue's, e.g. by
    :func:`sidrec.semantics.embed_new_items`) are encoded and quantized greedily (nearest code per level; the
    Sinkhorn balancing of ``--sinkhorn-last-level`` needs the whole catalogue and is not applied). SIDs made with a
    collaborative view take the semantic embedding alone: a new item has no interactions, so its collaborative part
    is left empty (zero). A collision is resolved with the folder's strategy -- ``reassign``: the nearest free SID;
    ``extra_level``: the smallest free disambiguation code, moving to the nearest SID with a free one when all are
    taken -- so the codebook sizes, and with them the SID token vocabulary, never change. Returns one code list per
    new item, in order; the caller adds them to ``sids.json`` (:func:`add_items_to_sids` does both).
    """
    model, blob = load_quantizer(sids_dir)
    if blob["collision"] == "item_level":
        raise InputError("these SIDs end in one token per item (collision: item_level): a new item needs a new "
                         "token, so it cannot be given a SID without re-quantizing and retraining the model",
                         Path(sids_dir) / MODEL_FILE)
    sids_path = Path(sids_dir) / "sids.json"
    existing = [tuple(int(c) for c in sid) for sid in read_json(sids_path).values()] \
        if sids_path.is_file() else []
    x = np.asarray(new_item_embeddings, dtype=np.float32)
    collab = blob.get("collaborative")
    if collab and x.ndim == 2 and x.shape[1] == collab["semantic_dim"]:
        from sidrec.quantize.collaborative import combine

        # A new item has no interactions yet: its collaborative view is empty and its semantic view places it.
        x = combine(x, np.zeros((len(x), collab["dim"]), np.float32), collab["weight"])
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[1] != blob["in_dim"]:
        raise InputError(f"new item embeddings have shape {tuple(x.shape)}, the quantizer expects "
                         f"(n, {blob['in_dim']})", sids_dir)
    if not torch.isfinite(x).all():
        raise InputError("new item embeddings contain NaN or infinite values", sids_dir)
    if len(x) == 0:
        return []
    with torch.no_grad():
        z = model.encode(x)
        codes = residual_quantize(z, model.codebooks)[0].numpy()
        if blob["collision"] == "extra_level":
            extra_size = _sid_codebook_sizes(sids_dir, blob)[-1]
            final = fill_extra_level(z, model.codebooks, codes, existing, extra_size)
        else:
            final, _ = reassign(z, model.codebooks, codes, taken=existing)
    return [[int(c) for c in row] for row in final]


def _sid_codebook_sizes(sids_dir: str | Path, blob: dict) -> list[int]:
    """Codebook sizes of the SIDs (with the extra level, if any): saved in rqvae.pt, else in stats.json."""
    if "sid_codebook_sizes" in blob:
        return list(blob["sid_codebook_sizes"])
    stats_path = Path(sids_dir) / "stats.json"
    if not stats_path.is_file():
        raise InputError("stats.json (codebook sizes) not found beside the quantizer", stats_path)
    return list(read_json(stats_path)["codebook_sizes"])


def add_items_to_sids(sids_dir: str | Path, item_ids: list[str], new_item_embeddings: np.ndarray) -> dict[str, list[int]]:
    """Assign SIDs to ``item_ids`` (see :func:`assign_sids`) and add them to ``sids.json`` atomically."""
    sids_path = Path(sids_dir) / "sids.json"
    table = read_json(sids_path)
    clash = [i for i in item_ids if i in table]
    if clash:
        raise InputError(f"items already have SIDs: {clash[:5]}", sids_path)
    if len(set(item_ids)) != len(item_ids):
        raise InputError("duplicate ids among the new items", sids_path)
    if len(item_ids) != len(new_item_embeddings):
        raise InputError(f"{len(item_ids)} new item ids but {len(new_item_embeddings)} embeddings", sids_path)
    new = dict(zip(item_ids, assign_sids(sids_dir, new_item_embeddings)))
    write_json(sids_path, {**table, **new}, indent=None)
    return new


__all__ = ["QuantizeConfig", "add_items_to_sids", "assign_sids", "group_sizes", "load_quantizer", "run_quantize"]
