"""Cold-start items for a finished run (``sidrec add-items``).

``add-items`` gives items that were never in the catalogue a SID with the *trained* models -- the semantics stage's
text encoder and sensory student embed them, the quantizer encodes them, a collision is resolved against the SIDs
already taken -- and adds them to the run: ``RUN/sids/sids.json`` (the trie every decoder builds from it then
contains them), the item table ``RUN/data/items`` and ``RUN/semantics/sensory.jsonl`` (for explanations). Nothing
is retrained and the SID vocabulary does not change (the codebooks are fixed), so the fine-tuned LLM can emit the
new SIDs at once. ``RUN/added_items.jsonl`` records what was added.

A running ``sidrec serve`` picks them up on ``POST /reload`` (:meth:`sidrec.serve.Recommender.reload_catalogue`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

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
