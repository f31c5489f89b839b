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
    import math

    from sidrec.data.readers import identifier, iter_records

    def text(rec: dict, key: str, line: int, required: bool = False) -> str:
        value = rec.get(key)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = " ".join(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise InputError(f"missing required field '{key}'", path, line)
            return ""
        if not isinstance(value, str):
            raise InputError(f"field '{key}' should be text, got {type(value).__name__} {value!r:.60}", path, line)
        return " ".join(value.split())

    rows, seen = [], {}
    for line, rec in iter_records(path, lenient_hint=False):
        item = identifier(rec, "item_id", path, line)
        if item in seen:
            raise InputError(f"item_id {item!r} repeats line {seen[item]}", path, line)
        seen[item] = line
        cats = rec.get("categories") or []
        if isinstance(cats, str):
            cats = [c.strip() for c in cats.split(">") if c.strip()]
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise InputError("field 'categories': expected a list of strings or one ' > '-separated string", path,
                             line)
        price = rec.get("price")
        try:
            price = None if price in (None, "") else float(price)
        except (TypeError, ValueError):
            raise InputError(f"field 'price': not a number ({price!r})", path, line) from None
        if price is not None and (not math.isfinite(price) or price < 0):
            raise InputError(f"field 'price': expected a finite number >= 0, got {price!r}", path, line)
        rows.append({"item_id": item, "title": text(rec, "title", line, required=True),
                     "description": text(rec, "description", line), "categories": cats,
                     "brand": text(rec, "brand", line), "price": price})
    return rows


def add_items(run_dir: str | Path, items_file: str | Path) -> dict[str, list[int]]:
    """Give the items of ``items_file`` SIDs in run ``run_dir`` and make them recommendable (module docstring).

    Returns ``{item_id: codes}`` of the new items. Raises :class:`InputError` when an item is already in the
    catalogue (nothing is changed then) or a stage the cold start needs has not run.
    """
    import datasets
    import numpy as np

    from sidrec.artifacts import atomic_dir, read_json, write_json, write_text
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
    table = read_json(sids_path)
    known = set(data.item_ids) | set(table)
    clash = [r["item_id"] for r in rows if r["item_id"] in known]
    if clash:
        raise InputError(f"{len(clash)} item(s) are already in the catalogue: {clash[:5]}", items_file)

    emb, attrs = embed_new_items(run / "semantics", rows)
    try:
        codes = assign_sids(run / "sids", np.asarray(emb))
    except InputError as e:
        if "no free SID left" not in str(e):
            raise
        raise InputError(f"the SIDs of this run have no room for the {len(rows)} new items ({e}); nothing was "
                         "changed: add fewer items, or quantize again with larger codebooks or collision: "
                         "extra_level and retrain", items_file) from None
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
