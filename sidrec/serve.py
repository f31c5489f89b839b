"""Using a finished run: cold-start items (``sidrec add-items``) and ad-hoc recommendations (``sidrec recommend``).

``add-items`` gives items that were never in the catalogue a SID with the *trained* models -- the semantics stage's
text encoder and sensory student embed them, the quantizer encodes them, a collision is resolved against the SIDs
already taken -- and adds them to the run: ``RUN/sids/sids.json`` (the trie every decoder builds from it then
contains them), the item table ``RUN/data/items`` and ``RUN/semantics/sensory.jsonl`` (for explanations). Nothing
is retrained and the SID vocabulary does not change (the codebooks are fixed), so the fine-tuned LLM can emit the
new SIDs at once. ``RUN/added_items.jsonl`` records what was added.

``recommend`` ranks items for any history (item ids, oldest first) with the run's generative model and the
constrained torch decoder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from sidrec.errors import InputError

log = logging.getLogger(__name__)

ITEM_FIELDS = ("item_id", "title", "description", "categories", "brand", "price")


def read_new_items(path: str | Path) -> list[dict[str, Any]]:
    """Canonical item rows from a JSONL file (``item_id`` and ``title`` required; ``description``, ``brand``,
    ``categories`` (list or ``" > "``-separated string) and ``price`` optional). Errors name the file and line."""
    from sidrec.data.readers import iter_records, require

    rows, seen = [], {}
    for line, rec in iter_records(path):
        require(rec, ("item_id", "title"), path, line)
        item = str(rec["item_id"])
        if item in seen:
            raise InputError(f"item_id {item!r} repeats line {seen[item]}", path, line)
        seen[item] = line
        cats = rec.get("categories") or []
        if isinstance(cats, str):
            cats = [c.strip() for c in cats.split(">") if c.strip()]
        if not isinstance(cats, list):
            raise InputError(f"categories: expected a list or a string, got {type(cats).__name__}", path, line)
        price = rec.get("price")
        try:
            price = None if price in (None, "") else float(price)
        except (TypeError, ValueError):
            raise InputError(f"price: not a number ({price!r})", path, line) from None
        rows.append({"item_id": item, "title": str(rec["title"]), "description": str(rec.get("description") or ""),
                     "categories": [str(c) for c in cats], "brand": str(rec.get("brand") or ""), "price": price})
    return rows


def add_items(run_dir: str | Path, items_file: str | Path) -> dict[str, list[int]]:
    """Give the items of ``items_file`` SIDs in run ``run_dir`` and make them recommendable (module docstring).

    Returns ``{item_id: codes}`` of the new items. Raises :class:`InputError` when an item is already in the
    catalogue (nothing is changed then) or a stage the cold start needs has not run.
    """
    import datasets
    import numpy as np

    from sidrec.artifacts import atomic_dir, write_json, write_text
    from sidrec.data.store import ITEM_FEATURES, load_data
    from sidrec.quantize import assign_sids
    from sidrec.semantics import embed_new_items

    run = Path(run_dir)
    for part in ("data", "semantics", "sids/sids.json"):
        if not (run / part).exists():
            raise InputError(f"{part} not found: run the pipeline up to the quantize stage first", run)
    rows = read_new_items(items_file)
    data = load_data(run / "data")
    sids_path = run / "sids" / "sids.json"
    table = json.loads(sids_path.read_text())
    known = set(data.item_ids) | set(table)
    clash = [r["item_id"] for r in rows if r["item_id"] in known]
    if clash:
        raise InputError(f"{len(clash)} item(s) are already in the catalogue: {clash[:5]}", items_file)

    emb, attrs = embed_new_items(run / "semantics", rows)
    codes = assign_sids(run / "sids", np.asarray(emb))
    new = {r["item_id"]: [int(c) for c in sid] for r, sid in zip(rows, codes)}

    # Every file is replaced whole (temp + rename): the item table first, then sensory, then the SIDs, so a run
    # interrupted midway never holds a SID for an item the item table lacks.
    items = data.items.to_list() + [{k: r[k] for k in ITEM_FIELDS} for r in rows]
    with atomic_dir(run / "data" / "items") as tmp:
        datasets.Dataset.from_list(items, features=ITEM_FEATURES).save_to_disk(str(tmp), num_shards=1)
    sensory = run / "semantics" / "sensory.jsonl"
    if sensory.is_file():
        lines = [json.dumps({"item_id": r["item_id"], "attributes": a, "teacher": None, "student": a})
                 for r, a in zip(rows, attrs)]
        write_text(sensory, sensory.read_text().rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    write_json(sids_path, {**table, **new}, indent=None)
    log_path = run / "added_items.jsonl"
    previous = log_path.read_text() if log_path.is_file() else ""
    write_text(log_path, previous + "".join(json.dumps({**r, "sid": new[r["item_id"]], "attributes": a}) + "\n"
                                            for r, a in zip(rows, attrs)))
    log.info("added %d items with SIDs to %s", len(new), run)
    return new


def generative_model_dir(run_dir: str | Path) -> Path:
    """The run's decoding checkpoint: GRPO's final model when it exists, else SFT's."""
    run = Path(run_dir)
    for candidate in (run / "grpo" / "final", run / "sft" / "final"):
        if (candidate / "config.json").is_file():
            return candidate
    raise InputError("no trained generative model (grpo/final or sft/final): run the pipeline first", run)


