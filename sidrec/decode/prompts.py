"""Prompts for ``sidrec decode`` until the align stage provides ``sidrec.align.prompts.build_prompts``.

The align stage owns how prompts look (it trains the model on them). :func:`prompts_for_split` uses
``sidrec.align.prompts.build_prompts(data, split, tokenizer, sid_table)`` when that module exists and falls back to
:func:`fallback_prompts` otherwise.
"""

from __future__ import annotations

import importlib
import logging

from sidrec.sid import SidTable

log = logging.getLogger(__name__)


def fallback_prompts(data, split: str, tokenizer, sid_table: SidTable) -> list[str]:
    """``"User history: <a_1><b_2><c_3>, <a_4><b_5><c_6>. Next item:"`` per sample of ``split``, in split order.

    History items without a SID are skipped (there should be none: every catalogue item gets one).
    """
    histories = data.split(split)["history"]
    known = sid_table.item_index
    return ["User history: " + ", ".join(sid_table.item_sid_string(i) for i in history if i in known)
            + ". Next item:" for history in histories]


def prompts_for_split(data, split: str, tokenizer, sid_table: SidTable) -> list[str]:
    """The align stage's prompts when ``sidrec.align.prompts`` exists, else :func:`fallback_prompts`."""
    try:
        module = importlib.import_module("sidrec.align.prompts")
    except ModuleNotFoundError as e:
        if e.name not in ("sidrec.align", "sidrec.align.prompts"):
            raise
        module = None
    build = getattr(module, "build_prompts", None)
    if build is None:
        log.warning("sidrec.align.prompts.build_prompts not found: using the fallback prompt format")
        return fallback_prompts(data, split, tokenizer, sid_table)
    return list(build(data, split, tokenizer, sid_table))
