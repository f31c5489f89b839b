"""Sensory extraction on real text: the offline extractor scored on the hand-labelled development set (issue 19).

Reads ``tests/data/sensory_dev.jsonl`` (guideline beside it) and the texts it points at in ``../shared/data``;
scores ``LexiconExtractor`` per unit (a review, an item's title + description, a title: the mentions found in it)
and per item (``extract_corpus`` over the whole set with ``--min-score`` / ``--max-values``, against the union of
the item's labels). Writes ``benchmarks/results/<name>.{json,md}`` with the device, commit and options; a
``--compare`` JSON written by an earlier run (e.g. at the commit before the extractor changed) is shown beside it.

How to run it: ``scripts/bench_sensory_dev.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import platform
import time
from pathlib import Path

from sidrec.benchmark import ROOT, positive_int


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", default=str(ROOT / "tests/data/sensory_dev.jsonl"), help="label file")
    p.add_argument("--shared-data", default=str(ROOT.parent / "shared/data"), help="folder with the source texts")
    p.add_argument("--min-score", type=float, default=1.0, help="per item: extractor min_score")
    p.add_argument("--max-values", type=positive_int, default=2, help="per item: values kept per facet "
                                                             "(configs/semantics/industrial.yaml uses 2)")
    p.add_argument("--compare", default=str(ROOT / "benchmarks/results/sensory_dev_before.json"),
                   help="an earlier run's JSON shown beside this one (missing: no comparison)")
    p.add_argument("--name", default="sensory_dev", help="output file stem")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results"))
    return p


def _commit() -> str:
    """HEAD, ``+dirty`` when the extractor or this benchmark differ from it."""
    from sidrec.benchmark import git_commit

    return git_commit(("sidrec/semantics", "sidrec/benchmark/sensory_dev.py", "scripts/bench_sensory_dev.py"))


def evaluate(units, min_score: float, max_values: int) -> dict:
    from sidrec.semantics.devset import item_gold, item_texts, score_units, unit_pairs
    from sidrec.semantics.extract import LexiconExtractor

    ex = LexiconExtractor(min_score=min_score, max_values=max_values)
    start = time.perf_counter()
    # A title is read as one (older extractors, scored for the "before" figures, have no such option).
    reads_titles = "title" in inspect.signature(ex.mentions).parameters

    def mentions(u, k: int, text: str) -> list:
        return ex.mentions(text, title=u.kind != "review" and k == 0) if reads_titles else ex.mentions(text)

    per_unit = {u.unit_id: unit_pairs([m for k, t in enumerate(u.texts) for m in mentions(u, k, t)]) for u in units}
    per_item = ex.extract_corpus(item_texts(units))
    wall = time.perf_counter() - start
    out = {"per_unit": score_units(per_unit, {u.unit_id: u.labels for u in units}),
           "per_item": score_units(per_item, item_gold(units)), "wall_s": round(wall, 3), "by_domain": {}}
    for domain in sorted({u.domain for u in units}):
        sub = [u for u in units if u.domain == domain]
        gold_items = item_gold(sub)
        out["by_domain"][domain] = {
            "per_unit": score_units({u.unit_id: per_unit[u.unit_id] for u in sub}, {u.unit_id: u.labels for u in sub}),
            "per_item": score_units({k: per_item.get(k, {}) for k in gold_items}, gold_items)}
    return out


def _row(name: str, s: dict) -> str:
    f, v = s["facet"], s["value"]
    return (f"| {name} | {f['precision']:.3f} | {f['recall']:.3f} | **{f['f1']:.3f}** | {v['precision']:.3f} | "
            f"{v['recall']:.3f} | **{v['f1']:.3f}** |")


def render(result: dict, before: dict | None) -> str:
    r = result["scores"]
    head = ("| scored | facet P | facet R | facet F1 | value P | value R | value F1 |\n"
            "|---|---|---|---|---|---|---|")
    lines = ["# Sensory extraction on the hand-labelled development set (issue 19)", "",
             f"{result['date']}, commit {result['commit']}, {result['device']}. Reproduce: "
             f"`{result['command']}`. Labels: `tests/data/sensory_dev.jsonl` ({result['n_units']} units, "
             f"{result['n_pairs']} labelled pairs; guideline `tests/data/sensory_dev_guideline.md`), texts read from "
             "`../shared/data`. Extractor: `LexiconExtractor` (offline); per item with "
             f"min_score {result['config']['min_score']}, max_values {result['config']['max_values']}.", "",
             "Value match: same facet and equal strings, one containing the other, or a shared content word "
             "(a number and its unit read as one word). Judgement-only values dropped."]
    if before:
        lines += ["", f"'Before' is the extractor as it was at commit {before['commit'].split('+')[0]} (before issue 19), "
                  "scored with this commit's labels and scorer (`git worktree add W "
                  f"{before['commit'].split('+')[0]}`, copy `sidrec/semantics/devset.py`, this script and the labels "
                  "into W, run it there with `--name sensory_dev_before`)."]
        lines += ["", "The extractor's issue-19 changes were made while reading this set's errors: the 'now' rows are "
                  "development-set figures and overstate what to expect on unseen text (the hidden All_Beauty "
                  "review set of issue 19 is the honest check)."]
    lines += ["", head]
    if before:
        b = before["scores"]
        lines += [_row(f"per unit, before ({before['commit']})", b["per_unit"]),
                  _row("per unit, now", r["per_unit"]),
                  _row(f"per item, before ({before['commit']})", b["per_item"]),
                  _row("per item, now", r["per_item"])]
    else:
        lines += [_row("per unit", r["per_unit"]), _row("per item", r["per_item"])]
    lines += ["", "## By domain", "", head]
    for domain, s in r["by_domain"].items():
        for level in ("per_unit", "per_item"):
            prev = before["scores"]["by_domain"].get(domain, {}).get(level) if before else None
            if prev:
                lines.append(_row(f"{domain}, {level.replace('_', ' ')}, before", prev))
            lines.append(_row(f"{domain}, {level.replace('_', ' ')}" + (", now" if prev else ""), s[level]))
    lines += ["", "## Per facet (per unit)", "",
              "| facet | gold | predicted | facet P | facet R | facet F1 | value F1 |" + (" value F1 before |"
                                                                                         if before else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if before else "")]
    for facet, s in r["per_unit"]["per_facet"].items():
        f = s["facet"]
        row = (f"| {facet} | {f['n_gold']} | {f['n_predicted']} | {f['precision']:.3f} | {f['recall']:.3f} | "
               f"{f['f1']:.3f} | {s['value']['f1']:.3f} |")
        if before:
            prev = before["scores"]["per_unit"]["per_facet"].get(facet)
            row += f" {prev['value']['f1']:.3f} |" if prev else " - |"
        lines.append(row)
    errs = r["per_unit"]["errors"]
    n = r["per_unit"]["n_errors"]
    lines += ["", "## Errors left (per unit)", "",
              f"{n['false_facet']} facets predicted that are not labelled, {n['missed_facet']} labelled facets "
              f"missed, {n['wrong_value']} facets right with no matching value. First examples:", ""]
    for u, facet, values in errs["false_facet"]:
        lines.append(f"- false `{facet}: {', '.join(values)}` in {u}")
    for u, facet, values in errs["missed_facet"]:
        lines.append(f"- missed `{facet}: {', '.join(values)}` in {u}")
    for u, facet, pv, gv in errs["wrong_value"]:
        lines.append(f"- `{facet}`: predicted {', '.join(pv)}; labelled {', '.join(gv)} in {u}")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> dict:
    from sidrec.benchmark import write_report
    from sidrec.semantics.devset import load_dev_set

    units = load_dev_set(args.labels, args.shared_data)
    scores = evaluate(units, args.min_score, args.max_values)
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": _commit(),
              "device": f"CPU ({platform.processor() or platform.machine()}), 1 thread",
              "command": "python scripts/bench_sensory_dev.py" + ("" if args.name == "sensory_dev" else
                                                                  f" --name {args.name}"),
              "config": {"min_score": args.min_score, "max_values": args.max_values, "labels": "tests/data/"
                         "sensory_dev.jsonl"},
              "n_units": len(units), "n_pairs": sum(len(v) for u in units for v in u.labels.values()),
              "scores": scores}
    compare = Path(args.compare)
    before = json.loads(compare.read_text()) if args.compare and compare.is_file() and \
        compare.stem != args.name else None
    write_report(args.out, args.name, result, render(result, before))
    for level in ("per_unit", "per_item"):
        s = scores[level]
        print(f"{level}: facet P {s['facet']['precision']:.3f} R {s['facet']['recall']:.3f} F1 "
              f"{s['facet']['f1']:.3f} | value P {s['value']['precision']:.3f} R {s['value']['recall']:.3f} "
              f"F1 {s['value']['f1']:.3f}")
    return result
