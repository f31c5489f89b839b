"""Every prompt sidrec shows a model is formatted here, and only here (SFT data, decoding, GRPO rollouts).

Two prompt formats for the main (next-item) task, chosen at the align stage and recorded with the model in
``sidrec.json`` beside its weights (:class:`PromptSettings`), so every later stage formats prompts the same way:

- ``sequence`` (default for models sidrec builds itself): a user's history is its SIDs after one fixed prefix
  token (the tokenizer's BOS, else its EOS), ``<|im_end|><a_1><b_2><c_3><a_4>...``. A training example is a
  user's whole training sequence, and the loss covers every SID token, so every next-item position is supervised
  in one causal pass (as SASRec trains; GRID and ActionPiece do the same for SIDs). Decoding continues the
  history with the next SID.
- ``instruction`` (pretrained instruction LLMs; MiniOneRec compatibility): one chat turn per (history, target)
  sample, described below.

The TS-Align tasks always use the instruction templates, so SA-Init and TS-Align keep their meaning in both.

An instruction prompt is an instruction (one template per task below) wrapped in the model's chat template as a single user
turn with the generation prompt appended (``<|im_start|>assistant\\n`` for ChatML models such as Qwen2.5-Instruct).
A tokenizer without a chat template gets the plain ``"{instruction}\\nResponse:\\n"``. The completion (a SID, a
title, keywords) follows the prompt directly, so training and inference see exactly the same context.

Main task (what decoding and GRPO use)::

    build_prompts(tokenizer, histories, sid_table)          # histories: lists of item ids, oldest first

SID strings in a history are concatenated without separators (``<a_1><b_2><c_3><a_4>...``): every item starts
with a level-``a`` token, and a separator would cost a token per item.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from sidrec.errors import InputError
from sidrec.sid import SidTable

PromptFormat = Literal["instruction", "sequence"]
PROMPT_FORMATS: tuple[str, ...] = ("instruction", "sequence")
SETTINGS_FILE = "sidrec.json"

Task = Literal["next_sid", "titles_next_sid", "sid_to_title", "title_to_sid", "prefix_to_text", "text_to_prefix"]
TASKS: tuple[str, ...] = ("next_sid", "titles_next_sid", "sid_to_title", "title_to_sid", "prefix_to_text",
                          "text_to_prefix")

TEMPLATES: dict[str, str] = {
    # main task: history of SIDs -> next SID
    "next_sid": "A user bought these items, oldest first: {history}. Recommend the next item.",
    # item-level alignment (TS-Align): titles <-> SIDs, title history -> next SID
    "titles_next_sid": "A user bought these items, oldest first: {history}. Recommend the next item.",
    "sid_to_title": "What is the title of item {sid}?",
    "title_to_sid": "Which item is titled \"{title}\"?",
    # token-level alignment (TS-Align): a SID prefix <-> its cluster's description and keywords
    "prefix_to_text": "Describe the items whose ID starts with {prefix}.",
    "text_to_prefix": "Which ID prefix groups items described as: {text}",
}
TITLE_SEP = "; "
PLAIN_SUFFIX = "\nResponse:\n"


@dataclass(frozen=True)
class PromptSettings:
    """How a model expects its next-item prompts; saved as ``sidrec.json`` in every model folder sidrec writes.

    ``prompt_format``: ``sequence`` or ``instruction``; ``sequence_prefix``: the token a sequence starts with;
    ``max_history``: most recent history items shown (``None``: all the dataset keeps).
    """

    prompt_format: PromptFormat = "instruction"
    sequence_prefix: str = ""
    max_history: int | None = None

    @classmethod
    def for_tokenizer(cls, tokenizer, prompt_format: PromptFormat, max_history: int | None) -> PromptSettings:
        """Settings of a new model: the sequence prefix is the tokenizer's BOS token, else its EOS token."""
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format: expected one of {PROMPT_FORMATS}, got {prompt_format!r}")
        prefix = tokenizer.bos_token or tokenizer.eos_token or ""
        if prompt_format == "sequence" and not prefix:
            raise ValueError("prompt_format sequence needs a tokenizer with a BOS or EOS token")
        return cls(prompt_format, prefix if prompt_format == "sequence" else "", max_history)

    @classmethod
    def load(cls, model_dir: str | Path) -> PromptSettings | None:
        """The settings saved in ``model_dir``, or ``None`` when it has none (a model sidrec did not align)."""
        path = Path(model_dir) / SETTINGS_FILE
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            settings = cls(**{k: raw[k] for k in ("prompt_format", "sequence_prefix", "max_history") if k in raw})
        except (ValueError, TypeError) as e:
            raise InputError(f"unreadable prompt settings: {e}", path) from None
        if settings.prompt_format not in PROMPT_FORMATS:
            raise InputError(f"prompt_format: expected one of {PROMPT_FORMATS}, got {settings.prompt_format!r}",
                             path)
        return settings

    def save(self, model_dir: str | Path) -> None:
        """Write these settings into ``model_dir/sidrec.json``, keeping what else it records (stage, SID table)."""
        from sidrec.artifacts import write_json

        write_json(Path(model_dir) / SETTINGS_FILE, {**_read_model_json(model_dir), **asdict(self)})


