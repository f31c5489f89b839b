"""Benchmark the discriminative baselines: every backbone x fusion mode, several seeds, one shared evaluator.

Each (model, fusion, seed) trains with ``train_baseline`` (configs from ``--config-dir/<model>.yaml``), is scored by
``sidrec.eval.evaluate`` on the test split (HR/NDCG@3/5/10 overall, head/tail items, head/tail users), and the
means over seeds go to ``--results``.json/.md with the device, commit, configs and this command. Popularity and
random rows are added as floors.

Resumable: a finished run (its metrics JSON matches the run's options) is skipped; an interrupted training resumes
from its ``last.pt``. ``--budget-minutes`` stops starting new runs after that long, so each command stays short on
a shared machine; run the same command again until it reports nothing left. One training at a time, one torch
thread by default.

How to run it: ``scripts/bench_baselines.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sidrec.benchmark import positive_int

MODELS = ("sasrec", "bert4rec", "bsarec", "gru4rec")
FUSIONS = ("id", "asegr", "guided", "said", "llmesr")
FLOORS = ("popularity", "random")
DEFAULT_KS = (3, 5, 10)
KS = DEFAULT_KS  # this run's --ks (set by main)
GROUPS = ("head_items", "tail_items", "head_users", "tail_users")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared dataset folder (RUN/data)")
    p.add_argument("--semantics", default=None,
                   help="semantics folder (RUN/semantics); needed by every fusion mode except id")
    p.add_argument("--config-dir", default="configs/baselines", help="folder with <model>.yaml per backbone")
    p.add_argument("--work", required=True, help="where predictions, checkpoints and per-run metrics go")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--fusions", nargs="+", choices=FUSIONS, default=list(FUSIONS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--extra-seeds", nargs="*", default=[],
                   help="model:fusion:seed,seed... runs beyond --seeds (e.g. sasrec:llmesr:1,2)")
    p.add_argument("--seed-plan", choices=("all", "id-and-best"), default="all",
                   help="id-and-best: --seeds for each backbone's id run and its best fusion by valid NDCG@10 "
                        "on the first seed, the first seed only for the rest")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="BaselineConfig overrides for every run (YAML values)")
    p.add_argument("--ks", nargs="+", type=positive_int, default=list(DEFAULT_KS),
                   help="cut-offs of the results table (10 must be one: the group table is @10)")
    p.add_argument("--title", default="Industrial_and_Scientific", help="dataset name in the results page")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="start no new run after this many minutes (rerun the command to continue)")
    p.add_argument("--results", default=None, help="write <results>.json and <results>.md (mean over seeds)")
    p.add_argument("--notes", default=None, help="markdown file appended to the results page (defaults to "
                                                  "<results>_notes.md when it exists)")
    return p


def parse_sets(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
        out[key.replace("-", "_")] = yaml.safe_load(value)
    return out


def run_config(args, model: str, fusion: str, seed: int):
    from sidrec.baselines import BaselineConfig
    from sidrec.config import resolve

    work = Path(args.work)
    name = model if model in FLOORS else f"{model}_{fusion}"
    tag = f"{name}_s{seed}"
    yaml_path = Path(args.config_dir) / f"{model}.yaml"
    overrides = {**parse_sets(args.set), "model": model, "seed": seed, "data": args.data, "device": args.device,
                 "out": str(work / "predictions" / f"{tag}.jsonl"), "checkpoint_dir": str(work / "baselines" / tag)}
    if model not in FLOORS:
        overrides.update(fusion=fusion, semantics=args.semantics)
    else:
        overrides = {k: v for k, v in overrides.items() if k in ("model", "seed", "data", "device", "out",
                                                               "checkpoint_dir")}
    return resolve(BaselineConfig, str(yaml_path) if yaml_path.is_file() else None, overrides,
                   section="baseline"), tag


def cached_record(args, cfg, tag: str, data) -> dict | None:
    """The stored record of a finished run with exactly these options and inputs, else None."""
    from sidrec.baselines.trainer import legacy_fingerprint

    path = Path(args.work) / "metrics" / f"{tag}.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("fingerprint") not in (run_fingerprint(cfg, data), legacy_fingerprint(cfg, data)):
        return None
    if any(f"HR@{k}" not in record["overall"] for k in KS):  # scored at other cut-offs: re-score, no retraining
        from sidrec.artifacts import write_json
        from sidrec.eval import evaluate

        report = evaluate(cfg.out_path(), data, split="test", ks=KS)
        record.update(overall=report["overall"], groups=report["groups"])
        write_json(path, record)
    return record


def run_fingerprint(cfg, data) -> str:
    """The fingerprint a run's record is cached under: its training stage's (options and input digests)."""
    from sidrec.baselines.trainer import BaselineTraining

    return BaselineTraining(data, None).fingerprint(cfg)[0]


def run_one(args, model: str, fusion: str, seed: int, data) -> dict:
    """Train (or skip when done) and evaluate one run; returns its record."""
    from sidrec.artifacts import write_json
    from sidrec.baselines import train_baseline
    from sidrec.eval import evaluate

    cfg, tag = run_config(args, model, fusion, seed)
    record = cached_record(args, cfg, tag, data)
    if record is not None:
        return record
    fingerprint = run_fingerprint(cfg, data)
    metrics_path = Path(args.work) / "metrics" / f"{tag}.json"
    started = time.perf_counter()
    train_baseline(cfg)
    wall = time.perf_counter() - started
    report = evaluate(cfg.out_path(), data, split="test", ks=KS)
    summary = json.loads((cfg.checkpoint_path() / "summary.json").read_text())
    record = {"tag": tag, "model": model, "fusion": fusion if model not in FLOORS else None, "seed": seed,
              "fingerprint": fingerprint, "overall": report["overall"],
              "groups": report["groups"], "n_samples": report["n_samples"],
              "valid": summary.get("best_valid", {}), "best_epoch": summary.get("best_epoch"),
              "epochs_run": summary.get("epochs_run"), "train_seconds": summary.get("train_seconds"),
              "eval_seconds": summary.get("eval_seconds"), "seconds_per_epoch": summary.get("seconds_per_epoch"),
              "trainable_parameters": summary.get("trainable_parameters"), "resumed": summary.get("resumed"),
              "wall_seconds_this_call": round(wall, 1), "stop_reason": summary.get("stop_reason"),
              "config": {k: v for k, v in vars(cfg).items()}}
    write_json(metrics_path, record)
    return record


def planned_runs(args, done: dict) -> list[tuple[str, str, int]]:
    """(model, fusion, seed) in order: floors, every combo on the first seed, then the remaining seeds."""
    first, rest = args.seeds[0], args.seeds[1:]
    runs = [(m, "id", first) for m in FLOORS]
    runs += [(m, f, first) for m in args.models for f in args.fusions]
    for model in args.models:
        for fusion in args.fusions:
            if args.seed_plan == "id-and-best" and fusion not in ("id", best_fusion(model, args, done)):
                continue
            runs += [(model, fusion, s) for s in rest]
    for spec in args.extra_seeds:
        model, fusion, seeds = spec.split(":")
        runs += [(model, fusion, int(s)) for s in seeds.split(",")]
    return list(dict.fromkeys(runs))


def best_fusion(model: str, args, done: dict) -> str | None:
    """The non-id fusion with the best validation NDCG@10 on the first seed (None until all have run)."""
    scores = {}
    for fusion in args.fusions:
        record = done.get((model, fusion, args.seeds[0]))
        if fusion == "id":
            continue
        if record is None:
            return None
        scores[fusion] = record["valid"].get("NDCG@10", 0.0)
    return max(scores, key=scores.get) if scores else None


def aggregate(records: list[dict], ks: tuple[int, ...] | None = None) -> list[dict]:
    """One row per (model, fusion): mean and sample std over seeds (:func:`sidrec.eval.seed_stat`) of every reported
    number, at the cut-offs ``ks`` (default: this run's ``--ks``)."""
    from sidrec.eval.stats import seed_stat as _stat

    ks = ks or KS
    rows: dict[tuple, list[dict]] = {}
    for r in records:
        rows.setdefault((r["model"], r["fusion"]), []).append(r)
    out = []
    for (model, fusion), runs in rows.items():
        out.append({
            "model": model, "fusion": fusion, "seeds": sorted(r["seed"] for r in runs),
            "overall": {f"{m}@{k}": _stat([r["overall"][f"{m}@{k}"] for r in runs]) for m in ("HR", "NDCG")
                        for k in ks},
            "groups": {g: {f"{m}@10": _stat([r["groups"][g][f"{m}@10"] for r in runs]) for m in ("HR", "NDCG")}
                       for g in GROUPS},
            "group_sizes": {g: runs[0]["groups"][g]["n_samples"] for g in GROUPS},
            "valid_NDCG@10": _stat([r["valid"].get("NDCG@10", 0.0) for r in runs]),
            "train_seconds": _stat([r["train_seconds"] or 0.0 for r in runs]),
            "epochs_run": _stat([r["epochs_run"] or 0 for r in runs]),
            "seconds_per_epoch": _stat([r["seconds_per_epoch"] or 0.0 for r in runs]),
            "trainable_parameters": runs[0]["trainable_parameters"]})
    order = {m: i for i, m in enumerate(FLOORS + MODELS)}
    forder = {f: i for i, f in enumerate(FUSIONS)}
    return sorted(out, key=lambda r: (order[r["model"]], forder.get(r["fusion"] or "id", 0)))


def environment(args) -> dict:
    from sidrec.benchmark import environment as env

    out = env(args.device, dirty_paths=("sidrec/baselines", "sidrec/benchmark", "scripts", "configs/baselines"))
    return out | {"command": "python " + " ".join(sys.argv), "title": args.title}


def fmt(stat: dict, digits: int = 4) -> str:
    return f"{stat['mean']:.{digits}f}" + (f" ± {stat['std']:.{digits}f}" if stat["std"] else "")


def to_markdown(rows: list[dict], env: dict, configs: dict, notes: str | None,
                protocol: str = "full ranking over all items") -> str:
    """The results page; ``protocol``: the ranking the runs used (:func:`sidrec.eval.protocol.describe_ranking`)."""
    name = lambda r: r["model"] if r["fusion"] is None else f"{r['model']} / {r['fusion']}"  # noqa: E731
    lines = [f"# Discriminative baselines on {env['title']} (test split, {protocol})", "",
             f"- device: {env['device']}; torch {env['torch']}; commit {env['commit']}; {env['date']}",
             f"- command: `{env['command']}`",
             "- metrics: `sidrec.eval.evaluate` on each run's top-50 list; mean ± sample std over the seeds listed; "
             "head items = top 20% of items by training popularity, head users = top 20% by training-sequence "
             "length (sample counts in the group table)", ""]
    cols = [f"{m}@{k}" for m in ("HR", "NDCG") for k in KS]
    lines += ["## Overall", "", "| model / fusion | seeds | " + " | ".join(cols) + " |",
              "|---|---|" + "---|" * len(cols)]
    for r in rows:
        cells = [fmt(r["overall"][f"{m}@{k}"]) for m in ("HR", "NDCG") for k in KS]
        lines.append(f"| {name(r)} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    sizes = rows[0]["group_sizes"] if rows else {}
    lines += ["", "## Head / tail items and users (@10)", "",
              "| model / fusion | " + " | ".join(f"{g} HR@10 (n={sizes.get(g)}) | {g} NDCG@10" for g in GROUPS) + " |",
              "|---|" + "---|" * (2 * len(GROUPS))]
    for r in rows:
        cells = [fmt(r["groups"][g][f"{m}@10"]) for g in GROUPS for m in ("HR", "NDCG")]
        lines.append(f"| {name(r)} | " + " | ".join(cells) + " |")
    lines += ["", "## Change vs the same backbone's `id` run (mean over seeds)", "",
              "| model / fusion | HR@10 | NDCG@10 | tail-item HR@10 | tail-user HR@10 | head-item HR@10 |",
              "|---|---|---|---|---|---|"]
    base = {r["model"]: r for r in rows if r["fusion"] == "id"}
    for r in rows:
        if r["fusion"] in (None, "id") or r["model"] not in base:
            continue
        b = base[r["model"]]
        deltas = [r["overall"][m]["mean"] - b["overall"][m]["mean"] for m in ("HR@10", "NDCG@10")]
        deltas += [r["groups"][g]["HR@10"]["mean"] - b["groups"][g]["HR@10"]["mean"]
                   for g in ("tail_items", "tail_users", "head_items")]
        lines.append(f"| {name(r)} | " + " | ".join(f"{d:+.4f}" for d in deltas) + " |")
    lines += ["", "## Cost per model (CPU wall time of training incl. per-epoch validation, mean over seeds)", "",
              "| model / fusion | train s | epochs run | s / epoch | trainable params | valid NDCG@10 |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        if r["fusion"] is None:
            continue
        lines.append(f"| {name(r)} | {r['train_seconds']['mean']:.0f} | {r['epochs_run']['mean']:.0f} | "
                     f"{r['seconds_per_epoch']['mean']:.2f} | {r['trainable_parameters']:,} | "
                     f"{fmt(r['valid_NDCG@10'])} |")
    lines += ["", "## Configurations", ""]
    for model, cfg in configs.items():
        lines.append(f"- `{model}`: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def write_results(args, done: dict, pending: list) -> dict:
    """Aggregate the finished runs; write <results>.json/.md when asked. Called after every new run."""
    from sidrec.artifacts import write_json, write_text

    rows = aggregate(list(done.values()))
    result = {"env": environment(args), "complete": not pending, "pending": [list(r) for r in pending],
              "rows": rows, "runs": [{k: v for k, v in r.items() if k != "config"} for r in done.values()]}
    configs = {}
    for model in FLOORS + tuple(args.models):
        cfg, _ = run_config(args, model, "id", args.seeds[0])
        configs[model] = {k: v for k, v in vars(cfg).items()
                          if k not in ("data", "out", "checkpoint_dir", "seed", "semantics", "fusion", "device",
                                       "valid_out", "force", "split", "model")}
    result["configs"] = configs
    if args.results:
        notes_path = Path(args.notes) if args.notes else Path(f"{args.results}_notes.md")
        notes = notes_path.read_text() if notes_path.is_file() else None
        write_json(f"{args.results}.json", result)
        from sidrec.eval.protocol import describe_ranking

        protocol = describe_ranking({r.get("tag", r["model"]): bool((r.get("config") or {}).get("exclude_history", False))
                                     for r in done.values()})
        write_text(f"{args.results}.md", to_markdown(rows, result["env"], configs, notes, protocol))
    return result


def cli(argv: list[str] | None = None) -> dict:
    parser = make_parser()
    args = parser.parse_args(argv)
    fusions = sorted(set(args.fusions) - {"id"})
    if args.semantics is None and fusions:
        parser.error(f"--semantics is required by --fusions {' '.join(fusions)}")
    return main(args)


def main(args: argparse.Namespace) -> dict:
    import logging

    import torch

    from sidrec.data import load_data

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    global KS
    if 10 not in args.ks:
        raise SystemExit("--ks: 10 must be one of the cut-offs (the group table reports @10)")
    KS = tuple(sorted(args.ks))
    torch.set_num_threads(args.threads)
    data = load_data(args.data)
    started = time.perf_counter()
    done: dict[tuple, dict] = {}
    for model, fusion, seed in planned_runs(args, done):  # a bad --set or config fails before any run starts
        run_config(args, model, fusion, seed)
    while True:  # the seed plan can depend on finished runs (best fusion), so re-plan after each run
        todo = [r for r in planned_runs(args, done) if r not in done]
        if not todo:
            break
        model, fusion, seed = todo[0]
        cfg, tag = run_config(args, model, fusion, seed)
        is_cached = cached_record(args, cfg, tag, data) is not None
        if not is_cached and args.budget_minutes is not None and \
                time.perf_counter() - started > 60 * args.budget_minutes:
            print(f"budget reached: {len(todo)} runs left (next: {todo[0]}); run the same command again")
            break
        record = run_one(args, model, fusion, seed, data)
        done[(model, fusion, seed)] = record
        if not is_cached:
            logging.info("%s: test HR@10 %.4f NDCG@10 %.4f tail-item HR@10 %.4f (%.0fs training)", tag,
                         record["overall"]["HR@10"], record["overall"]["NDCG@10"],
                         record["groups"]["tail_items"]["HR@10"], record["train_seconds"] or 0)
            write_results(args, done, [r for r in planned_runs(args, done) if r not in done])
    result = write_results(args, done, todo)
    if args.results:
        print(f"results: {args.results}.json / .md ({'complete' if result['complete'] else 'partial'})")
    for r in result["rows"]:
        label = r["model"] if r["fusion"] is None else f"{r['model']}_{r['fusion']}"
        print(f"{label:18s} seeds={len(r['seeds'])} HR@10={fmt(r['overall']['HR@10'])} "
              f"NDCG@10={fmt(r['overall']['NDCG@10'])} tail-item HR@10={fmt(r['groups']['tail_items']['HR@10'])}")
    return result
