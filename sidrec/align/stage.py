"""Stage ``align``: SID tokens + SA-Init on the base model, keywords, and the TS-Align / SFT dataset (``RUN/align``).

Writes (atomically, skipped on re-run with the same options)::

    RUN/align/model/            base model + tokenizer with one token per SID code, SA-initialised, and
                                sidrec.json (prompt format, sequence prefix, history window)
    RUN/align/dataset/          DatasetDict train (mixed tasks) / valid (main task): prompt, completion, task, ...
    RUN/align/sid_keywords.json keywords and a description per SID token and per SID prefix
    RUN/align/sids/             the SID table the model was aligned to (copy of sids.json and its stats.json)
    RUN/align/stats.json        task counts, one example per task, SA-Init counts
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sidrec.artifacts import check_model_source, write_json
from sidrec.config import opt
from sidrec.errors import InputError
from sidrec.stage import Stage, run_stage

log = logging.getLogger(__name__)


@dataclass
class AlignConfig:
    """Options of ``sidrec align``."""

    data: str = opt("runs/demo/data", "prepared dataset (RUN/data)")
    sids: str = opt("runs/demo/sids", "SID folder or sids.json from `sidrec quantize`")
    model: str = opt("runs/demo/base_model",
                     "base causal LM: a path or hub name (Qwen/Qwen2.5-0.5B-Instruct) or `sidrec model init-tiny` output")
    out: str = opt("runs/demo/align", "output folder (RUN/align)")
    semantics: str | None = opt(None, "folder with sensory.jsonl whose values join the keyword texts "
                                      "(default: RUN/semantics beside --data, when present)")
    sa_init: bool = opt(True, "SA-Init: SID token embeddings = mean of their keywords' sub-token embeddings")
    keywords: Literal["tfidf", "file", "teacher"] = opt("tfidf", "keyword source for SID tokens: class-based "
                                                                 "TF-IDF, a TS-Rec-format file, or a teacher LLM")
    keywords_file: str | None = opt(None, "keywords file for --keywords file ([{token, description, keywords}])")
    teacher_model: str | None = opt(None, "instruction LLM for --keywords teacher (e.g. Qwen/Qwen2.5-1.5B-Instruct)")
    top_k_keywords: int = opt(10, "keywords per SID token / prefix")
    ts_align: bool = opt(True, "add the TS-Align tasks; off = main task only (the mix_* ratios are ignored)")
    mix_titles_next_sid: float = opt(0.2, "examples of 'history of titles -> next SID', relative to the main task")
    mix_sid_to_title: float = opt(0.15, "examples of 'SID -> title', relative to the main task")
    mix_title_to_sid: float = opt(0.15, "examples of 'title -> SID', relative to the main task")
    mix_prefix_to_text: float = opt(0.05, "examples of 'SID prefix -> description + keywords', relative to main")
    mix_text_to_prefix: float = opt(0.05, "examples of 'keywords or description -> SID prefix', relative to main")
    prompt_format: Literal["auto", "sequence", "instruction"] = opt(
        "auto", "main-task format: sequence (a user's whole SID sequence, loss on every SID token) or instruction "
                "(one chat prompt per sample); auto = sequence for a `sidrec model init-tiny` model, instruction "
                "for a pretrained LLM")
    max_history: int | None = opt(None, "most recent history items in a prompt or training sequence (default: "
                                        "the dataset's window)")
    max_train_samples: int | None = opt(None, "cap on main-task training examples: users in the sequence format, "
                                              "samples in the instruction format (most recent kept)")
    valid_samples: int = opt(300, "validation samples in the valid set (eval loss, HR@10 callback); 0 = all")
    seed: int = opt(0, "random seed (sampling of auxiliary tasks, shuffling)")
    force: bool = opt(False, "redo even when --out holds the output of the same options")

    def problems(self) -> list[str]:
        p = []
        if self.keywords == "file" and not self.keywords_file:
            p.append("keywords_file: required with --keywords file")
        if self.keywords == "teacher" and not self.teacher_model:
            p.append("teacher_model: required with --keywords teacher")
        if self.top_k_keywords < 1:
            p.append("top_k_keywords: must be >= 1")
        p += [f"{name}: must be >= 0" for name, v in self.ratios(all_tasks=True).items() if v < 0]
        if self.max_history is not None and self.max_history < 1:
            p.append("max_history: must be >= 1")
        if self.valid_samples < 0:
            p.append("valid_samples: must be >= 0")
        return p

    def ratios(self, all_tasks: bool = False) -> dict[str, float]:
        """Auxiliary task -> size relative to the main task (all zero when ``ts_align`` is off)."""
        on = self.ts_align or all_tasks
        return {name[len("mix_"):]: (getattr(self, name) if on else 0.0)
                for name in vars(self) if name.startswith("mix_")}


def _semantics_dir(cfg: AlignConfig) -> Path | None:
    if cfg.semantics:
        return Path(cfg.semantics)
    guess = Path(cfg.data).parent / "semantics"
    return guess if guess.is_dir() else None


def compute_keywords(cfg: AlignConfig, data, sid_table) -> dict:
    """``{"method", "top_k", "tokens": {...}, "prefixes": {...}}`` for every used SID token and prefix."""
    from sidrec.align import keywords as kw

    sensory = kw.load_sensory_values(_semantics_dir(cfg))
    docs = kw.item_documents(data.items, sid_table, sensory)
    title_of = dict(zip(data.items["item_id"], data.items["title"]))
    titles = [title_of[i] for i in sid_table.item_ids]
    tokens = kw.token_keywords(sid_table, docs, cfg.top_k_keywords, titles)
    prefixes = kw.prefix_keywords(sid_table, docs, cfg.top_k_keywords, titles)
    if cfg.keywords == "file":
        given = kw.load_keyword_file(cfg.keywords_file)
        hit = 0
        for token, rec in tokens.items():
            if token in given:
                rec.update({k: given[token][k] for k in ("keywords", "description") if given[token].get(k)})
                hit += 1
        log.info("keywords file %s covers %d of %d used SID tokens (the rest keep c-TF-IDF keywords)",
                 cfg.keywords_file, hit, len(tokens))
    elif cfg.keywords == "teacher":
        import numpy as np

        classes = {token: [titles[i] for i in np.flatnonzero(sid_table.codes[:, rec["level"]] == rec["code"])]
                   for token, rec in tokens.items()}
        for token, words in kw.teacher_keywords(classes, cfg.teacher_model, cfg.top_k_keywords).items():
            if words:
                tokens[token]["keywords"] = words
    return {"method": cfg.keywords, "top_k": cfg.top_k_keywords, "sensory_items": len(sensory),
            "tokens": tokens, "prefixes": prefixes}


def resolve_prompt_format(cfg: AlignConfig) -> str:
    """``cfg.prompt_format`` with ``auto`` resolved: sequence for a model built by ``sidrec model init-tiny``."""
    if cfg.prompt_format != "auto":
        return cfg.prompt_format
    return "sequence" if (Path(cfg.model) / "tiny_model.json").is_file() else "instruction"


class AlignStage(Stage[AlignConfig]):
    """SID tokens and SA-Init on the base model, keywords, and the SFT / TS-Align dataset (the module docstring).

    Its inputs are the dataset, the SID table, the semantics folder (sensory values) and the base model, so new
    SIDs upstream redo it even when its own options did not change.
    """

    name = "align"
    outputs = ("model", "dataset", "sid_keywords.json", "sids/sids.json", "stats.json")

    def inputs(self, cfg: AlignConfig) -> dict[str, str | Path | None]:
        from sidrec.sid import SIDS_FILE

        sids = Path(cfg.sids) / SIDS_FILE if Path(cfg.sids).is_dir() else cfg.sids  # by content when hand-made
        return {"data": cfg.data, "sids": sids, "semantics": _semantics_dir(cfg), "model": cfg.model}

    def legacy_view(self, cfg: AlignConfig) -> dict:
        return self.options(cfg)  # before format 2 align hashed its options (paths included) and nothing else

    def run(self, cfg: AlignConfig, out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from sidrec.align.prompts import PromptSettings, describe_model
        from sidrec.align.tokens import add_sid_tokens, sa_init
        from sidrec.align.ts_align import build_align_dataset, describe_dataset
        from sidrec.data import load_data
        from sidrec.sid import SidTable

        data = load_data(cfg.data)
        sid_table = SidTable.load(cfg.sids)
        missing = [i for i in data.item_ids if i not in sid_table.item_index]
        if missing:  # their samples would be dropped, and the model could never recommend them
            raise InputError(f"{len(missing)} of the {len(data.item_ids)} items of {cfg.data} have no SID here "
                             f"(first: {missing[0]!r}): quantize the same data again, or give these items SIDs "
                             "with `sidrec add-items`", sid_table.source)
        keywords = compute_keywords(cfg, data, sid_table)

        check_model_source(cfg.model, "model")
        tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype="auto")
        add_sid_tokens(model, tokenizer, sid_table)
        init_stats = {"initialised": 0, "skipped": len(keywords["tokens"])}
        if cfg.sa_init:
            init_stats = sa_init(model, tokenizer, {t: r["keywords"] for t, r in keywords["tokens"].items()})
        max_history = cfg.max_history or data.stats.get("max_history")
        settings = PromptSettings.for_tokenizer(tokenizer, resolve_prompt_format(cfg), max_history)
        dataset = build_align_dataset(tokenizer, data, sid_table, keywords["prefixes"], cfg.ratios(), max_history,
                                      cfg.valid_samples, cfg.max_train_samples, cfg.seed, settings)
        summary = describe_dataset(dataset)
        for task, n in summary["train"]["per_task"].items():
            log.info("align data: %-16s %7d examples", task, n)
        with torch.no_grad():
            model.save_pretrained(out / "model")
        tokenizer.save_pretrained(out / "model")
        settings.save(out / "model")
        describe_model(out / "model", stage="align", sids=cfg.sids)  # the model folder names its SID table
        dataset.save_to_disk(str(out / "dataset"), num_shards={s: 1 for s in dataset})
        write_json(out / "sid_keywords.json", keywords)
        src = Path(cfg.sids) / "sids.json" if Path(cfg.sids).is_dir() else Path(cfg.sids)
        (out / "sids").mkdir()
        shutil.copyfile(src, out / "sids" / "sids.json")
        if (src.parent / "stats.json").is_file():  # codebook sizes live there
            shutil.copyfile(src.parent / "stats.json", out / "sids" / "stats.json")
        write_json(out / "stats.json", {"sa_init": init_stats, "n_sid_tokens": len(sid_table.tokens()),
                                        "vocab_size": len(tokenizer), "max_history": max_history,
                                        "prompt_format": settings.prompt_format,
                                        "dataset": summary})


def run_align(cfg: AlignConfig) -> Path:
    """Run the align stage into ``cfg.out`` (see the module docstring); returns ``cfg.out``. Skipped when
    ``cfg.out`` holds the outputs of the same options and inputs (``cfg.force`` redoes it)."""
    return run_stage(AlignStage(), cfg)
