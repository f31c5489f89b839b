"""Put re-measured baseline rows on an existing results page, each beside the row it re-measures.

A results page (``<page>.json`` / ``<page>.md``, written by ``bench_baselines.py`` or ``bench_pipeline.py``) gets
one section: ``remeasured[<key>]`` in its JSON and a markdown block between two markers in its page (a re-run
replaces both). The page's own rows and keys (``rows``, ``headline_model``, ...) are left as they are. Old and new
rows are the mean ± sample std over seeds of ``scripts/bench_baselines.py --work`` folders (their
``metrics/<model>_<fusion>_s<seed>.json`` records); ``--old page`` takes old rows from a bench_baselines page's
own ``rows`` instead (when the old work folder is gone).

How to run it: ``scripts/bench_remeasure.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sidrec.benchmark import positive_int

GROUPS = ("tail_users", "tail_items")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--page", required=True, help="results page stem: <page>.json and <page>.md must exist")
    p.add_argument("--old", nargs="+", required=True,
                   help="'page' (the page's own bench_baselines rows) or --work folders (a row is taken from the "
                        "first folder that has it)")
    p.add_argument("--new", required=True, help="bench_baselines.py --work folder of the re-measured runs")
    p.add_argument("--models", nargs="+", default=["sasrec", "bsarec"])
    p.add_argument("--fusions", nargs="+", default=["id", "asegr", "llmesr"])
    p.add_argument("--ks", nargs="+", type=positive_int, default=[5, 10, 20], help="cut-offs of the section's table")
    p.add_argument("--key", default="issue19", help="section key in the JSON and in the markdown markers")
    p.add_argument("--title", default="Rows re-measured", help="section heading")
    p.add_argument("--old-label", default="old", help="what the old rows are")
    p.add_argument("--new-label", default="new", help="what the new rows are")
    p.add_argument("--notes", default=None, help="markdown file appended to the section")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads the runs used (bench_baselines.py "
                                                         "--threads), named in the device line")
    return p


def work_rows(folder: Path, models: list[str], fusions: list[str], ks: tuple[int, ...]) -> dict[tuple, dict]:
    """{(model, fusion): row} aggregated over the seeds of a bench_baselines --work folder."""
    from sidrec.benchmark import baselines as bb

    records = [json.loads(p.read_text()) for p in sorted((folder / "metrics").glob("*.json"))]
    records = [r for r in records if r["model"] in models and r.get("fusion") in fusions]
    rows = {(r["model"], r["fusion"]): r for r in bb.aggregate(records, ks)}
    for (model, fusion), row in rows.items():  # the options that define the method, from the first seed's run
        config = next(r["config"] for r in records if (r["model"], r["fusion"]) == (model, fusion))
        row["options"] = {k: v for k, v in config.items()
                          if k == "semantics" or (fusion == "llmesr" and k.startswith("llmesr_"))}
        row["exclude_history"] = sorted({bool(r["config"].get("exclude_history", False)) for r in records
                                         if (r["model"], r["fusion"]) == (model, fusion)})
        row["folder"] = str(folder)
    return rows


def page_rows(page: dict, models: list[str], fusions: list[str]) -> dict[tuple, dict]:
    """{(model, fusion): row} from a bench_baselines page's own ``rows`` list."""
    rows = page.get("rows")
    if not isinstance(rows, list):
        raise SystemExit("--old page: the page's 'rows' is not a bench_baselines row list; give a --work folder")
    return {(r["model"], r["fusion"]): r for r in rows if r["model"] in models and r["fusion"] in fusions}


def _cell(row: dict | None, path: tuple[str, ...]) -> str:
    if row is None:
        return "–"
    stat = row
    for key in path:
        stat = stat.get(key) if isinstance(stat, dict) else None
    if stat is None:
        return "–"
    return f"{stat['mean']:.4f}" + (f" ± {stat['std']:.4f}" if stat.get("std") else "")


def _ranking(section: dict) -> str:
    """The ranking protocol the section's rows were made under (from their runs' configs), a warning when they
    differ, or "ranking protocol not recorded" for rows taken from a page."""
    from sidrec.eval.protocol import describe_ranking

    flags = {f"{p['model']}_{p['fusion']} ({label})": p[label]["exclude_history"] for p in section["rows"]
             for label in ("old", "new") if p[label] and "exclude_history" in p[label]}
    return describe_ranking(flags) if flags else "ranking protocol not recorded"


