"""``sidrec decode``: a trained model + RUN/sids + RUN/data -> predictions JSONL in the shared format."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import hashlib

from sidrec.artifacts import config_hash, to_plain, write_json
from sidrec.config import opt

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


def _load_model(cfg: DecodeConfig):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sidrec.errors import InputError

    if not Path(cfg.model).is_dir():
        raise InputError("model folder not found", cfg.model)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
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


def inputs_digest(cfg: DecodeConfig) -> str:
    """Content hash of the model weights, tokenizer, SID table and data splits ``cfg`` decodes: a retrained model
    or a new SID table at the same paths makes the existing predictions out of date (the options alone did not)."""
    model = Path(cfg.model)
    files = sorted(f for f in model.iterdir() if f.is_file() and (f.name in _MODEL_FILES or (
        f.suffix in (".safetensors", ".bin") and not f.name.startswith(("optimizer", "scheduler", "training_args")))))
    sids = Path(cfg.sids)
    files.append(sids / "sids.json" if sids.is_dir() else sids)
    splits = Path(cfg.data) / "splits" / cfg.split
    files += sorted(f for f in splits.rglob("*") if f.is_file()) if splits.is_dir() else []
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def decode(cfg: DecodeConfig) -> Path:
    """Decode every sample of ``cfg.split`` and write the predictions file; returns its path.

    Skipped (resume) when the file exists and its sidecar ``<out>.config.json`` holds the same config hash, which
    covers the options and the content of the model, SID table and split (:func:`inputs_digest`).
    """
    import json

    from sidrec.align.prompts import build_prompts
    from sidrec.data.store import load_data
    from sidrec.decode import recommend
    from sidrec.errors import InputError
    from sidrec.predictions import Prediction, write_predictions
    from sidrec.sid import SidTable

    if not Path(cfg.model).is_dir():
        raise InputError("model folder not found", cfg.model)
    if not cfg.sids:
        cfg = dataclasses.replace(cfg, sids=cfg.sid_table_path())
    out = cfg.output_path()
    sidecar = out.with_name(out.name + ".config.json")
    resolved = {k: v for k, v in to_plain(cfg).items() if k != "force"} | {"inputs": inputs_digest(cfg)}
    if not cfg.force and out.is_file() and sidecar.is_file():
        if json.loads(sidecar.read_text()).get("config_hash") == config_hash(resolved):
            log.info("%s is up to date (same options); --force redoes it", out)
            return out
    data = load_data(cfg.data)
    sid_table = SidTable.load(cfg.sids)
    model, tokenizer = _load_model(cfg)
    samples = data.split(cfg.split)
    if cfg.limit is not None:
        samples = samples.select(range(min(cfg.limit, len(samples))))
    prompts = build_prompts(tokenizer, samples["history"], sid_table, max_history=cfg.max_history)
    start = time.perf_counter()
    ranked = recommend(model, tokenizer, prompts, sid_table, beams=cfg.beams,
                       topk=cfg.beams if cfg.exclude_history else cfg.topk, backend=cfg.backend,
                       batch_size=cfg.batch_size, progress=True)
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
    write_json(sidecar, {"stage": "decode", "config_hash": config_hash(resolved), "config": resolved,
                         "summary": summary})
    log.info("wrote %d predictions to %s in %.1f s (%.1f users/s; HR@10 %.4f)", len(predictions), out, seconds,
             summary["users_per_s"], summary["hit_at_10"])
    return out
