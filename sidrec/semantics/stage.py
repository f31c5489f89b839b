"""Stage ``semantics``: RUN/data -> RUN/semantics (sensory attributes, text / sensory / fused item embeddings).

Parts, in order (each can run alone: ``sidrec semantics sensory|text|fuse``; ``all`` runs the three):

1. ``sensory`` -- the teacher (offline lexicon extractor, or an LLM) extracts attribute-value pairs per item from
   its title, description and reviews; the student is distilled from them and gives every item a fixed-size
   sensory embedding. Writes ``sensory.jsonl``, ``sensory_emb.npy``, ``student/``.
2. ``text`` -- the text encoder embeds each item's chosen fields. Writes ``text_emb.npy``; with ``lexical_dim``
   also ``lexical_emb.npy``, a TF-IDF + truncated-SVD view of the same texts (its fitted encoder in
   ``lexical.joblib``) that ``sidrec quantize --embedding lexical`` turns into lexical SIDs while every other
   reader keeps the text encoder's view.
3. ``fuse`` -- weighted concatenation (or its PCA projection) of the two, L2-normalised. Writes ``item_emb.npy``
   and ``item_index.json`` (row -> item id).

Every file is written atomically. The stage runner (:mod:`sidrec.stage`) skips the whole stage when its
``_stage.json`` matches and writes it once all three parts are done; its part ledger (``_parts.json``,
:func:`sidrec.stage.run_parts`) records the fingerprint of each finished part, so a re-run redoes only the parts
whose options (or inputs) changed and a killed run resumes with the first unfinished part.
``stats.json`` holds timings, teacher parse counts, attribute coverage and, on data with ground-truth attributes
(the synthetic catalogue), the extractor's and the student's scores (:mod:`sidrec.semantics.metrics`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sidrec.artifacts import atomic_path, config_hash, load_npy, write_json, write_text
from sidrec.config import opt
from sidrec.facets import FACET_NAMES
from sidrec.semantics.extract import Attributes, ItemTexts, LexiconExtractor, read_sensory_jsonl
from sidrec.semantics.text import (
    LEXICAL_FILE,
    TEXT_FIELDS,
    TFIDF_FILE,
    TfidfEncoder,
    item_text,
    load_text_encoder,
)
from sidrec.stage import MARKER_FILE, Part, Stage, input_digests, read_marker, run_parts, run_stage

log = logging.getLogger(__name__)

PARTS = ("sensory", "text", "fuse")
LEXICAL_EMB = "lexical_emb.npy"  # the text part's second view, with lexical_dim
FILES = {"sensory": ("sensory.jsonl", "sensory_emb.npy"), "text": ("text_emb.npy",),
         "fuse": ("item_emb.npy", "item_index.json")}


@dataclass
class SemanticsConfig:
    """Options of ``sidrec semantics``."""

    data: str = opt("runs/demo/data", "prepared dataset folder (RUN/data)")
    out: str = opt("runs/demo/semantics", "output folder (RUN/semantics)")
    text_encoder: str = opt("default", "sentence-transformers name/path, or an HF causal LM path with "
                                       "--encoder-kind causal-lm; 'default' = packaged all-MiniLM-L6-v2")
    encoder_kind: Literal["sentence-transformers", "causal-lm", "tfidf"] = opt(
        "sentence-transformers", "how to load --text-encoder; tfidf: TF-IDF + truncated SVD fitted on the catalogue's "
                                 "texts (--text-encoder is then ignored)")
    tfidf_dim: int = opt(128, "--encoder-kind tfidf: dimensions kept by the SVD")
    lexical_dim: int = opt(0, "also write lexical_emb.npy, TF-IDF + truncated SVD of the text fields to this many "
                              "dimensions, for quantize --embedding lexical (SIDs from the words of the item texts; "
                              "the other readers keep the text encoder's view); 0: off")
    value_encoder: str = opt("default", "sentence-transformers model embedding attribute values (student "
                                        "targets, value F1)")
    text_fields: list[str] = opt(["title", "brand", "categories", "description"],
                                 "item fields embedded, in order: title, brand, categories, description, sensory")
    max_text_chars: int = opt(1200, "item text truncated to this many characters")
    max_seq_length: int = opt(256, "text encoder token limit")
    batch_size: int = opt(64, "text encoder batch size")
    device: str = opt("auto", "auto, cpu, cuda, cuda:1 ...")
    teacher: Literal["lexicon", "llm"] = opt("lexicon", "sensory teacher: offline lexicon extractor or an LLM")
    teacher_model: str | None = opt(None, "HF causal LM (path or name) for --teacher llm")
    teacher_backend: Literal["transformers", "vllm"] = opt("transformers", "generation backend of the LLM teacher")
    teacher_max_units: int = opt(5, "LLM teacher: reviews prompted per item (description when none)")
    teacher_max_new_tokens: int = opt(48, "LLM teacher: answer length limit")
    teacher_batch_size: int = opt(8, "LLM teacher: prompts per generation batch")
    use_reviews: bool = opt(True, "let the teacher read reviews (else title and description only)")
    max_reviews: int = opt(50, "lexicon teacher: reviews read per item")
    min_score: float = opt(1.0, "teacher: a facet is kept when its best value scores this much "
                                "(cued mention 2, bare lexicon word 1)")
    max_values: int = opt(1, "teacher: values kept per facet")
    student: bool = opt(True, "distil the sensory student (else the sensory embedding comes from the teacher)")
    student_fields: list[str] = opt(["title", "categories", "description"], "item fields the student reads")
    student_epochs: int = opt(20, "student training epochs")
    student_batch_size: int = opt(32, "student batch size")
    student_lr: float = opt(2e-3, "student learning rate")
    student_d_model: int = opt(64, "student width")
    student_layers: int = opt(1, "student transformer layers")
    student_max_len: int = opt(64, "student token limit")
    student_holdout: float = opt(0.1, "fraction of items hidden from student training (scored as unseen items)")
    sensory_dim: int = opt(16, "sensory embedding dimensions per facet (x 9 facets)")
    fusion: Literal["concat", "pca"] = opt("concat", "weighted concatenation, or its PCA projection")
    text_weight: float = opt(1.0, "weight of the text embedding in the fusion")
    sensory_weight: float = opt(0.5, "weight of the sensory embedding in the fusion (0 = text only)")
    fusion_dim: int = opt(256, "output dimensions for --fusion pca")
    seed: int = opt(0, "random seed")
    progress: bool = opt(True, "show progress bars")
    force: bool = opt(False, "redo even when --out holds outputs of the same options")

    def problems(self) -> list[str]:
        p = []
        bad = [f for f in self.text_fields if f not in TEXT_FIELDS]
        if bad or not self.text_fields:
            p.append(f"text_fields: unknown {bad} (choose from {list(TEXT_FIELDS)})" if bad else
                     "text_fields: at least one field is required")
        bad = [f for f in self.student_fields if f not in TEXT_FIELDS or f == "sensory"]
        if bad:
            p.append(f"student_fields: unknown {bad} (choose from title, brand, categories, description)")
        if self.teacher == "llm" and not self.teacher_model:
            p.append("teacher_model: required with --teacher llm (an HF causal LM path or name)")
        if not 0 <= self.student_holdout < 0.9:
            p.append("student_holdout: must be in [0, 0.9)")
        if self.text_weight < 0 or self.sensory_weight < 0 or self.text_weight + self.sensory_weight == 0:
            p.append("text_weight, sensory_weight: non-negative, not both zero")
        for name in ("sensory_dim", "fusion_dim", "student_epochs", "batch_size", "max_values", "tfidf_dim"):
            if getattr(self, name) < 1:
                p.append(f"{name}: must be >= 1")
        if self.lexical_dim < 0:
            p.append("lexical_dim: must be >= 0 (0: no lexical view)")
        if self.max_text_chars < 1:
            p.append("max_text_chars: must be >= 1")
        if self.max_reviews < 0:
            p.append("max_reviews: must be >= 0")
        return p


_SENSORY_KEYS = ("data", "value_encoder", "teacher", "teacher_model", "teacher_backend", "teacher_max_units",
                 "teacher_max_new_tokens", "use_reviews", "max_reviews", "min_score", "max_values", "student",
                 "student_fields", "student_epochs", "student_batch_size", "student_lr", "student_d_model",
                 "student_layers", "student_max_len", "student_holdout", "sensory_dim", "seed")
_TEXT_KEYS = ("data", "text_encoder", "encoder_kind", "text_fields", "max_text_chars", "max_seq_length")
_TFIDF_KEYS = ("tfidf_dim", "seed")  # hashed only with encoder_kind tfidf (no effect otherwise)
_LEXICAL_KEYS = ("lexical_dim", "seed")  # hashed only with a lexical view (lexical_dim > 0)
_FUSE_KEYS = ("fusion", "text_weight", "sensory_weight", "fusion_dim", "seed")


def _part_hashes(cfg: SemanticsConfig) -> dict[str, str]:
    # The dataset by its marker's digest: a new dataset at the same path redoes every part.
    view = {**vars(cfg), "data": input_digests({"data": cfg.data})["data"]}
    sensory = config_hash({k: view[k] for k in _SENSORY_KEYS})
    text_view = {k: view[k] for k in _TEXT_KEYS}
    if cfg.encoder_kind == "tfidf":
        text_view.update({k: view[k] for k in _TFIDF_KEYS})
    if cfg.lexical_dim:
        text_view.update({k: view[k] for k in _LEXICAL_KEYS})
    if "sensory" in cfg.text_fields:
        text_view["sensory"] = sensory
    text = config_hash(text_view)
    return {"sensory": sensory, "text": text,
            "fuse": config_hash({**{k: view[k] for k in _FUSE_KEYS}, "sensory": sensory, "text": text})}


class _Outputs:
    """The output folder: atomic array writes and stats.json (one entry per part)."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add_stats(self, part: str, stats: dict) -> None:
        path = self.root / "stats.json"
        all_stats = json.loads(path.read_text()) if path.is_file() else {}
        all_stats[part] = stats
        write_json(path, all_stats)

    def save_npy(self, name: str, array: np.ndarray) -> None:
        with atomic_path(self.root / name) as tmp, open(tmp, "wb") as fh:
            np.save(fh, array.astype(np.float32))


