"""``sidrec explain``: why an item was recommended to a user.

For each recommended item: the keywords of its SID tokens (from SA-Init's class-based TF-IDF, ``align/
sid_keywords.json``) and the sensory attributes it shares with the items in the user's history
(``semantics/sensory.jsonl``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sidrec.artifacts import read_json
from sidrec.data.store import load_data
from sidrec.errors import InputError
from sidrec.predictions import read_predictions


def load_sensory(path: Path) -> dict[str, dict[str, list[str]]]:
    """``item_id -> {facet: [values]}`` from sensory.jsonl (empty when the file is absent)."""
    from sidrec.semantics.extract import read_sensory_jsonl

    return read_sensory_jsonl(path) if path.is_file() else {}


def token_keywords(path: Path) -> dict[str, list[str]]:
    """SID token -> keywords from sid_keywords.json ({"tokens": {token: {"keywords": [...]}}})."""
    if not path.is_file():
        return {}
    raw = read_json(path)
    tokens = raw.get("tokens", raw)
    return {t: (v.get("keywords", []) if isinstance(v, Mapping) else list(v)) for t, v in tokens.items()}


def item_reasons(item_id: str, sid: str, history: Sequence[str], keywords: Mapping[str, list[str]],
                 sensory: Mapping[str, Mapping[str, list[str]]]) -> dict[str, Any]:
    """Why ``item_id`` (SID string ``sid``, e.g. ``"<a_1><b_2><c_3>"``) fits ``history``: ``token_keywords``
    (up to 6 keywords of each SID token, from :func:`token_keywords`) and ``shared_attributes`` (the sensory
    ``"facet: value"`` pairs it shares with the history's items, from :func:`load_sensory`)."""
    from sidrec.sid import SID_TOKEN_RE

    history_pairs = {(f, v) for item in history for f, vals in sensory.get(item, {}).items() for v in vals}
    pairs = {(f, v) for f, vals in sensory.get(item_id, {}).items() for v in vals}
    tokens = [m.group(0) for m in SID_TOKEN_RE.finditer(sid)]
    return {"token_keywords": {t: list(keywords.get(t, []))[:6] for t in tokens},
            "shared_attributes": sorted(f"{f}: {v}" for f, v in pairs & history_pairs)}


def explain(run_dir: str | Path, user_id: str, split: str = "test", model: str | None = None,
            top: int = 5) -> dict[str, Any]:
    """Explanations for the top recommendations of ``user_id`` in ``split`` by ``model`` (default: the
    generative model's predictions, GRPO if present else SFT)."""
    run = Path(run_dir)
    data = load_data(run / "data")
    samples = data.split(split)
    rows = [r for r, u in enumerate(samples["user_id"]) if u == user_id]
    if not rows:
        raise InputError(f"user {user_id!r} has no sample in the {split} split", run / "data")
    row = rows[-1]
    sample_id = int(samples["sample_id"][row])
    candidates = [model] if model else ["grpo", "sft"]
    pred_file = next((run / "predictions" / f"{m}.jsonl" for m in candidates
                      if (run / "predictions" / f"{m}.jsonl").is_file()), None)
    if pred_file is None:
        raise InputError(f"no predictions for {candidates} in {run / 'predictions'}")
    pred = next((p for _, p in read_predictions(pred_file) if p.sample_id == sample_id), None)
    if pred is None:
        raise InputError(f"sample {sample_id} of user {user_id!r} is not in the predictions", pred_file)
    if pred.target != samples["target"][row] or (pred.user_id and pred.user_id != user_id):
        raise InputError(f"the prediction for sample {sample_id} has target {pred.target!r}, the {split} split's is "
                         f"{samples['target'][row]!r}: this file holds another split's predictions (decode with "
                         f"--split {split} --out <file> and give --model <its name>)", pred_file)
    sids = read_json(run / "sids" / "sids.json") if (run / "sids" / "sids.json").is_file() else {}
    keywords = token_keywords(run / "align" / "sid_keywords.json")
    sensory = load_sensory(run / "semantics" / "sensory.jsonl")
    titles = dict(zip(data.items["item_id"], data.items["title"]))
    history = list(samples["history"][row])
    items = []
    for rank, item in enumerate(pred.items[:top], start=1):
        sid = "".join(f"<{chr(ord('a') + lvl)}_{c}>" for lvl, c in enumerate(sids.get(item, [])))
        items.append({"rank": rank, "item_id": item, "title": titles.get(item, ""), "sid": sid,
                      **item_reasons(item, sid, history, keywords, sensory), "is_target": item == pred.target})
    return {"user_id": user_id, "split": split, "sample_id": sample_id, "predictions": str(pred_file),
            "history": [{"item_id": i, "title": titles.get(i, "")} for i in history], "recommendations": items}


def format_explanation(result: dict[str, Any]) -> str:
    """Plain-text rendering for the terminal."""
    lines = [f"user {result['user_id']} ({result['split']} sample {result['sample_id']})", "history:"]
    lines += [f"  - {h['title'] or h['item_id']}" for h in result["history"][-5:]]
    lines.append("recommended:")
    for r in result["recommendations"]:
        mark = "  <- held-out next item" if r["is_target"] else ""
        lines.append(f"  {r['rank']}. {r['title'] or r['item_id']} {r['sid']}{mark}")
        for token, kws in r["token_keywords"].items():
            if kws:
                lines.append(f"       {token}: {', '.join(kws)}")
        if r["shared_attributes"]:
            lines.append(f"       shares with your history: {'; '.join(r['shared_attributes'])}")
    return "\n".join(lines)
