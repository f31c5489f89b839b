"""The evaluation protocol a result was made under, in words, and the check that one table has only one.

Two choices change every figure: the split (per-user leave-one-out, or a global time split; the prepared data's
``stats.json`` records it as ``split_protocol``) and the ranking (every item, or the items outside the user's
training history: ``exclude_history`` of ``sidrec decode`` and ``sidrec baseline``). Rows made under different
rankings are not comparable, so a table refuses to mix them (:func:`check_ranking_protocol`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

SPLIT_PROTOCOLS: dict[str, str] = {
    "loo": "per-user leave-one-out",
    "time": "global time-based split (train / valid / test samples cut at two timestamps)"}
ALL_ITEMS = "full ranking over all items"
HISTORY_MASKED = ("full ranking over the items outside the user's training history (history masked, the "
                  "S3Rec / FMLP-Rec / BSARec protocol)")


def split_protocol(data_stats: Mapping) -> str:
    """The split protocol of a prepared dataset (its ``stats.json``) in words; leave-one-out when unrecorded."""
    name = data_stats.get("split_protocol", "loo")
    return SPLIT_PROTOCOLS.get(name, str(name))


def ranking_protocol(exclude_history: bool) -> str:
    """The ranking protocol in words: all items, or the items outside the user's training history."""
    return HISTORY_MASKED if exclude_history else ALL_ITEMS


def check_ranking_protocol(exclude_history: Mapping[str, bool | Iterable[bool]], expected: bool | None = None) -> bool:
    """The one ``exclude_history`` setting shared by every model (and all seeds of each) in ``exclude_history``
    (``{model: flag or flags}``), or ``expected`` when given. Raises ValueError naming the models that differ."""
    flags = {name: sorted({bool(f) for f in ([v] if isinstance(v, bool) else v)})
             for name, v in exclude_history.items()}
    if expected is None:
        seen = sorted({f for v in flags.values() for f in v})
        if len(seen) <= 1:
            return seen[0] if seen else False
        expected = next(iter(flags.values()))[0]
    odd = {name: v for name, v in flags.items() if v != [bool(expected)]}
    if odd:
        raise ValueError("; ".join(f"{name} was ranked with exclude_history {v}" for name, v in odd.items())
                         + f", not {bool(expected)}: one table needs one ranking protocol")
    return bool(expected)


def describe_ranking(exclude_history: Mapping[str, bool | Iterable[bool]]) -> str:
    """:func:`ranking_protocol` of the one setting shared by every model in ``exclude_history`` (``{model: flag or
    flags}``), or a bold warning naming the models that differ (a page is still written, but says so)."""
    try:
        return ranking_protocol(check_ranking_protocol(exclude_history))
    except ValueError as err:
        return f"**mixed ranking protocols, these rows are not comparable**: {err}"


def predictions_exclude_history(path: str | Path, run_dir: str | Path | None = None) -> bool | None:
    """The ``exclude_history`` a predictions file was made with: from ``sidrec decode``'s marker
    (``<file>.config.json``) or a baseline's ``RUN/baselines/<stem>/summary.json``; None when neither records it."""
    from sidrec.stage import file_marker

    path = Path(path)
    candidates = [(file_marker(path), "config")]
    if run_dir is not None:
        candidates.append((Path(run_dir) / "baselines" / path.stem / "summary.json", "config"))
    for file, key in candidates:
        try:
            config = json.loads(file.read_text()).get(key) or {}
        except (OSError, ValueError):
            continue
        if "exclude_history" in config:
            return bool(config["exclude_history"])
    return None