class SemanticsStage(Stage[SemanticsConfig]):
    """Sensory attributes and embeddings, text embeddings, their fusion (the module docstring). Written in place,
    part by part (``_parts.json``), so an interrupted run resumes with the next unfinished part."""

    name = "semantics"
    unhashed = ("out", "force", "progress")
    in_place = True
    outputs = tuple(f for part in PARTS for f in FILES[part])
    digest_outputs = outputs  # quantize and align read them: new embeddings redo what was made from the old

    def __init__(self, parts: Sequence[str] = PARTS):
        self.parts = tuple(parts)

    def inputs(self, cfg: SemanticsConfig) -> dict[str, str | Path | None]:
        return {"data": cfg.data}

    def options(self, cfg: SemanticsConfig) -> dict:
        """Every option but the unhashed ones, ``tfidf_dim`` unless the text encoder is ``tfidf`` and ``lexical_dim``
        when it is 0 (they change nothing else, and runs made before they existed keep their fingerprint)."""
        own = super().options(cfg)
        if cfg.encoder_kind != "tfidf":
            own.pop("tfidf_dim", None)
        if not cfg.lexical_dim:
            own.pop("lexical_dim", None)
        return own

    def run(self, cfg: SemanticsConfig, out: Path) -> bool:
        """Run the requested parts whose outputs are missing or stale; True once all three are done."""
        from sidrec.data.store import load_data

        data = load_data(cfg.data)
        outputs = _Outputs(out)
        work = {"sensory": _run_sensory, "text": _run_text, "fuse": _run_fuse}

        def part_run(part: str):
            def run() -> None:
                start = time.perf_counter()
                stats = work[part](cfg, data, outputs)
                stats["wall_s"] = round(time.perf_counter() - start, 2)
                outputs.add_stats(part, stats)
                log.info("semantics/%s: done in %.1fs", part, stats["wall_s"])
            return run

        hashes = _part_hashes(cfg)
        files = {**FILES, "text": FILES["text"] + ((LEXICAL_EMB,) if cfg.lexical_dim else ())}
        parts = [Part(part, hashes[part], files[part], part_run(part)) for part in PARTS]
        return run_parts(self.name, out, parts, self.parts, force=cfg.force)


