"""Every prompt sidrec shows a model is formatted here, and only here (SFT data, decoding, GRPO rollouts).

A prompt is an instruction (one template per task below) wrapped in the model's chat template as a single user
turn with the generation prompt appended (``<|im_start|>assistant\\n`` for ChatML models such as Qwen2.5-Instruct).
A tokenizer without a chat template gets the plain ``"{instruction}\\nResponse:\\n"``. The completion (a SID, a
title, keywords) follows the prompt directly, so training and inference see exactly the same context.

Main task (what decoding and GRPO use)::

    build_prompts(tokenizer, histories, sid_table)          # histories: lists of item ids, oldest first

SID strings in a history are concatenated without separators (``<a_1><b_2><c_3><a_4>...``): every item starts
with a level-``a`` token, and a separator would cost a token per item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from sidrec.sid import SidTable

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


def build_prompts(tokenizer, histories: Sequence[Sequence[str]], sid_table: SidTable, *args,
                  task: Literal["next_sid", "titles_next_sid"] = "next_sid",
                  titles: Mapping[str, str] | None = None, max_history: int | None = None) -> list[str]:
    """Prompts of the next-item task for a batch of histories (lists of item ids, oldest first).

    ``task="next_sid"`` (default; decoding and GRPO) shows the history as SIDs; ``"titles_next_sid"`` shows it as
    titles (``titles``: item id -> title) and is one of TS-Align's item-level tasks. The answer the model should
    produce is ``sid_table.item_sid_string(target)``.

    A whole split can be formatted with ``build_prompts(data, split, tokenizer, sid_table)`` as well (the same as
    :func:`split_prompts`): the first argument is then a prepared dataset (``sidrec.data.CanonicalData``).
    """
    if hasattr(tokenizer, "split") and hasattr(tokenizer, "items"):  # build_prompts(data, split, tokenizer, table)
        return split_prompts(tokenizer, histories, sid_table, *args, max_history=max_history)
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