def recommend_for_history(run_dir: str | Path, history: list[str], topk: int = 10, beams: int = 20,
                          model_dir: str | Path | None = None) -> list[tuple[str, float]]:
    """Top-``topk`` ``(item_id, log_prob)`` for one history (item ids, oldest first) by the run's model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sidrec.align.prompts import build_prompts
    from sidrec.decode import recommend
    from sidrec.sid import SidTable

    run = Path(run_dir)
    if not history:
        raise InputError("empty history: give at least one item id", run)
    sid_table = SidTable.load(run / "sids")
    unknown = [i for i in history if i not in sid_table.item_index]
    if unknown:
        raise InputError(f"unknown item id(s) {unknown[:5]} (not in {run / 'sids' / 'sids.json'})", run)
    path = Path(model_dir) if model_dir else generative_model_dir(run)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    stats = run / "align" / "stats.json"
    max_history = json.loads(stats.read_text()).get("max_history") if stats.is_file() else None
    prompts = build_prompts(tokenizer, [history], sid_table, max_history=max_history)
    return recommend(model, tokenizer, prompts, sid_table, beams=max(beams, topk), topk=topk)[0]


@click.command("add-items")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="run directory (RUN)")
@click.option("--items", "items_file", required=True, type=click.Path(dir_okay=False),
              help="JSONL of new items: item_id, title (required), description, brand, categories, price")
def add_items_command(run_dir: str, items_file: str) -> None:
    """Give new (cold-start) items SIDs with the trained quantizer, no retraining; they can be recommended at once.

    \b
    sidrec add-items --run runs/demo --items new_items.jsonl
    sidrec recommend --run runs/demo --history i0001,i0042 --topk 10
    """
    new = add_items(run_dir, items_file)
    from sidrec.sid import sid_token

    for item, codes in new.items():
        click.echo(f"{item}\t{''.join(sid_token(lvl, c) for lvl, c in enumerate(codes))}")
    click.echo(f"{len(new)} items added to {run_dir}")


@click.command("recommend")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="run directory (RUN)")
@click.option("--history", required=True, help="item ids, oldest first, comma-separated")
@click.option("--topk", default=10, show_default=True, help="items to show")
@click.option("--beams", default=20, show_default=True, help="beam width (>= topk)")
@click.option("--model", "model_dir", default=None, help="checkpoint (default: RUN/grpo/final, else RUN/sft/final)")
def recommend_command(run_dir: str, history: str, topk: int, beams: int, model_dir: str | None) -> None:
    """Recommend the next items for a history with the run's generative model (constrained decoding)."""
    from sidrec.data.store import load_data

    items = [h.strip() for h in history.split(",") if h.strip()]
    ranked = recommend_for_history(run_dir, items, topk=topk, beams=beams, model_dir=model_dir)
    data = load_data(Path(run_dir) / "data")
    titles = dict(zip(data.items["item_id"], data.items["title"]))
    for rank, (item, score) in enumerate(ranked, start=1):
        click.echo(f"{rank:>3}  {item}  {score:8.3f}  {titles.get(item, '')}")


__all__ = ["add_items", "read_new_items", "recommend_for_history"]