# A model folder describes itself in the same ``sidrec.json``: besides the prompt settings, ``stage`` (align, sft or
# grpo: which stage trained it; decode names its predictions after it) and ``sid_table`` (the SID table it was
# trained with: ``path`` relative to the model folder, its ``sha256``, ``codebook_sizes`` and ``n_items``), so
# ``sidrec decode --model M --data D`` needs no other flag. Folders written before these fields existed lack them;
# the readers below then return None and callers fall back to explicit options.
def _read_model_json(model_dir: str | Path) -> dict:
    path = Path(model_dir) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except ValueError as e:
        raise InputError(f"unreadable model description: {e}", path) from None
    if not isinstance(raw, dict):
        raise InputError("expected a JSON object", path)
    return raw


def _file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe_model(model_dir: str | Path, *, stage: str | None = None, sids: str | Path | None = None) -> None:
    """Record in ``model_dir/sidrec.json`` the ``stage`` that trained the model and the SID table (``RUN/sids``
    folder or a sids.json file) it was trained with. ``model_dir`` may be a temporary sibling of the final folder
    (the relative path is the same)."""
    import os

    from sidrec.artifacts import write_json
    from sidrec.sid import SIDS_FILE, SidTable

    raw = _read_model_json(model_dir)
    if stage is not None:
        raw["stage"] = stage
    if sids is not None:
        file = Path(sids) / SIDS_FILE if Path(sids).is_dir() else Path(sids)
        table = SidTable.load(file)
        raw["sid_table"] = {"path": os.path.relpath(file.resolve(), Path(model_dir).resolve()),
                            "sha256": _file_sha256(file), "codebook_sizes": list(table.codebook_sizes),
                            "n_items": table.n_items}
    write_json(Path(model_dir) / SETTINGS_FILE, raw)


def copy_settings(src_model_dir: str | Path, dst_model_dir: str | Path, stage: str | None = None) -> None:
    """Carry ``sidrec.json`` from a model folder to one trained from it (nothing when the source has none); the
    SID table's path is re-expressed relative to the new folder and ``stage`` (when given) replaces the source's."""
    import os

    from sidrec.artifacts import write_json

    raw = _read_model_json(src_model_dir)
    if not raw:
        return
    table = raw.get("sid_table")
    if isinstance(table, dict) and table.get("path"):
        absolute = (Path(src_model_dir) / table["path"]).resolve()
        raw["sid_table"] = {**table, "path": os.path.relpath(absolute, Path(dst_model_dir).resolve())}
    if stage is not None:
        raw["stage"] = stage
    write_json(Path(dst_model_dir) / SETTINGS_FILE, raw)


def model_stage(model_dir: str | Path) -> str | None:
    """The stage that trained the model in ``model_dir`` (align, sft, grpo), or None for an older folder."""
    stage = _read_model_json(model_dir).get("stage")
    return str(stage) if stage else None


def model_sid_table(model_dir: str | Path) -> Path | None:
    """The sids.json file the model in ``model_dir`` was trained with, or None when its folder does not say.

    Raises :class:`InputError` when the named file is missing; logs a warning when its content changed since
    (items added by ``sidrec add-items`` change it legitimately)."""
    import logging

    table = _read_model_json(model_dir).get("sid_table")
    if not isinstance(table, dict) or not table.get("path"):
        return None
    file = (Path(model_dir) / table["path"]).resolve()
    if not file.is_file():
        raise InputError(f"the SID table this model was trained with ({table['path']}, relative to the model "
                         "folder) is missing; give --sids", Path(model_dir) / SETTINGS_FILE)
    if table.get("sha256") and _file_sha256(file) != table["sha256"]:
        logging.getLogger(__name__).warning("%s changed since the model in %s was trained (sha256 differs)", file,
                                            model_dir)
    return file