def run_semantics(cfg: SemanticsConfig, parts: Sequence[str] = PARTS) -> Path:
    """Run the requested parts of the stage into ``cfg.out``; returns the folder.

    The stage is skipped when ``cfg.out`` holds the outputs of the same options and dataset; otherwise parts whose
    outputs exist for the same options are skipped unless ``cfg.force``, and once all three parts are done the
    stage's done marker is written (the pipeline's and quantize's resume read it).
    """
    return run_stage(SemanticsStage(parts), cfg)


# ---- sensory ---------------------------------------------------------------------------------------------------
def _item_texts(data, use_reviews: bool, max_reviews: int) -> list[ItemTexts]:
    reviews: dict[str, list[str]] = defaultdict(list)
    if use_reviews:
        for item, text in zip(data.reviews["item_id"], data.reviews["text"]):
            if text and len(reviews[item]) < max_reviews:
                reviews[item].append(text)
    return [ItemTexts(row["item_id"], row["title"] or "", row["description"] or "", reviews.get(row["item_id"], []))
            for row in data.items]


def make_teacher(cfg: SemanticsConfig):
    """The configured teacher: :class:`LexiconExtractor` or :class:`~sidrec.semantics.teacher.LLMExtractor`."""
    if cfg.teacher == "llm":
        from sidrec.semantics.teacher import LLMExtractor

        return LLMExtractor(cfg.teacher_model, cfg.teacher_backend, cfg.device, cfg.teacher_batch_size,
                            cfg.teacher_max_new_tokens, cfg.teacher_max_units, min_score=max(cfg.min_score, 2.0),
                            max_values=cfg.max_values)
    return LexiconExtractor(min_score=cfg.min_score, max_values=cfg.max_values)


