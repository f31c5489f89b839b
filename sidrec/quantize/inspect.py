"""``sidrec sids inspect``: items under a SID prefix and the keywords they share."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import yaml

from sidrec.errors import InputError
from sidrec.quantize.analysis import shared_keywords

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def parse_prefix(prefix: str) -> tuple[int, ...]:
    """``'<a_3><b_1>'`` or ``'3,1'`` or ``'3 1'`` -> ``(3, 1)``."""
    prefix = prefix.strip()
    if not prefix:
        return ()
    tokens = re.findall(r"<([a-z])_(\d+)>", prefix)
    if tokens:
        for level, (letter, _) in enumerate(tokens):
            if letter != _LETTERS[level]:
                raise click_error(f"token {level + 1} of {prefix!r} should be level '{_LETTERS[level]}'")
        return tuple(int(c) for _, c in tokens)
    try:
        return tuple(int(c) for c in re.split(r"[,\s]+", prefix) if c)
    except ValueError:
        raise click_error(f"cannot read prefix {prefix!r}: use '<a_3><b_1>' or '3,1'") from None


def click_error(message: str) -> InputError:
    return InputError(message)


def _item_texts(sids_dir: Path, data_dir: str | None) -> dict[str, str]:
    given = data_dir is not None
    if data_dir is None:
        cfg_path = sids_dir / "config.yaml"
        cfg = yaml.safe_load(cfg_path.read_text()) if cfg_path.is_file() else {}
        data_dir = cfg.get("data")
        if not data_dir and cfg.get("semantics"):
            marker = Path(cfg["semantics"]) / "_stage.json"
            if marker.is_file():
                data_dir = json.loads(marker.read_text())["config"].get("data")
    if data_dir and given and not Path(data_dir).is_dir():
        raise InputError("--data: not a folder (RUN/data from `sidrec data prepare`)", data_dir)
    if not data_dir or not Path(data_dir).is_dir():
        return {}
    from sidrec.data.store import load_data

    data = load_data(data_dir)
    return {row["item_id"]: row["title"] or row["description"][:80] for row in data.items}


def inspect_prefix(console, sids_dir: str, prefix: str, data_dir: str | None, limit: int) -> None:
    folder = Path(sids_dir)
    sids_path = folder / "sids.json" if folder.is_dir() else folder
    from sidrec.sid import SidTable

    sid_table = SidTable.load(sids_path)  # a malformed file is an error naming it and the item
    table = {item: tuple(int(c) for c in row) for item, row in zip(sid_table.item_ids, sid_table.codes)}
    titles = _item_texts(sids_path.parent, data_dir)
    all_texts = [titles.get(i, "") for i in table]
    want = parse_prefix(prefix)

    def spell(codes: tuple[int, ...]) -> str:
        return "".join(f"<{_LETTERS[lv]}_{c}>" for lv, c in enumerate(codes))

    if not want:
        groups: dict[int, list[str]] = defaultdict(list)
        for item, sid in table.items():
            groups[sid[0]].append(item)
        console.print(f"{len(table)} items, {len(groups)} first-level codes (largest {limit} shown)")
        for code, items in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:limit]:
            kws = shared_keywords([titles.get(i, "") for i in items], all_texts, top=6)
            console.print(f"  {spell((code,)):10s} {len(items):5d} items  " + ", ".join(w for w, _ in kws))
        return
    items = [i for i, sid in table.items() if sid[: len(want)] == want]
    if not items:
        raise InputError(f"no item has a SID starting with {spell(want)}", sids_path)
    kws = shared_keywords([titles.get(i, "") for i in items], all_texts, top=10)
    console.print(f"[bold]{spell(want)}[/]: {len(items)} items; shared keywords: "
                  + (", ".join(f"{w} ({share:.0%})" for w, share in kws) or "none"))
    for item in sorted(items, key=lambda i: table[i])[:limit]:
        console.print(f"  {spell(table[item])}  {item}  {titles.get(item, '')[:90]}")
    if len(items) > limit:
        console.print(f"  ... {len(items) - limit} more")