def settings_of(tokenizer) -> PromptSettings:
    """The settings saved beside ``tokenizer`` (its ``name_or_path`` folder), else the instruction defaults."""
    folder = getattr(tokenizer, "name_or_path", None)
    path = Path(folder) / SETTINGS_FILE if folder else None
    if path is None or not path.is_file():
        return PromptSettings()
    return _cached_settings(str(path.parent.resolve()), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _cached_settings(folder: str, mtime_ns: int) -> PromptSettings:
    """One read per settings file and version (a server formats prompts on every request)."""
    return PromptSettings.load(folder) or PromptSettings()


def instruction(task: str, **fields: str) -> str:
    """The user message of ``task`` with its fields filled in (``KeyError`` names a missing field)."""
    if task not in TEMPLATES:
        raise ValueError(f"unknown prompt task {task!r}; known: {list(TEMPLATES)}")
    return TEMPLATES[task].format(**fields)


def wrap(tokenizer, instructions: Sequence[str]) -> list[str]:
    """Each instruction as a single user turn through ``tokenizer``'s chat template, generation prompt appended."""
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                              add_generation_prompt=True) for text in instructions]
    return [text + PLAIN_SUFFIX for text in instructions]


def sid_history(history: Sequence[str], sid_table: SidTable, max_history: int | None = None) -> str:
    """The SID string of a history (its last ``max_history`` items), oldest first, no separators. Items without a
    SID are left out (every catalogue item has one when the SIDs were made for this dataset)."""
    items = list(history)[-max_history:] if max_history else list(history)
    known = sid_table.item_index
    return "".join(sid_table.item_sid_string(i) for i in items if i in known)


def title_history(history: Sequence[str], titles: Mapping[str, str], max_history: int | None = None) -> str:
    """The titles of a history (its last ``max_history`` items), oldest first, separated by ``"; "``."""
    items = list(history)[-max_history:] if max_history else list(history)
    return TITLE_SEP.join(titles.get(i) or i for i in items)


def sequence_text(history: Sequence[str], sid_table: SidTable, settings: PromptSettings,
                  max_history: int | None = None) -> str:
    """A history in the ``sequence`` format: the prefix token, then the SIDs of its last ``max_history`` items."""
    return settings.sequence_prefix + sid_history(history, sid_table, max_history)


def build_prompts(tokenizer, histories: Sequence[Sequence[str]], sid_table: SidTable, *args,
                  task: Literal["next_sid", "titles_next_sid"] = "next_sid",
                  titles: Mapping[str, str] | None = None, max_history: int | None = None,
                  settings: PromptSettings | None = None) -> list[str]:
    """Prompts of the next-item task for a batch of histories (lists of item ids, oldest first).

    ``task="next_sid"`` (default; decoding and GRPO) shows the history as SIDs, in the model's prompt format;
    ``"titles_next_sid"`` shows it as titles (``titles``: item id -> title) and is one of TS-Align's item-level
    tasks (always an instruction). The answer the model should produce is ``sid_table.item_sid_string(target)``.

    ``settings`` default to the ``sidrec.json`` beside the tokenizer (:func:`settings_of`); ``max_history``
    defaults to theirs.

    A whole split can be formatted with ``build_prompts(data, split, tokenizer, sid_table)`` as well (the same as
    :func:`split_prompts`): the first argument is then a prepared dataset (``sidrec.data.CanonicalData``).
    """
    if hasattr(tokenizer, "split") and hasattr(tokenizer, "items"):  # build_prompts(data, split, tokenizer, table)
        return split_prompts(tokenizer, histories, sid_table, *args, max_history=max_history)
    settings = settings or settings_of(tokenizer)
    max_history = max_history or settings.max_history
    if task == "next_sid" and settings.prompt_format == "sequence":
        return [sequence_text(h, sid_table, settings, max_history) for h in histories]
    if task == "next_sid":
        texts = [instruction(task, history=sid_history(h, sid_table, max_history)) for h in histories]
    elif task == "titles_next_sid":
        if titles is None:
            raise ValueError("titles_next_sid needs titles (item id -> title)")
        texts = [instruction(task, history=title_history(h, titles, max_history)) for h in histories]
    else:
        raise ValueError(f"build_prompts handles the next-item tasks; use task_prompts for {task!r}")
    return wrap(tokenizer, texts)


def split_prompts(data, split: str, tokenizer, sid_table: SidTable, max_history: int | None = None) -> list[str]:
    """Main-task prompts of every sample of ``split`` of a prepared dataset, in split order."""
    return build_prompts(tokenizer, data.split(split)["history"], sid_table, max_history=max_history)


def task_prompts(tokenizer, task: str, records: Sequence[Mapping[str, str]]) -> list[str]:
    """Prompts of any task from records holding its template's fields (``{"sid": ...}``, ``{"title": ...}``)."""
    return wrap(tokenizer, [instruction(task, **rec) for rec in records])
