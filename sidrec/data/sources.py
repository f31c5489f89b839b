"""Loaders from each supported source layout into one raw form: items, reviews and user sequences.

Every id one input names must exist in the other inputs given (a review's item in the metadata file, a
sequence's item in the item table): otherwise an :class:`InputError` names the file and line; with ``lenient`` the
item is kept with empty metadata and counted (:class:`UnknownIds`, reported in stats.json).

Sources: Amazon 2018 raw (reviews_*.json(.gz) + meta_*.json(.gz), JSON or Python-literal lines), Amazon 2023 raw
(McAuley-Lab jsonl), the MiniOneRec processed layout (its own valid/test split files), the ICLRec/S3Rec sequence
file (``Beauty.txt`` + item titles), and the LC-Rec/LETTER layout (``<Name>.inter.json`` + ``<Name>.item.json``).
"""

from __future__ import annotations

import ast
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidrec.data.readers import ReadReport, identifier, iter_records, number
from sidrec.data.split import Samples, UserSequence
from sidrec.errors import InputError

ITEM_FIELDS = ("item_id", "title", "description", "categories", "brand", "price")


@dataclass
class RawDataset:
    """What a source yields before filtering and splitting.

    ``fixed_splits`` is set only by sources that ship their own split (MiniOneRec); then ``train_sequences``
    holds the interactions a model may train on.
    """

    items: dict[str, dict[str, Any]]
    reviews: list[dict[str, Any]]
    sequences: list[UserSequence]
    fixed_splits: dict[str, Samples] | None = None
    train_sequences: dict[str, list[str]] | None = None
    ground_truth: dict[str, Any] | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unknown_ids: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class UnknownIds:
    """Items that ``path`` names but ``defined_in`` (the item table given with it) lacks.

    :meth:`check` raises :class:`InputError` at the first one unless ``lenient``; then each reference is counted
    and the item gets empty metadata (the counts go to stats.json as ``unknown_ids``).
    """

    path: str
    defined_in: str
    lenient: bool = False
    found_at: list[tuple[int | None, str]] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)

    def check(self, items: dict[str, dict[str, Any]], item_id: str, line: int | None) -> None:
        """Nothing when ``item_id`` is a known item; else raise, or (``lenient``) count it and add it."""
        if item_id in items and item_id not in self.missing:
            return
        if not self.lenient:
            raise InputError(f"item {item_id!r} is not in {self.defined_in}; pass --lenient to keep it with empty "
                             "metadata (counted in stats.json)", self.path, line)
        self.found_at.append((line, item_id))
        self.missing.add(item_id)
        if item_id not in items:
            items[item_id] = {**make_item(item_id), "_where": f"{self.path}:{line}" if line else self.path}

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "defined_in": self.defined_in, "references": len(self.found_at),
                "items": len({i for _, i in self.found_at}),
                "first": [f"line {n}: {i}" if n else i for n, i in self.found_at[:5]]}

    def add_to(self, raw: RawDataset) -> RawDataset:
        """Record the count in ``raw`` (nothing when every id was found)."""
        if self.found_at:
            raw.unknown_ids.append(self.as_dict())
            raw.notes.append(f"{len(self.found_at)} references in {self.path} to items missing from "
                             f"{self.defined_in}, kept with empty metadata (--lenient)")
        return raw


def make_item(item_id: str, title: Any = "", description: Any = "", categories: Any = None, brand: Any = "",
              price: Any = None) -> dict[str, Any]:
    """Normalise one item to the canonical schema (lists joined, prices parsed, whitespace collapsed)."""
    return {"item_id": str(item_id), "title": _text(title), "description": _text(description),
            "categories": _categories(categories), "brand": _text(brand), "price": _price(price)}


def _as_list(value: Any) -> list:
    """A field that should hold a list of texts: a lone string (or number) is one entry, not its characters."""
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(_text(v) for v in value)
    elif isinstance(value, dict):  # e.g. {"en": "..."}: its texts, not its Python repr
        value = " ".join(_text(v) for v in value.values())
    return re.sub(r"\s+", " ", str(value)).strip()


