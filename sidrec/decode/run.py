"""``sidrec decode``: a trained model + RUN/sids + RUN/data -> predictions JSONL in the shared format."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sidrec.artifacts import to_plain
from sidrec.config import opt
from sidrec.stage import Stage, file_marker, read_marker, run_stage

log = logging.getLogger(__name__)


@dataclass
class DecodeConfig:
    """Options of ``sidrec decode``."""

    model: str = opt("", "model folder (tokenizer beside it, holding the SID tokens), e.g. RUN/sft/final")
    sids: str = opt("", "RUN/sids folder or a sids.json file (default: the table the model's sidrec.json names)")
    data: str = opt("", "prepared dataset folder (RUN/data)")
    backend: Literal["torch", "hf", "hf-prefix-fn", "vllm"] = opt(
        "torch", "torch (exact beam search, KV cache), hf (generate + trie processor), hf-prefix-fn, vllm")
    beams: int = opt(50, "beam width")
    topk: int = opt(20, "items written per sample")
    split: Literal["valid", "test"] = opt("test", "which split's samples to decode")
    out: str | None = opt(None, "predictions file (default: RUN/predictions/<stage>.jsonl, the stage that trained "
                                "the model: sft, grpo; <stage>-checkpoint-N for a checkpoint)")
    batch_size: int = opt(16, "prompts per batch (decode steps run batch_size x beams rows)")
    device: str = opt("auto", "torch device: auto, cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = opt("auto", "model dtype (auto: bf16 on GPU)")
    limit: int | None = opt(None, "decode only the first N samples (smoke runs)")
    max_history: int | None = opt(None, "most recent history items in a prompt (default: the model's "
                                         "sidrec.json, else all the dataset keeps)")
    exclude_history: bool = opt(False, "drop each sample's history items from its list (the S3Rec / FMLP-Rec / "
                                       "BSARec protocol): all `beams` candidates are ranked, history items "
                                       "removed, the first `topk` kept")
    item_weight: float | None = opt(None, "a model trained with the item head (sft.item_loss): re-rank the beam's "
                                           "candidates by SID log-prob + item_weight x item-head log-prob (every "
                                           "backend); default 1.0 for such a model, 0 = SID log-prob only")
    item_pool: int | None = opt(None, "beam candidates handed to that re-ranking (default: max(topk, beams))")
    item_search: Literal["rerank", "guided"] = opt(
        "rerank", "rerank: the SID beam's candidates re-ranked; guided (torch backend): every beam level ranks "
                  "prefixes by SID log-prob + item_weight x log of the item head's mass under them")
    force: bool = opt(False, "redo even when --out was written with the same options")

    def problems(self) -> list[str]:
        p = [f"{name}: required" for name in ("model", "data") if not getattr(self, name)]
        if self.beams < 1 or self.topk < 1 or self.batch_size < 1:
            p.append("beams, topk, batch_size: must be >= 1")
        if self.backend in ("hf", "hf-prefix-fn") and self.topk > self.beams:
            p.append(f"topk ({self.topk}) > beams ({self.beams}): transformers returns at most `beams` sequences; "
                     "raise --beams or use --backend torch")
        if self.limit is not None and self.limit < 1:
            p.append("limit: must be >= 1")
        if self.item_weight is not None and self.item_weight < 0:
            p.append(f"item_weight: {self.item_weight} must be >= 0")
        if self.item_pool is not None and self.item_pool < 1:
            p.append("item_pool: must be >= 1")
        if self.item_search == "guided" and self.backend != "torch":
            p.append("item_search: guided needs backend torch (hf and vllm re-rank)")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device or ""):
            p.append(f"device: {self.device!r} is not one of auto, cpu, mps, cuda, cuda:N")
        return p

    def output_path(self) -> Path:
        """``out``, else ``RUN/predictions/<name>.jsonl`` named after the stage that trained the model (its
        ``sidrec.json``; a model folder without one: the folder's name)."""
        if self.out:
            return Path(self.out)
        from sidrec.align.prompts import model_stage

        folder = Path(self.model)
        stage = model_stage(folder)
        if stage is None:
            name = folder.name
        elif folder.name.startswith("checkpoint-"):
            name = f"{stage}-{folder.name}"
        else:
            name = stage
        return Path(self.data).parent / "predictions" / f"{name}.jsonl"

    def sid_table_path(self) -> str:
        """``sids``, else the SID table named by the model's ``sidrec.json``; InputError when neither is known."""
        if self.sids:
            return self.sids
        from sidrec.align.prompts import model_sid_table
        from sidrec.errors import InputError

        found = model_sid_table(self.model)
        if found is None:
            raise InputError("the model's folder names no SID table (trained before sidrec.json recorded it); "
                             "give --sids RUN/sids", self.model)
        return str(found)


def _check_catalogue(cfg: DecodeConfig, sid_table, data) -> None:
    """The SID table, the data and the model must come from one catalogue: every item of the table is in the data's
    item table, and a table given with ``--sids`` agrees with the one the model was trained with (same codebook
    sizes, the same SID for every item both hold; ``sidrec add-items`` only adds items, so its tables pass)."""
    from sidrec.align.prompts import model_sid_table
    from sidrec.errors import InputError
    from sidrec.sid import SidTable

    known = data.item_index
    unknown = [i for i in sid_table.item_ids if i not in known]
    if unknown:
        raise InputError(f"{len(unknown)} of its {sid_table.n_items} items are not in the item table of {cfg.data} "
                         f"(first: {unknown[0]!r}): the SIDs and the data come from different catalogues",
                         sid_table.source)
    trained = model_sid_table(cfg.model)
    if trained is None or Path(sid_table.source).resolve() == trained.resolve():
        return
    own = SidTable.load(trained)
    differ = next((i for i, row in zip(own.item_ids, own.codes) if i in sid_table.item_index
                   and tuple(row) != tuple(sid_table.codes[sid_table.item_index[i]])), None)
    if own.codebook_sizes != sid_table.codebook_sizes or differ is not None:
        what = (f"item {differ!r} has another SID" if differ is not None else
                f"codebook sizes {sid_table.codebook_sizes} vs {own.codebook_sizes}")
        raise InputError(f"not the SID table the model was trained with ({trained}): {what}; drop --sids to use "
                         "the model's own", sid_table.source)


def _load_model(cfg: DecodeConfig):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sidrec.errors import InputError

    if not Path(cfg.model).is_dir():
        raise InputError("model folder not found", cfg.model)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {cfg.device}: this torch build sees no CUDA device (use cpu or auto)")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        cfg.dtype, torch.bfloat16 if device.startswith("cuda") else torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    tokenizer.padding_side = "left"  # not restored on reload (STACK_NOTES)
    if cfg.backend == "vllm":
        from sidrec.decode.vllm_backend import make_llm

        return make_llm(cfg.model, dtype=cfg.dtype), tokenizer
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype).to(device).eval()
    return model, tokenizer


