"""The hand-labelled sensory development set: loading its texts by reference, and scoring an extractor on it.

``tests/data/sensory_dev.jsonl`` (guideline beside it) labels real texts that stay in ``../shared/data``: each line
names its source file and key, and :func:`load_dev_set` reads the text from there. :func:`score_units` gives
per-facet and overall facet precision / recall / F1 and value precision / recall / F1 under the matching rule of
issue 19 (equal, one contains the other, or a shared content word), with the error examples a benchmark page shows.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidrec.errors import InputError
from sidrec.facets import FACET_NAMES

Pairs = dict[str, list[str]]  # facet -> values
JUDGEMENT_VALUES = frozenset({"pleasant", "unpleasant"})


@dataclass
class DevUnit:
    """One labelled text unit: a review, an item's title + description, or a title."""

    unit_id: str
    domain: str
    kind: str
    item: str
    labels: Pairs
    texts: list[str] = field(default_factory=list)
    note: str = ""


def _musical_reviews(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _industrial_items(path: Path) -> dict[str, dict[str, Any]]:
    return json.loads(path.read_text())


def _beauty_titles(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        return {row["item_id"]: row["title"] or "" for row in csv.DictReader(f, delimiter="\t")}


def _texts(source: Path, kind: str, key: Mapping[str, Any], cache: dict) -> list[str]:
    """The text(s) a label line points at, read with the project's own loaders' conventions."""
    from sidrec.data.sources import _text, minionerec_item

    if source not in cache:
        if not source.is_file():
            raise InputError(f"source text file not found: {source}")
        reader = {"review": _musical_reviews, "item": _industrial_items, "title": _beauty_titles}.get(kind)
        if reader is None:
            raise InputError(f"unknown kind {kind!r} (expected review, item or title)", source)
        cache[source] = reader(source)
    data = cache[source]
    if kind == "review":
        row = data[int(key["line"])]
        if row.get("reviewerID") != key.get("reviewerID") or row.get("asin") != key.get("asin"):
            raise InputError(f"line {key['line']} is not the review {key} the label points at", source)
        return [" ".join(x for x in (_text(row.get("summary")), _text(row.get("reviewText"))) if x)]
    if kind == "item":
        item = minionerec_item(key["item"], data[str(key["item"])])
        return [t for t in (item["title"], item["description"]) if t]
    return [_text(data[str(key["item_id"])])]


def load_dev_set(labels_path: str | Path, shared_data: str | Path) -> list[DevUnit]:
    """Read the label file and the texts it points at under ``shared_data`` (the ``../shared/data`` folder).

    Raises InputError naming the label file and line for a malformed line, an unknown facet or a missing text.
    """
    labels_path, shared_data = Path(labels_path), Path(shared_data)
    cache: dict = {}
    units = []
    for line_no, line in enumerate(labels_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            labels = {str(f): [str(v) for v in vs] for f, vs in obj["labels"].items()}
            bad = [f for f in labels if f not in FACET_NAMES]
            if bad:
                raise InputError(f"unknown facets {bad} (expected {list(FACET_NAMES)})", labels_path, line_no)
            texts = _texts(shared_data / obj["source"], obj["kind"], obj["key"], cache)
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise InputError(f"bad label line ({type(e).__name__}: {e})", labels_path, line_no) from None
        units.append(DevUnit(obj["id"], obj["domain"], obj["kind"], str(obj["item"]), labels, texts,
                             obj.get("note", "")))
    return units


# ---- matching -------------------------------------------------------------------------------------------------------
_UNITS = {
    "in": "in", "inch": "in", "inches": "in", '"': "in", "''": "in", "ft": "ft", "foot": "ft", "feet": "ft",
    "'": "ft", "mm": "mm", "cm": "cm", "m": "m", "meter": "m", "meters": "m", "oz": "oz", "ounce": "oz",
    "ounces": "oz", "fl oz": "floz", "fl. oz": "floz", "fluid ounce": "floz", "fluid ounces": "floz", "ml": "ml",
    "l": "l", "liter": "l", "litre": "l", "g": "g", "gm": "g", "gram": "g", "grams": "g", "kg": "kg", "lb": "lb",
    "lbs": "lb", "pound": "lb", "pounds": "lb", "gal": "gal", "gallon": "gal", "gallons": "gal", "quart": "qt",
    "qt": "qt", "mil": "mil", "gauge": "gauge", "micron": "micron",
}
_UNIT_ALT = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_QUANTITY_RE = re.compile(r"(?<![\w.])(\d*\.?\d+(?:[-/ ]\d+/\d+|/\d+)?)\s*-?\s*(" + _UNIT_ALT + r")(?![a-z])")
_STOP = frozenset("a an the of and or with x in on to for very".split())


def _canonical_tokens(value: str) -> set[str]:
    """Content words of a value; a number and its unit become one word (``18 foot`` -> ``18ft``)."""
    low = re.sub(r"(?<=[\d\"'a-z])\s*[x×*]\s*(?=[\d.])", " x ", value.lower())

    def unit(m: re.Match) -> str:
        number = m.group(1).replace(" ", "-")
        number = "0" + number if number.startswith(".") else number
        return f" {number}{_UNITS[m.group(2)]} "

    low = _QUANTITY_RE.sub(unit, low)
    return {t for t in re.findall(r"[a-z0-9][a-z0-9.\-/]*", low) if t not in _STOP}


def value_matches(predicted: str, gold: str) -> bool:
    """Issue 19's rule: equal, one contains the other, or a shared content word (units read as one word)."""
    p, g = predicted.strip().lower(), gold.strip().lower()
    if not p or not g:
        return False
    if p == g or p in g or g in p:
        return True
    return bool(_canonical_tokens(p) & _canonical_tokens(g))


# ---- scoring --------------------------------------------------------------------------------------------------------
def _prf(tp_pred: int, n_pred: int, tp_gold: int, n_gold: int) -> dict[str, float]:
    precision = tp_pred / n_pred if n_pred else 0.0
    recall = tp_gold / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "n_predicted": n_pred, "n_gold": n_gold}


def _clean(pairs: Mapping[str, Sequence[str]]) -> Pairs:
    return {f: [v for v in vs if v not in JUDGEMENT_VALUES] for f, vs in pairs.items()
            if any(v not in JUDGEMENT_VALUES for v in vs)}


def score_units(predicted: Mapping[str, Mapping[str, Sequence[str]]], gold: Mapping[str, Mapping[str, Sequence[str]]],
                max_examples: int = 12) -> dict[str, Any]:
    """Facet and value precision / recall / F1 of ``predicted`` against ``gold`` (both ``unit -> facet -> values``).

    Returns ``{"facet": {...}, "value": {...}, "per_facet": {facet: {facet P/R/F1, value F1}}, "errors": {...}}``;
    a unit missing from ``predicted`` predicted nothing. A judgement (``pleasant`` / ``unpleasant``) selects its facet
    (it counts in facet scores) but is dropped from both sides before the values are scored.
    """
    facet_counts = defaultdict(lambda: [0, 0, 0])  # facet -> [tp, n_pred, n_gold]
    value_counts = defaultdict(lambda: [0, 0, 0, 0])  # facet -> [matched_pred, n_pred, matched_gold, n_gold]
    errors: dict[str, list] = {"false_facet": [], "missed_facet": [], "wrong_value": []}
    for unit, gold_pairs in gold.items():
        g, p = _clean(gold_pairs), _clean(predicted.get(unit, {}))
        g_facets = {f for f, vs in gold_pairs.items() if vs}
        p_facets = {f for f, vs in predicted.get(unit, {}).items() if vs}
        for facet in sorted(g_facets | p_facets):  # sorted: error examples in the same order in every process
            fc, vc = facet_counts[facet], value_counts[facet]
            fc[0] += facet in g_facets and facet in p_facets
            fc[1] += facet in p_facets
            fc[2] += facet in g_facets
            pv, gv = p.get(facet, []), g.get(facet, [])
            vc[0] += sum(any(value_matches(v, t) for t in gv) for v in pv)
            vc[1] += len(pv)
            vc[2] += sum(any(value_matches(v, t) for v in pv) for t in gv)
            vc[3] += len(gv)
            if facet in p_facets and facet not in g_facets:
                errors["false_facet"].append([unit, facet, list(predicted[unit][facet])])
            elif facet in g_facets and facet not in p_facets:
                errors["missed_facet"].append([unit, facet, list(gold_pairs[facet])])
            elif pv and gv and not any(value_matches(v, t) for v in pv for t in gv):
                errors["wrong_value"].append([unit, facet, pv, gv])
    total_f = [sum(c[i] for c in facet_counts.values()) for i in range(3)]
    total_v = [sum(c[i] for c in value_counts.values()) for i in range(4)]
    per_facet = {}
    for facet in FACET_NAMES:
        fc, vc = facet_counts.get(facet, [0, 0, 0]), value_counts.get(facet, [0, 0, 0, 0])
        if fc[1] or fc[2]:
            per_facet[facet] = {"facet": _prf(fc[0], fc[1], fc[0], fc[2]), "value": _prf(*vc)}
    return {"facet": _prf(total_f[0], total_f[1], total_f[0], total_f[2]), "value": _prf(*total_v),
            "per_facet": per_facet, "n_units": len(gold),
            "errors": {k: v[:max_examples] for k, v in errors.items()},
            "n_errors": {k: len(v) for k, v in errors.items()}}


def unit_pairs(mentions: Sequence[Any]) -> Pairs:
    """A unit's mentions as ``facet -> values`` (first-seen order, no duplicates)."""
    out: Pairs = {}
    for m in mentions:
        values = out.setdefault(m.facet, [])
        if m.value not in values:
            values.append(m.value)
    return out


def item_gold(units: Sequence[DevUnit]) -> dict[str, Pairs]:
    """Per-item gold: the union of the labels of an item's units, keyed ``domain/item``."""
    out: dict[str, Pairs] = defaultdict(dict)
    for u in units:
        pairs = out[f"{u.domain}/{u.item}"]
        for facet, values in u.labels.items():
            for v in values:
                if v not in pairs.setdefault(facet, []):
                    pairs[facet].append(v)
    return dict(out)


def item_texts(units: Sequence[DevUnit]) -> list[Any]:
    """The dev set as :class:`~sidrec.semantics.extract.ItemTexts` (reviews grouped per item), keyed like
    :func:`item_gold`."""
    from sidrec.semantics.extract import ItemTexts

    items: dict[str, ItemTexts] = {}
    for u in units:
        key = f"{u.domain}/{u.item}"
        it = items.setdefault(key, ItemTexts(key))
        if u.kind == "review":
            it.reviews.extend(u.texts)
        else:
            it.title = u.texts[0] if u.texts else ""
            it.description = u.texts[1] if len(u.texts) > 1 else ""
    return list(items.values())


def score_seen_held_out(predicted: Mapping[str, Mapping[str, Sequence[str]]], truth: Mapping[str, Mapping[str, str]],
                        held_out: set[str]) -> dict[str, Any]:
    """The non-circular synthetic check: facet and value scores split by whether the true value is in the
    extractor's lexicon (``seen``) or held out of it (``held_out``).

    Every true (item, facet) pair and every predicted (item, facet) goes to the group of the true value of that
    facet (a predicted facet the item does not have counts against precision of ``all`` only). Per group: facet
    recall (the facet was predicted), value precision / recall / F1 (issue 19's string match). ``all`` adds the
    mean per-item facet Jaccard (ASEGR's facet-selection accuracy).
    """
    from sidrec.semantics.metrics import facet_selection_scores

    groups = {g: [0, 0, 0, 0, 0] for g in ("seen", "held_out", "all")}  # facet hits, pred ok, n pred, gold ok, n gold
    for item, gold in truth.items():
        pred = predicted.get(item, {})
        for facet, values in pred.items():
            values = [v for v in values if v not in JUDGEMENT_VALUES]
            groups["all"][2] += len(values)
            if facet in gold:
                g = "held_out" if gold[facet] in held_out else "seen"
                ok = sum(value_matches(v, gold[facet]) for v in values)
                for name in (g, "all"):
                    groups[name][1] += ok
                groups[g][2] += len(values)
        for facet, value in gold.items():
            g = "held_out" if value in held_out else "seen"
            found = facet in pred
            matched = any(value_matches(v, value) for v in pred.get(facet, ()))
            for name in (g, "all"):
                groups[name][0] += found
                groups[name][3] += matched
                groups[name][4] += 1
    out: dict[str, Any] = {}
    for name, (facet_hits, pred_ok, n_pred, gold_ok, n_gold) in groups.items():
        out[name] = {"facet_recall": round(facet_hits / n_gold, 4) if n_gold else 0.0,
                     "value": _prf(pred_ok, n_pred, gold_ok, n_gold)}
    out["all"]["facet_accuracy"] = round(facet_selection_scores({i: list(a) for i, a in predicted.items()},
                                                                truth)["facet_accuracy"], 4)
    return out