def _brand_of(details: Any) -> Any:
    """The ``Brand`` of an Amazon 2023 ``details`` object (absent when ``details`` is not one)."""
    return details.get("Brand") if isinstance(details, dict) else None


def _categories(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [c.strip() for c in value.split(",") if c.strip()]
    if not isinstance(value, (list, tuple)):  # one scalar category
        return [_text(value)]
    out: list[str] = []
    for v in value:  # 2014 meta nests lists of category paths
        for c in (v if isinstance(v, (list, tuple)) else [v]):
            c = _text(c)
            if c and c not in out:
                out.append(c)
    return out


def _price(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):  # a list or an object is no one price
        return None
    m = re.search(r"\d+(?:[.,]\d+)?", str(value).replace(",", ""))
    return float(m.group(0)) if m else None


def add_item(items: dict[str, dict[str, Any]], item: dict[str, Any], path: str | Path, line: int | None) -> None:
    """Insert ``item``; an identical duplicate is ignored, a conflicting one is an error naming both places."""
    old = items.get(item["item_id"])
    if old is None:
        items[item["item_id"]] = {**item, "_where": f"{path}:{line}" if line else str(path)}
        return
    if {k: old[k] for k in ITEM_FIELDS} != item:
        diff = [k for k in ITEM_FIELDS if old[k] != item[k]]
        raise InputError(f"duplicate item id {item['item_id']!r} with conflicting metadata ({', '.join(diff)}); "
                         f"first defined at {old['_where']}", path, line)


def sequences_from_interactions(rows: list[tuple[str, str, int]]) -> list[UserSequence]:
    """(user, item, timestamp) rows -> chronological sequences; repeated (user, item) pairs keep the first."""
    by_user: dict[str, list[tuple[int, int, str]]] = {}
    for order, (user, item, ts) in enumerate(rows):
        by_user.setdefault(user, []).append((ts, order, item))
    out = []
    for user in sorted(by_user):
        seen: set[str] = set()
        items, stamps = [], []
        for ts, _, item in sorted(by_user[user]):
            if item in seen:
                continue
            seen.add(item)
            items.append(item)
            stamps.append(ts)
        out.append(UserSequence(user, items, stamps))
    return out


def load_amazon2018(reviews: str | Path, meta: str | Path | None, lenient: bool = False) -> RawDataset:
    """Amazon Review Data 2018 (and 2014): reviews with reviewerID/asin/overall/unixReviewTime."""
    report = ReadReport(str(reviews))
    review_rows, interactions, review_lines = [], [], []
    for line, r in iter_records(reviews, lenient, report):
        try:
            user, item = identifier(r, "reviewerID", reviews, line), identifier(r, "asin", reviews, line)
            ts = number(r, "unixReviewTime", reviews, line, int)
            rating = number(r, "overall", reviews, line, float, default=0.0)
        except InputError as e:
            report.skip_or_raise(e, line, lenient)
            continue
        text = " ".join(x for x in (_text(r.get("summary")), _text(r.get("reviewText"))) if x)
        review_rows.append({"user_id": user, "item_id": item, "rating": rating, "text": text, "timestamp": ts})
        interactions.append((user, item, ts))
        review_lines.append(line)
    items: dict[str, dict[str, Any]] = {}
    reports = [report.as_dict()]
    notes = []
    if meta is not None:
        meta_report = ReadReport(str(meta))
        for line, m in iter_records(meta, lenient, meta_report):
            try:
                asin = identifier(m, "asin", meta, line)
            except InputError as e:
                meta_report.skip_or_raise(e, line, lenient)
                continue
            add_item(items, make_item(asin, m.get("title"), m.get("description"),
                                      m.get("category") or m.get("categories"), m.get("brand"), m.get("price")),
                     meta, line)
        reports.append(meta_report.as_dict())
    else:
        notes.append("no metadata file: items have empty titles and descriptions")
    unknown = _items_without_metadata(items, interactions, review_lines, reviews, meta, lenient)
    return unknown.add_to(RawDataset(items, review_rows, sequences_from_interactions(interactions), reports=reports,
                                     notes=notes))


def _items_without_metadata(items: dict[str, dict[str, Any]], interactions: list[tuple[str, str, int]],
                            lines: list[int], reviews: str | Path, meta: str | Path | None,
                            lenient: bool) -> UnknownIds:
    """Reviewed items absent from ``items``: an error (or counted, ``lenient``) when a metadata file was given,
    else every item simply gets empty metadata."""
    unknown = UnknownIds(str(reviews), str(meta), lenient)
    for (_, item, _), line in zip(interactions, lines):
        if meta is not None:
            unknown.check(items, item, line)
        elif item not in items:
            items[item] = {**make_item(item), "_where": str(reviews)}
    return unknown


def load_amazon2023(reviews: str | Path, meta: str | Path | None, lenient: bool = False) -> RawDataset:
    """Amazon Reviews 2023 (McAuley-Lab): reviews keyed by user_id/parent_asin with millisecond timestamps."""
    report = ReadReport(str(reviews))
    review_rows, interactions, review_lines = [], [], []
    for line, r in iter_records(reviews, lenient, report):
        try:
            user = identifier(r, "user_id", reviews, line)
            item = identifier(r, "parent_asin" if r.get("parent_asin") or not r.get("asin") else "asin",
                              reviews, line)
            ts = number(r, "timestamp", reviews, line, int)
            rating = number(r, "rating", reviews, line, float, default=0.0)
        except InputError as e:
            report.skip_or_raise(e, line, lenient)
            continue
        text = " ".join(x for x in (_text(r.get("title")), _text(r.get("text"))) if x)
        review_rows.append({"user_id": user, "item_id": item, "rating": rating, "text": text, "timestamp": ts})
        interactions.append((user, item, ts))
        review_lines.append(line)
    items: dict[str, dict[str, Any]] = {}
    reports = [report.as_dict()]
    if meta is not None:
        meta_report = ReadReport(str(meta))
        for line, m in iter_records(meta, lenient, meta_report):
            try:
                parent_asin = identifier(m, "parent_asin", meta, line)
            except InputError as e:
                meta_report.skip_or_raise(e, line, lenient)
                continue
            description = _as_list(m.get("description")) + _as_list(m.get("features"))
            add_item(items, make_item(parent_asin, m.get("title"), description,
                                      m.get("categories") or ([m["main_category"]] if m.get("main_category") else []),
                                      m.get("store") or _brand_of(m.get("details")), m.get("price")),
                     meta, line)
        reports.append(meta_report.as_dict())
    unknown = _items_without_metadata(items, interactions, review_lines, reviews, meta, lenient)
    return unknown.add_to(RawDataset(items, review_rows, sequences_from_interactions(interactions), reports=reports))


def _literal_list(value: str, path: Path, line: int, column: str) -> list:
    try:
        out = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise InputError(f"column '{column}' is not a Python list literal: {value[:60]!r}", path, line) from None
    if not isinstance(out, list):
        raise InputError(f"column '{column}' should be a list, got {type(out).__name__}", path, line)
    return out


def _minionerec_file(root: Path, split: str, dataset: str) -> Path:
    folder = root / split
    matches = sorted(folder.glob(f"{dataset}*.csv")) if folder.is_dir() else []
    if not matches:
        raise InputError(f"no {split} csv for dataset {dataset!r} (expected {folder}/{dataset}*.csv)")
    return matches[0]


def minionerec_item(item_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    """A canonical item from one entry of a MiniOneRec ``*.item.json`` (its description may be a list written as
    a string)."""
    description = meta.get("description") or ""
    if isinstance(description, str) and description.startswith("["):
        try:
            description = ast.literal_eval(description)
        except (ValueError, SyntaxError):
            pass
    return make_item(item_id, meta.get("title"), description, meta.get("categories"), meta.get("brand"))


def load_minionerec(root: str | Path, dataset: str, max_history: int, lenient: bool = False) -> RawDataset:
    """MiniOneRec's processed layout: ``index/<D>.item.json`` plus ``valid``/``test`` csv files (time split).

    The source's ``train`` csv may be absent; then the training samples are reconstructed from the valid and
    test histories: each user's rows are stitched in file order into one sequence, and every (prefix -> next)
    pair whose next item is not itself a valid or test target becomes a training sample.
    ``sample_id`` of a valid/test sample is its 0-based row in the source file.
    """
    root = Path(root)
    item_file = root / "index" / f"{dataset}.item.json"
    if not item_file.is_file():
        raise InputError(f"item file not found (expected {item_file})")
    try:
        raw_items = json.loads(item_file.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", item_file, e.lineno) from None
    items: dict[str, dict[str, Any]] = {}
    for item_id, meta in _json_object(raw_items, item_file, "item id", "an object of item fields").items():
        items[str(item_id)] = minionerec_item(item_id, meta)
    fixed: dict[str, Samples] = {}
    stitched: dict[str, list[str]] = {}
    first_eval_pos: dict[str, int] = {}
    mismatches = 0
    notes = []
    unknown_ids = []
    for split in ("valid", "test"):
        path = _minionerec_file(root, split, dataset)
        unknown = UnknownIds(str(path), item_file.name, lenient)
        samples = Samples.empty()
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = {"user_id", "history_item_id", "item_id"} - set(reader.fieldnames or [])
            if missing:
                raise InputError(f"missing column(s) {sorted(missing)}", path, 1)
            for row_no, row in enumerate(reader):
                line = row_no + 2
                short = [c for c in ("user_id", "history_item_id", "item_id") if row.get(c) is None]
                if short:
                    given = sum(v is not None for k, v in row.items() if k is not None)
                    raise InputError(f"row has {given} of {len(reader.fieldnames or [])} columns: no value for "
                                     f"{short[0]!r}", path, line)
                history = [str(i) for i in _literal_list(row["history_item_id"], path, line, "history_item_id")]
                target = str(row["item_id"]).strip()
                if not history:
                    raise InputError("empty 'history_item_id': a sample needs at least one item before its target",
                                     path, line)
                for item in history + [target]:
                    unknown.check(items, item, line)
                user = str(row["user_id"])
                samples.sample_id.append(row_no)
                samples.user_id.append(user)
                samples.history.append(history[-max_history:] if max_history > 0 else history)
                samples.target.append(target)
                seq = stitched.get(user)
                if seq is None:
                    stitched[user] = history + [target]
                    first_eval_pos[user] = len(history)
                    continue
                k = min(len(seq), len(history))
                if seq[len(seq) - k:] != history[len(history) - k:]:
                    mismatches += 1
                seq.append(target)
        if not samples.target:
            raise InputError("no samples (a header and no rows)", path)
        fixed[split] = samples
        unknown_ids.append(unknown)
    if mismatches:
        notes.append(f"{mismatches} rows whose history did not continue the user's stitched sequence")
    train = Samples.empty()
    train_sequences: dict[str, list[str]] = {}
    sequences = []
    for user in sorted(stitched):
        seq = stitched[user]
        pre = seq[: first_eval_pos[user]]
        train_sequences[user] = pre
        for t in range(1, len(pre)):
            train.add(user, pre[:t], pre[t], max_history)
        sequences.append(UserSequence(user, seq, list(range(len(seq)))))
    fixed["train"] = train
    notes.append("train split reconstructed from valid/test histories (the source train csv is not used); "
                 "published tables used the full train file")
    raw = RawDataset(items, [], sequences, fixed_splits={k: fixed[k] for k in ("train", "valid", "test")},
                     train_sequences=train_sequences, notes=notes)
    for unknown in unknown_ids:
        unknown.add_to(raw)
    return raw


def load_seqfile(path: str | Path, items_tsv: str | Path | None, lenient: bool = False) -> RawDataset:
    """ICLRec/S3Rec sequence file: one line per user ``user item item ...`` (chronological), plus an optional
    ``item_id<TAB>asin<TAB>title`` table."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    sequences, lines = [], []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise InputError("expected 'user_id item_id [item_id ...]'", path, line_no)
            if parts[0] in first_line:
                raise InputError(f"user {parts[0]!r} has a second line (first at line {first_line[parts[0]]}): "
                                 "one line per user", path, line_no)
            first_line[parts[0]] = line_no
            sequences.append(UserSequence(parts[0], parts[1:], list(range(len(parts) - 1))))
            lines.append(line_no)
    if not sequences:
        raise InputError("no sequences (empty file)", path)
    items: dict[str, dict[str, Any]] = {}
    if items_tsv is not None:
        items_tsv = Path(items_tsv)
        if not items_tsv.is_file():
            raise InputError("file not found", items_tsv)
        with open(items_tsv, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t")
            header = next(reader, None)
            if not header or header[0] != "item_id":
                raise InputError("expected a header 'item_id<TAB>asin<TAB>title'", items_tsv, 1)
            for line_no, row in enumerate(reader, start=2):
                if len(row) < 3 or any(c.strip() for c in row[3:]):
                    raise InputError(f"expected 3 tab-separated columns (item_id, asin, title), got {len(row)}",
                                     items_tsv, line_no)
                add_item(items, make_item(row[0], row[2]), items_tsv, line_no)
    unknown = UnknownIds(str(path), str(items_tsv), lenient)
    for s, line_no in zip(sequences, lines):
        for item in s.item_ids:
            if items_tsv is not None:
                unknown.check(items, item, line_no)
            elif item not in items:
                items[item] = {**make_item(item), "_where": str(path)}
    return unknown.add_to(RawDataset(items, [], sequences))


def load_lcrec(root: str | Path, dataset: str, lenient: bool = False) -> RawDataset:
    """LC-Rec / LETTER layout: ``<D>.inter.json`` {user: [item, ...]} and ``<D>.item.json`` {item: meta}."""
    root = Path(root)
    inter_file, item_file = root / f"{dataset}.inter.json", root / f"{dataset}.item.json"
    loaded, texts = [], []
    for f in (inter_file, item_file):
        if not f.is_file():
            raise InputError("file not found", f)
        texts.append(f.read_text())
        try:
            loaded.append(json.loads(texts[-1]))
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON ({e.msg})", f, e.lineno) from None
    inter = _json_object(loaded[0], inter_file, "user", "a list of item ids", texts[0], list)
    raw_items = _json_object(loaded[1], item_file, "item id", "an object of item fields", texts[1])
    items = {str(k): make_item(k, v.get("title"), v.get("description"), v.get("categories"), v.get("brand"))
             for k, v in raw_items.items()}
    sequences = []
    unknown = UnknownIds(str(inter_file), item_file.name, lenient)
    for user, seq in inter.items():
        bad = [i for i in seq if isinstance(i, bool) or not isinstance(i, (str, int))]
        if bad:
            raise InputError(f"user {user!r}: item id {bad[0]!r} is not a string or an integer", inter_file,
                             _json_key_line(texts[0], str(user)))
        seq = [str(i) for i in seq]
        if any(i not in items or i in unknown.missing for i in seq):
            line = _json_key_line(texts[0], str(user))
            for item in seq:
                unknown.check(items, item, line)
        sequences.append(UserSequence(str(user), seq, list(range(len(seq)))))
    return unknown.add_to(RawDataset(items, [], sequences))


def _json_object(value: Any, path: Path, key: str, entry: str, text: str | None = None,
                 kind: type = dict) -> dict[str, Any]:
    """``value`` (a whole JSON file) checked to be an object whose every value is a ``kind`` (an object or a
    list): else an :class:`InputError` naming the file and, when ``text`` is given, the line of the bad entry."""
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object {{{key}: {entry}}}, got a {type(value).__name__}", path, 1)
    for k, v in value.items():
        if not isinstance(v, kind):
            raise InputError(f"{key} {k!r}: expected {entry}, got {type(v).__name__} {v!r:.60}", path,
                             _json_key_line(text, str(k)) if text else None)
    return value


def _json_key_line(text: str, key: str) -> int | None:
    """The 1-based line of ``"key":`` in a JSON text (for error messages), or None."""
    at = text.find(json.dumps(key) + ":")
    return text.count("\n", 0, at) + 1 if at >= 0 else None