# What a predictions file depends on besides the options: the model's weights, config and tokenizer, the SID table
# and the samples. Optimizer and trainer state files of a checkpoint are left out (they do not change predictions).
_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "sidrec.json", "generation_config.json")


def _input_files(cfg: DecodeConfig) -> dict[str, list[Path]]:
    """The files whose bytes the predictions depend on: ``{"model": [...], "sids": [...], "data": [...]}``."""
    model = Path(cfg.model)
    weights = sorted(f for f in model.iterdir() if f.is_file() and (f.name in _MODEL_FILES or (
        f.suffix in (".safetensors", ".bin") and not f.name.startswith(("optimizer", "scheduler", "training_args")))))
    sids = Path(cfg.sids)
    splits = Path(cfg.data) / "splits" / cfg.split
    return {"model": weights, "sids": [sids / "sids.json" if sids.is_dir() else sids],
            "data": sorted(f for f in splits.rglob("*") if f.is_file()) if splits.is_dir() else []}


def _content_digest(files: list[Path], digest=None) -> str:
    digest = digest or hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def inputs_digest(cfg: DecodeConfig) -> str:
    """Content hash of the model weights, tokenizer, SID table and data splits ``cfg`` decodes, all together (what
    a predictions sidecar recorded before the stage runner's marker format: :meth:`DecodeStage.legacy_view`)."""
    files = _input_files(cfg)
    return _content_digest(files["model"] + files["sids"] + files["data"])


