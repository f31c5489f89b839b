"""The one predictions format every model writes and the evaluator reads (DESIGN: predictions format).

JSON Lines, one object per evaluation sample::

    {"sample_id": 17, "user_id": "A1B2", "target": "B000123", "items": ["B000777", ...], "scores": [...]}

``items`` is the ranked list, best first, item ids of the canonical item table, no duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sidrec.artifacts import atomic_path, read_jsonl
from sidrec.errors import InputError


@dataclass
class Prediction:
    sample_id: int
    user_id: str
    target: str
    items: list[str]
    scores: list[float] | None = None

    def to_json(self) -> str:
        obj = {"sample_id": int(self.sample_id), "user_id": self.user_id, "target": self.target,
               "items": list(self.items)}
        if self.scores is not None:
            obj["scores"] = [round(float(s), 6) for s in self.scores]
        return json.dumps(obj, ensure_ascii=False)


def write_predictions(path: str | Path, predictions: Iterable[Prediction]) -> int:
    """Write predictions atomically; returns how many were written."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for p in predictions:
            fh.write(p.to_json() + "\n")
            n += 1
    return n


def read_predictions(path: str | Path) -> list[tuple[int, Prediction]]:
    """Read a predictions file; returns ``(line_number, prediction)`` pairs.

    Raises :class:`InputError` naming file and line for invalid JSON, missing or mistyped fields, or duplicate
    items within one ranked list. Cross-checks against the dataset happen in the evaluator.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("predictions file not found", path)
    out = []
    for line_no, obj in read_jsonl(path):
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object", path, line_no)
        for key, kind in (("sample_id", int), ("target", str), ("items", list)):
            if key not in obj:
                raise InputError(f"missing required field '{key}'", path, line_no)
            if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
                raise InputError(f"field '{key}' must be {kind.__name__}", path, line_no)
        items = [str(i) for i in obj["items"]]
        if len(set(items)) != len(items):
            dup = next(i for i in items if items.count(i) > 1)
            raise InputError(f"item {dup!r} appears more than once in 'items'", path, line_no)
        scores = obj.get("scores")
        if scores is not None and (not isinstance(scores, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores)):
            raise InputError("field 'scores' must be a list of numbers", path, line_no)
        if "user_id" in obj and (isinstance(obj["user_id"], bool) or not isinstance(obj["user_id"], (str, int))):
            raise InputError("field 'user_id' must be a string", path, line_no)
        if scores is not None and len(scores) != len(items):
            raise InputError(f"'scores' has {len(scores)} values for {len(items)} items", path, line_no)
        out.append((line_no, Prediction(obj["sample_id"], str(obj.get("user_id", "")), obj["target"], items,
                                        scores)))
    if not out:
        raise InputError("no predictions (empty file)", path)
    return out
