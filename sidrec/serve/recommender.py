"""A run's generative model, loaded once, recommending for any histories: what ``sidrec recommend`` and
``sidrec serve`` both call.

:class:`Recommender` holds the checkpoint (GRPO's final model, else SFT's), its tokenizer and the run's catalogue
(:class:`Catalogue`: SID table, item rows, explanation sources). :meth:`Recommender.recommend` formats prompts with
:func:`sidrec.align.prompts.build_prompts` and decodes them with :func:`sidrec.decode.recommend` (trie-constrained,
so every answer is a catalogue item). :meth:`Recommender.reload_catalogue` re-reads the catalogue, which is how
items added by ``sidrec add-items`` become servable without retraining: the SID vocabulary is fixed, so the model
can emit their SIDs as they are.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidrec.errors import InputError
from sidrec.serve.catalog import ITEM_FIELDS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Query:
    """One user's request: ``history`` (item ids, oldest first), ``topk`` items wanted, and whether the history's
    own items are left out of the answer."""

    history: tuple[str, ...]
    topk: int = 10
    exclude_history: bool = False


@dataclass
class Catalogue:
    """What a run serves besides the model: the SID table (the decoding trie is built from it), the item rows,
    and the sources of explanations (SID-token keywords, sensory attributes)."""

    sid_table: Any  # sidrec.sid.SidTable
    items: dict[str, dict[str, Any]]  # item_id -> canonical item row
    sid_strings: dict[str, str] = field(default_factory=dict)  # item_id -> "<a_1><b_2><c_3>"
    keywords: dict[str, list[str]] = field(default_factory=dict)  # SID token -> keywords
    sensory: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # item_id -> {facet: [values]}

    @classmethod
    def load(cls, run_dir: str | Path) -> Catalogue:
        """Read ``RUN/sids``, ``RUN/data/items`` and (when present) ``RUN/align/sid_keywords.json`` and
        ``RUN/semantics/sensory.jsonl``. Raises :class:`InputError` naming a missing part."""
        import datasets

        from sidrec.eval.explain import load_sensory, token_keywords
        from sidrec.sid import SidTable

        run = Path(run_dir)
        sid_table = SidTable.load(run / "sids")
        items_dir = run / "data" / "items"
        if not items_dir.is_dir():
            raise InputError("item table not found (run `sidrec data prepare` first)", items_dir)
        datasets.disable_progress_bars()
        rows = {str(r["item_id"]): {k: r.get(k) for k in ITEM_FIELDS}
                for r in datasets.load_from_disk(str(items_dir)).to_list()}
        unknown = [i for i in sid_table.item_ids if i not in rows]
        if unknown:  # a SID with no item behind it: one catalogue or none (`sidrec add-items` writes both)
            raise InputError(f"{len(unknown)} items with SIDs are not in {items_dir} (first: {unknown[0]!r}); add "
                             "new items with `sidrec add-items`, which writes both", sid_table.source)
        return cls(sid_table=sid_table, items=rows,
                   sid_strings={i: sid_table.item_sid_string(i) for i in sid_table.item_ids},
                   keywords=token_keywords(run / "align" / "sid_keywords.json"),
                   sensory=load_sensory(run / "semantics" / "sensory.jsonl"))

    @property
    def n_items(self) -> int:
        return self.sid_table.n_items

    def item(self, item_id: str) -> dict[str, Any] | None:
        """The item's row with its SID, or ``None`` for an item the SID table lacks (it cannot be recommended)."""
        if item_id not in self.sid_strings:
            return None
        row = self.items.get(item_id) or {"item_id": item_id}
        return {**{k: row.get(k) for k in ITEM_FIELDS}, "item_id": item_id, "sid": self.sid_strings[item_id]}

    def why(self, item_id: str, history: Sequence[str]) -> dict[str, Any]:
        """Why ``item_id`` fits ``history``: its SID tokens' keywords and the sensory attributes it shares with
        the history's items (as ``sidrec explain`` reports them)."""
        from sidrec.eval.explain import item_reasons

        return item_reasons(item_id, self.sid_strings.get(item_id, ""), history, self.keywords, self.sensory)


def generative_model_dir(run_dir: str | Path) -> Path:
    """The run's decoding checkpoint: GRPO's final model when it exists, else SFT's."""
    run = Path(run_dir)
    for candidate in (run / "grpo" / "final", run / "sft" / "final"):
        if (candidate / "config.json").is_file():
            return candidate
    raise InputError("no trained generative model (grpo/final or sft/final): run the pipeline first", run)


def history_problems(history: Sequence[Any], catalogue: Catalogue, field_name: str = "history"
                     ) -> list[tuple[str, str]]:
    """Why ``history`` cannot be decoded (empty, or item ids the SID table lacks): ``(field, message)`` pairs
    naming the position (``history[2]``); ``[]`` when it can be."""
    if not history:
        return [(field_name, "empty; give at least one item id")]
    known = catalogue.sid_table.item_index
    unknown = [(i, item) for i, item in enumerate(history) if item not in known]
    return [(f"{field_name}[{i}]", f"unknown item id {item!r} (not in the run's catalogue)")
            for i, item in unknown[:5]]