class DecodeStage(Stage[DecodeConfig]):
    """Decoding as a file-level stage: the predictions file, with its marker beside it (``<out>.config.json``:
    options, input digests and a ``summary`` of samples, seconds, users/s and HR@10)."""

    name = "decode"
    output_file = True

    def resolve(self, cfg: DecodeConfig) -> DecodeConfig:
        from sidrec.errors import InputError

        if not cfg.model or not cfg.data:
            return cfg  # problems() names what is missing
        if not Path(cfg.model).is_dir():
            raise InputError("model folder not found", cfg.model)
        return cfg if cfg.sids else dataclasses.replace(cfg, sids=cfg.sid_table_path())

    def target(self, cfg: DecodeConfig) -> Path:
        return cfg.output_path()

    def inputs(self, cfg: DecodeConfig) -> dict[str, str | Path | None]:
        return {"model": cfg.model, "sids": cfg.sids, "data": cfg.data}

    def input_digests(self, cfg: DecodeConfig) -> dict[str, str | None]:
        # By content, not by marker: a checkpoint folder shares its training folder's marker, and a model retrained
        # in place (or a hand-made one) must still make the predictions out of date.
        return {name: "sha256:" + _content_digest(files) for name, files in _input_files(cfg).items()}

    def legacy_view(self, cfg: DecodeConfig) -> dict:
        return {k: v for k, v in to_plain(cfg).items() if k != "force"} | {"inputs": inputs_digest(cfg)}

    def legacy_inputs(self, cfg: DecodeConfig) -> dict[str, str | Path | None]:
        return {}  # the old sidecar's hash covered the inputs' contents already

    def run(self, cfg: DecodeConfig, out: Path) -> dict:
        from sidrec.align.prompts import build_prompts
        from sidrec.data.store import load_data
        from sidrec.decode import recommend
        from sidrec.predictions import Prediction, write_predictions
        from sidrec.sid import SidTable

        data = load_data(cfg.data)
        sid_table = SidTable.load(cfg.sids)
        _check_catalogue(cfg, sid_table, data)
        model, tokenizer = _load_model(cfg)
        samples = data.split(cfg.split)
        if cfg.limit is not None:
            samples = samples.select(range(min(cfg.limit, len(samples))))
        prompts = build_prompts(tokenizer, samples["history"], sid_table, max_history=cfg.max_history)
        start = time.perf_counter()
        ranked = recommend(model, tokenizer, prompts, sid_table, beams=cfg.beams,
                           topk=cfg.beams if cfg.exclude_history else cfg.topk, backend=cfg.backend,
                           batch_size=cfg.batch_size, progress=True, item_weight=cfg.item_weight,
                           item_pool=cfg.item_pool, item_search=cfg.item_search)
        if cfg.exclude_history:
            ranked = [[(i, sc) for i, sc in items if i not in seen][:cfg.topk]
                      for items, seen in zip(ranked, map(set, samples["history"]))]
        seconds = time.perf_counter() - start
        predictions = [Prediction(int(s), str(u), str(t), [i for i, _ in items], [sc for _, sc in items])
                       for s, u, t, items in zip(samples["sample_id"], samples["user_id"], samples["target"], ranked)]
        write_predictions(out, predictions)
        hits = sum(p.target in p.items[:10] for p in predictions)
        summary = {"samples": len(predictions), "seconds": round(seconds, 3),
                   "users_per_s": round(len(predictions) / max(seconds, 1e-9), 2),
                   "hit_at_10": round(hits / max(len(predictions), 1), 4)}
        log.info("wrote %d predictions to %s in %.1f s (%.1f users/s; HR@10 %.4f)", len(predictions),
                 cfg.output_path(), seconds, summary["users_per_s"], summary["hit_at_10"])
        return summary


def decode(cfg: DecodeConfig) -> Path:
    """Decode every sample of ``cfg.split`` and write the predictions file; returns its path.

    Skipped (resume) when the file's marker (``<out>.config.json``) holds the same fingerprint: the options and the
    content of the model, SID table and split, so a retrained model or new SIDs at the same paths redo it.
    """
    return run_stage(DecodeStage(), cfg)


def decode_seconds(predictions: str | Path) -> float | None:
    """The decoding seconds a predictions file's marker records (of the call that made it); None when unknown."""
    marker = read_marker(file_marker(predictions))
    return (marker.fields.get("summary") or {}).get("seconds") if marker is not None else None