def coverage(attributes: Sequence[Attributes]) -> dict[str, Any]:
    """Share of items with at least one attribute, per-facet shares and mean pairs per item."""
    n = max(len(attributes), 1)
    return {"items_with_attributes": sum(bool(a) for a in attributes) / n,
            "mean_pairs_per_item": sum(sum(len(v) for v in a.values()) for a in attributes) / n,
            "per_facet": {f: sum(f in a for a in attributes) / n for f in FACET_NAMES}}


def _run_sensory(cfg: SemanticsConfig, data, outputs: _Outputs) -> dict:
    from sidrec.semantics.metrics import score_string_attributes, value_f1
    from sidrec.semantics.student import StudentTrainConfig, distill_student
    from sidrec.torch_threads import one_thread

    items = _item_texts(data, cfg.use_reviews, cfg.max_reviews)
    n_reviews = sum(len(it.reviews) for it in items)
    if cfg.use_reviews and n_reviews == 0:
        log.warning("use_reviews: %s holds no review texts; the teacher reads titles and descriptions only",
                    data.root)
    teacher = make_teacher(cfg)
    t0 = time.perf_counter()
    teacher_attrs = teacher.extract_corpus(items)
    stats: dict[str, Any] = {"teacher": cfg.teacher, "teacher_wall_s": round(time.perf_counter() - t0, 2),
                             "reviews_read": n_reviews}
    if cfg.teacher == "llm":
        stats["teacher_parse"] = teacher.stats.as_dict()
    ids = data.item_ids
    teacher_list = [teacher_attrs[i] for i in ids]
    stats["teacher_coverage"] = coverage(teacher_list)
    value_encoder = load_text_encoder(cfg.value_encoder, "sentence-transformers", cfg.device, 64)

    def encode(values: list[str]) -> np.ndarray:
        return value_encoder.encode(values, batch_size=256)

    truth = (data.ground_truth() or {}).get("attributes")
    if truth:
        stats["teacher_vs_truth"] = score_string_attributes(teacher_attrs, truth, encode)

    student_attrs: list[Attributes] = [{} for _ in ids]
    student_dir = outputs.root / "student"
    if cfg.student:
        texts = [item_text(row, cfg.student_fields, max_chars=cfg.max_text_chars) for row in data.items]
        rng = np.random.default_rng(cfg.seed)
        holdout = np.zeros(len(ids), bool)
        holdout[rng.permutation(len(ids))[: int(round(cfg.student_holdout * len(ids)))]] = True
        train = np.flatnonzero(~holdout)
        t0 = time.perf_counter()
        with one_thread():
            student, history = distill_student(
                [texts[i] for i in train], [teacher_list[i] for i in train], encode,
                StudentTrainConfig(cfg.student_epochs, cfg.student_batch_size, cfg.student_lr,
                                   proj_dim=cfg.sensory_dim, seed=cfg.seed),
                {"d_model": cfg.student_d_model, "n_layers": cfg.student_layers, "max_len": cfg.student_max_len},
                progress=cfg.progress)
            probs, values = student.predict(texts)
        stats["student_wall_s"] = round(time.perf_counter() - t0, 2)
        stats["student_loss"] = {"first": history["loss"][0], "last": history["loss"][-1]}
        sensory_emb = student.sensory_embedding(probs, values)
        student_attrs = student.decode(probs, values)
        stats["student_coverage"] = coverage(student_attrs)
        stats["student_holdout_items"] = int(holdout.sum())
        # Agreement with the teacher on items the student never trained on, and scores against ground truth.
        vec_pred = [{FACET_NAMES[f]: values[i, f][None] for f in np.flatnonzero(probs[i] >= 0.5)}
                    for i in range(len(ids))]
        for name, mask in (("holdout", holdout), ("all", np.ones(len(ids), bool))):
            if not mask.any():
                continue
            rows = np.flatnonzero(mask)
            as_truth = {ids[i]: {f: vs[0] for f, vs in teacher_list[i].items()} for i in rows}
            from sidrec.semantics.metrics import facet_selection_scores

            pred = {ids[i]: vec_pred[i] for i in rows}
            stats[f"student_vs_teacher_{name}"] = {
                **facet_selection_scores({k: list(v) for k, v in pred.items()}, as_truth),
                **value_f1(pred, as_truth, encode)}
            if truth:
                gold = {ids[i]: truth[ids[i]] for i in rows if ids[i] in truth}
                stats[f"student_vs_truth_{name}"] = {
                    **facet_selection_scores({k: list(v) for k, v in pred.items()}, gold),
                    **value_f1(pred, gold, encode)}
        import shutil
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix=".student.tmp-", dir=outputs.root))
        student.save(tmp)
        shutil.rmtree(student_dir, ignore_errors=True)
        tmp.rename(student_dir)
    else:
        sensory_emb, proj = teacher_sensory_embedding(teacher_list, encode, cfg.sensory_dim, cfg.seed)
        with atomic_path(outputs.root / "sensory_proj.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, proj)
    outputs.save_npy("sensory_emb.npy", sensory_emb)
    lines = [json.dumps({"item_id": i, "attributes": t or s, "teacher": t, "student": s,
                         "source": "teacher" if t else ("student" if s else "none")}, ensure_ascii=False)
             for i, t, s in zip(ids, teacher_list, student_attrs)]
    write_text(outputs.root / "sensory.jsonl", "\n".join(lines) + "\n")
    stats["sensory_dim"] = int(sensory_emb.shape[1])
    return stats


def teacher_sensory_embedding(attributes: Sequence[Attributes], encode, proj_dim: int, seed: int,
                              proj: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The sensory embedding without a student: facet present -> p = 1 and v = E(value).

    Returns the embeddings and the projection (fitted on these values unless ``proj`` is given).
    """
    from sidrec.semantics.student import _value_projection

    values = sorted({v for a in attributes for vs in a.values() for v in vs})
    emb = dict(zip(values, encode(values))) if values else {}
    dim = len(next(iter(emb.values()))) if emb else int(encode(["x"]).shape[1])
    if proj is None:
        proj = _value_projection(np.stack(list(emb.values())) if emb else np.zeros((0, dim)), dim, proj_dim, seed)
    out = np.zeros((len(attributes), len(FACET_NAMES), proj_dim), np.float32)
    for i, a in enumerate(attributes):
        for f, facet in enumerate(FACET_NAMES):
            if a.get(facet):
                out[i, f] = np.mean([emb[v] for v in a[facet]], axis=0) @ proj
    flat = out.reshape(len(attributes), -1)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12), proj


# ---- text ------------------------------------------------------------------------------------------------------
def read_sensory(folder: str | Path) -> dict[str, Attributes]:
    path = Path(folder) / "sensory.jsonl"
    if not path.is_file():
        from sidrec.errors import InputError

        raise InputError("sensory.jsonl missing: run `sidrec semantics sensory` first (text_fields has 'sensory')",
                         path)
    return read_sensory_jsonl(path)


def _run_text(cfg: SemanticsConfig, data, outputs: _Outputs) -> dict:
    sensory = read_sensory(outputs.root) if "sensory" in cfg.text_fields else {}
    texts = [item_text(row, cfg.text_fields, sensory.get(row["item_id"]), cfg.max_text_chars) for row in data.items]
    t0 = time.perf_counter()
    if cfg.encoder_kind == "tfidf":
        encoder = TfidfEncoder(cfg.tfidf_dim, seed=cfg.seed).fit(texts)
        encoder.save(outputs.root / TFIDF_FILE)
    else:
        encoder = load_text_encoder(cfg.text_encoder, cfg.encoder_kind, cfg.device, cfg.max_seq_length)
    emb = encoder.encode(texts, batch_size=cfg.batch_size, progress=cfg.progress)
    outputs.save_npy("text_emb.npy", emb)
    stats = {"encoder": cfg.text_encoder, "kind": cfg.encoder_kind, "dim": int(emb.shape[1]), "n_items": len(texts),
             "encode_wall_s": round(time.perf_counter() - t0, 2), "example_text": texts[0] if texts else ""}
    if cfg.lexical_dim:
        lexical = TfidfEncoder(cfg.lexical_dim, seed=cfg.seed).fit(texts)
        lexical.save(outputs.root / LEXICAL_FILE)
        outputs.save_npy(LEXICAL_EMB, lexical.encode(texts))
        stats["lexical_dim"] = lexical.dim
    return stats


# ---- fuse ------------------------------------------------------------------------------------------------------
def fuse(text_emb: np.ndarray, sensory_emb: np.ndarray, text_weight: float, sensory_weight: float,
         pca: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Weighted concatenation of the two (each row L2-normalised first), optionally PCA-projected; L2-normalised.

    ``pca`` = (mean, components ``(dim_in, dim_out)``).
    """
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    parts = [text_weight * unit(text_emb)]
    if sensory_weight > 0:
        parts.append(sensory_weight * unit(sensory_emb))
    joint = np.concatenate(parts, axis=1)
    if pca is not None:
        joint = (joint - pca[0]) @ pca[1]
    return unit(joint).astype(np.float32)


def _run_fuse(cfg: SemanticsConfig, data, outputs: _Outputs) -> dict:
    text_emb = load_npy(outputs.root / "text_emb.npy")
    sensory_emb = load_npy(outputs.root / "sensory_emb.npy")
    if len(text_emb) != len(sensory_emb) or len(text_emb) != len(data.item_ids):
        from sidrec.errors import InputError

        raise InputError(f"text_emb has {len(text_emb)} rows, sensory_emb {len(sensory_emb)}, the item table "
                         f"{len(data.item_ids)}: rerun `sidrec semantics all --force`", outputs.root)
    pca = None
    if cfg.fusion == "pca":
        joint = fuse(text_emb, sensory_emb, cfg.text_weight, cfg.sensory_weight)
        mean = joint.mean(0)
        _, _, vt = np.linalg.svd(joint - mean, full_matrices=False)
        pca = (mean, vt[: min(cfg.fusion_dim, vt.shape[0])].T)
        with atomic_path(outputs.root / "fusion.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, mean=pca[0], components=pca[1])
    item_emb = fuse(text_emb, sensory_emb, cfg.text_weight, cfg.sensory_weight, pca)
    outputs.save_npy("item_emb.npy", item_emb)
    write_json(outputs.root / "item_index.json", data.item_ids, indent=None)
    return {"fusion": cfg.fusion, "dim": int(item_emb.shape[1]), "text_dim": int(text_emb.shape[1]),
            "sensory_dim": int(sensory_emb.shape[1])}


# ---- new items (cold start) ------------------------------------------------------------------------------------
def load_semantics_config(folder: str | Path) -> SemanticsConfig:
    """The options a finished semantics folder was made with (from its stage marker)."""
    from sidrec.errors import InputError

    marker = read_marker(Path(folder) / MARKER_FILE)
    if marker is None or "config" not in marker.fields:
        raise InputError(f"not a finished semantics folder (no {MARKER_FILE}): run `sidrec semantics all`", folder)
    return SemanticsConfig(**{**marker.fields["config"], "out": str(folder)})


def embed_new_items(semantics_dir: str | Path, items: Sequence[dict], view: str = "item"
                    ) -> tuple[np.ndarray, list[Attributes]]:
    """Item embeddings for items outside the catalogue, made exactly like the catalogue's own.

    ``items`` are canonical item rows (``title``, ``description``, ``brand``, ``categories``). The sensory part
    comes from the trained student (new items have no reviews), so no model is retrained. Returns the embeddings
    ``(len(items), dim)`` of ``view`` -- ``item`` (fused), ``text``, ``sensory`` or ``lexical``: the one the
    quantizer was trained on (its ``embedding`` option; see ``sidrec.quantize.assign_sids``) -- and the student's
    attributes per item. Raises :class:`~sidrec.errors.InputError` for a view the folder was not made with.
    """
    from sidrec.errors import InputError
    from sidrec.semantics.student import StudentModel

    folder = Path(semantics_dir)
    cfg = load_semantics_config(folder)
    if view not in ("item", "text", "sensory", "lexical"):
        raise ValueError(f"view: {view!r}; choose item, text, sensory or lexical")
    if view == "lexical" and not (folder / LEXICAL_FILE).is_file():
        raise InputError(f"no lexical view ({LEXICAL_FILE}): the folder was made with lexical_dim 0", folder)
    attrs: list[Attributes] = [{} for _ in items]
    if cfg.student:
        student = StudentModel.load(folder / "student")
        texts = [item_text(it, cfg.student_fields, max_chars=cfg.max_text_chars) for it in items]
        probs, values = student.predict(texts)
        sensory_emb = student.sensory_embedding(probs, values)
        attrs = student.decode(probs, values)
    else:
        teacher = LexiconExtractor(min_score=cfg.min_score, max_values=cfg.max_values)
        attrs = [teacher.aggregate(m for t in (it.get("title", ""), it.get("description", "")) if t
                                   for m in teacher.mentions(t)) for it in items]
        value_encoder = load_text_encoder(cfg.value_encoder, "sentence-transformers", cfg.device, 64)
        sensory_emb, _ = teacher_sensory_embedding(attrs, value_encoder.encode, cfg.sensory_dim, cfg.seed,
                                                   proj=np.load(folder / "sensory_proj.npy"))
    texts = [item_text(it, cfg.text_fields, a, cfg.max_text_chars) for it, a in zip(items, attrs)]
    if view == "lexical":
        return TfidfEncoder.load(folder / LEXICAL_FILE).encode(texts), attrs
    if view == "sensory":
        return sensory_emb.astype(np.float32), attrs
    encoder = TfidfEncoder.load(folder / TFIDF_FILE) if cfg.encoder_kind == "tfidf" else \
        load_text_encoder(cfg.text_encoder, cfg.encoder_kind, cfg.device, cfg.max_seq_length)
    text_emb = encoder.encode(texts, batch_size=cfg.batch_size)
    if view == "text":
        return text_emb, attrs
    pca = None
    if cfg.fusion == "pca":
        blob = np.load(folder / "fusion.npz")
        pca = (blob["mean"], blob["components"])
    return fuse(text_emb, sensory_emb, cfg.text_weight, cfg.sensory_weight, pca), attrs