class Recommender:
    """A run's generative model and catalogue, loaded once (module docstring).

    ``recommend`` may be called from one thread at a time (the server's decode worker); ``reload_catalogue``
    swaps the catalogue in one assignment, so a decode that already started finishes on the catalogue it read.
    """

    def __init__(self, run_dir: str | Path, model, tokenizer, model_dir: Path, backend: str = "torch",
                 beams: int = 20, max_history: int | None = None, device: str = "cpu"):
        self.run_dir = Path(run_dir)
        self.model = model
        self.tokenizer = tokenizer
        self.model_dir = model_dir
        self.backend = backend
        self.beams = beams
        self.max_history = max_history
        self.device = device
        self.catalogue = Catalogue.load(self.run_dir)
        self._check_vocabulary(self.catalogue)
        self._reload_lock = threading.Lock()

    @classmethod
    def load(cls, run_dir: str | Path, model_dir: str | Path | None = None, backend: str = "torch",
             beams: int = 20, device: str = "auto", dtype: str = "auto") -> Recommender:
        """Load the checkpoint (``model_dir``, default :func:`generative_model_dir`) and the run's catalogue.

        ``backend``: ``torch`` (exact beam search), ``hf`` or ``vllm`` (:func:`sidrec.decode.recommend`);
        ``device``: ``auto`` (CUDA when available), ``cpu``, ``cuda:1`` ...; ``dtype``: ``auto`` is bf16 on a GPU,
        float32 on the CPU.
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        run = Path(run_dir)
        path = Path(model_dir) if model_dir else generative_model_dir(run)
        if not (path / "config.json").is_file():
            raise InputError("not a model folder (no config.json)", path)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.padding_side = "left"  # not restored on reload (STACK_NOTES)
        if backend == "vllm":
            from sidrec.decode.vllm_backend import make_llm

            model = make_llm(str(path), dtype=dtype)
        else:
            torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
                dtype, torch.bfloat16 if device.startswith("cuda") else torch.float32)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device).eval()
        stats = run / "align" / "stats.json"
        max_history = json.loads(stats.read_text()).get("max_history") if stats.is_file() else None
        return cls(run, model, tokenizer, path, backend=backend, beams=beams, max_history=max_history,
                   device=device)

    @property
    def model_name(self) -> str:
        """``grpo`` / ``sft`` for a run's own checkpoint (``RUN/<name>/final``), else the folder's name."""
        return self.model_dir.parent.name if self.model_dir.name == "final" else self.model_dir.name

    def _check_vocabulary(self, catalogue: Catalogue) -> None:
        """Fail now, not at the first request, when the tokenizer lacks a SID token of the catalogue."""
        catalogue.sid_table.token_ids(self.tokenizer)

    def reload_catalogue(self) -> tuple[int, int]:
        """Re-read the run's catalogue (after ``sidrec add-items``); returns ``(items before, items now)``.

        The new catalogue is loaded and checked against the tokenizer before it replaces the old one, so a
        failed reload leaves the service answering as before.
        """
        with self._reload_lock:
            new = Catalogue.load(self.run_dir)
            self._check_vocabulary(new)
            before = self.catalogue.n_items
            self.catalogue = new
        log.info("catalogue reloaded: %d -> %d items", before, new.n_items)
        return before, new.n_items

    def recommend(self, queries: Sequence[Query], catalogue: Catalogue | None = None
                  ) -> list[list[tuple[str, float]]]:
        """Top-``topk`` ``(item_id, sid_log_prob)`` for each query, best first.

        Queries share one decode per beam width (``max(beams, topk)``, as ``sidrec recommend`` uses): the widest
        ``topk`` of a group is decoded and each query keeps its own first ``topk``, which is the same list a
        decode of that query alone gives (the last SID level ranks every candidate of the surviving beams).
        ``exclude_history`` asks for as many extra candidates as the history has distinct items, then drops them.
        Raises :class:`InputError` for an empty history or an unknown item id.
        """
        from sidrec.align.prompts import build_prompts
        from sidrec.decode import recommend

        catalogue = catalogue or self.catalogue
        for query in queries:
            found = history_problems(query.history, catalogue)
            if found:
                raise InputError("; ".join(f"{name}: {message}" for name, message in found), self.run_dir)
        results: list[list[tuple[str, float]]] = [[] for _ in queries]
        groups: dict[int, list[int]] = {}
        for i, query in enumerate(queries):
            groups.setdefault(max(self.beams, query.topk), []).append(i)
        for beams, members in groups.items():
            wanted = [queries[i].topk + (len(set(queries[i].history)) if queries[i].exclude_history else 0)
                      for i in members]
            topk = max(wanted) if self.backend == "torch" else min(max(wanted), beams)
            prompts = build_prompts(self.tokenizer, [list(queries[i].history) for i in members],
                                    catalogue.sid_table, max_history=self.max_history)
            ranked = recommend(self.model, self.tokenizer, prompts, catalogue.sid_table, beams=beams, topk=topk,
                               backend=self.backend, batch_size=len(prompts))
            for i, items in zip(members, ranked):
                query = queries[i]
                if query.exclude_history:
                    seen = set(query.history)
                    items = [(item, score) for item, score in items if item not in seen]
                results[i] = items[:query.topk]
        return results


def recommend_for_history(run_dir: str | Path, history: list[str], topk: int = 10, beams: int = 20,
                          model_dir: str | Path | None = None, exclude_history: bool = False
                          ) -> list[tuple[str, float]]:
    """Top-``topk`` ``(item_id, log_prob)`` for one history (item ids, oldest first) by the run's model (loads it:
    for many calls keep a :class:`Recommender`)."""
    if not history:
        raise InputError("empty history: give at least one item id", run_dir)
    recommender = Recommender.load(run_dir, model_dir=model_dir, beams=beams, device="cpu")
    return recommender.recommend([Query(tuple(history), topk, exclude_history)])[0]