def markdown(section: dict) -> str:
    ks = section["ks"]
    cols = [("overall", f"{m}@{k}") for m in ("HR", "NDCG") for k in ks] + [("groups", g, "HR@10") for g in GROUPS]
    head = [c[-1] if c[0] == "overall" else f"{c[1]} HR@10" for c in cols]
    lines = [f"<!-- remeasured:{section['key']} -->", f"## {section['title']}", "",
             f"Old: {section['old_label']} (`{section['old']}`). New: {section['new_label']} (`{section['new']}`), "
             f"commit {section['env']['commit']}, {section['env']['device']}, {section['env']['date']}. "
             f"Mean ± sample std over the seeds listed; {_ranking(section)}; tail users / items = all but "
             "the 20% longest-history users / most popular items.", "",
             f"    {section['env']['command']}", "",
             "| model / fusion | rows | seeds | " + " | ".join(head) + " | ΔHR@10 | ΔNDCG@10 |",
             "|---|---|---|" + "---|" * (len(cols) + 2)]
    for pair in section["rows"]:
        old, new = pair["old"], pair["new"]
        versions = [("old", old), ("new", new)] if old and new else \
            [("old (not re-run)", old)] if old else [("new (no old row)", new)]
        for label, row in versions:
            seeds = len(row["seeds"])
            cells = [_cell(row, c) for c in cols]
            delta = ["", ""]
            if label == "new":
                delta = [f"{new['overall'][m]['mean'] - old['overall'][m]['mean']:+.4f}" for m in ("HR@10", "NDCG@10")]
            lines.append(f"| {pair['model']} / {pair['fusion']} | {label} | {seeds} | " + " | ".join(cells)
                         + f" | {delta[0]} | {delta[1]} |")
    options = {f"{p['model']}_{p['fusion']}": p["new"]["options"] for p in section["rows"] if p["new"]}
    if options:
        lines += ["", "New rows' options: " + "; ".join(
            f"`{name}`: " + ", ".join(f"{k}={v}" for k, v in opts.items()) for name, opts in options.items())]
    if section.get("notes"):
        lines += ["", section["notes"].strip()]
    lines.append(f"<!-- /remeasured:{section['key']} -->")
    return "\n".join(lines) + "\n"


def replace_block(text: str, key: str, block: str) -> str:
    """``text`` with the section ``key`` replaced by ``block`` (appended when absent)."""
    start, end = f"<!-- remeasured:{key} -->", f"<!-- /remeasured:{key} -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        return before + block + rest.split(end, 1)[1].lstrip("\n")
    return text.rstrip("\n") + "\n\n" + block


def main(argv: list[str] | None = None) -> dict:
    import shlex

    import torch

    from sidrec.artifacts import write_json, write_text
    from sidrec.benchmark import environment

    args = make_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    json_path, md_path = Path(f"{args.page}.json"), Path(f"{args.page}.md")
    for path in (json_path, md_path):
        if not path.is_file():
            raise SystemExit(f"--page: {path} does not exist")
    page = json.loads(json_path.read_text())
    ks = tuple(sorted(args.ks))
    old: dict[tuple, dict] = {}
    for source in args.old:
        rows = page_rows(page, args.models, args.fusions) if source == "page" else \
            work_rows(Path(source), args.models, args.fusions, ks)
        old = {**rows, **old}
    new = work_rows(Path(args.new), args.models, args.fusions, ks)
    pairs = [{"model": m, "fusion": f, "old": old.get((m, f)), "new": new.get((m, f))}
             for m in args.models for f in args.fusions if (m, f) in old or (m, f) in new]
    env = environment("cpu", dirty_paths=("sidrec/baselines", "sidrec/semantics", "scripts", "sidrec/benchmark",
                                                 "configs/baselines"))
    env["command"] = "python " + shlex.join(sys.argv if argv is None else ["scripts/bench_remeasure.py", *argv])
    section = {"key": args.key, "title": args.title, "old": " ".join(args.old), "new": args.new,
               "old_label": args.old_label, "new_label": args.new_label, "ks": list(ks), "env": env, "rows": pairs,
               "notes": Path(args.notes).read_text() if args.notes else None}
    page.setdefault("remeasured", {})[args.key] = section
    write_json(json_path, page)
    write_text(md_path, replace_block(md_path.read_text(), args.key, markdown(section)))
    for p in pairs:
        for label in ("old", "new"):
            row = p[label]
            if row:
                print(f"{p['model']}_{p['fusion']:7s} {label}: seeds={len(row['seeds'])} "
                      f"HR@10={_cell(row, ('overall', 'HR@10'))} NDCG@10={_cell(row, ('overall', 'NDCG@10'))}")
    return section
