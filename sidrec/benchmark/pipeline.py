"""Benchmark one dataset end to end: the generative pipeline and its ablations beside the baselines, in one table.

The pipeline config (e.g. ``configs/scientific.yaml``) is run as written (``full``: SFT, then GRPO) and once per
ablation, each changing one thing from it and stopping after SFT. The arms are data, not code: named override sets
in ``configs/variants/ablations.yaml`` (``--variants-file`` takes another; :mod:`sidrec.benchmark.variants` reads
and checks it). The shipped ones:

    full         the config as written; gives the rows "SFT+GRPO" and "SFT" (the GRPO on/off ablation)
    text_sids    SIDs quantized from the text embedding alone (no sensory part): the SID-source ablation
    no_sa_init   SID token embeddings keep the resizer's init instead of SA-Init
    no_ts_align  the main next-SID task only, without the TS-Align / item-level alignment tasks
    no_item_head (opt-in) SFT without the item head's loss (sft.item_loss 0), ranked by the SID log-prob alone
    item_loss3   (opt-in) the item head's loss at weight 3
    ts_align     (opt-in) the TS-Align / item-level alignment tasks on: the TS-Align arm of configs that train
                 the main task only (the CPU configs)
    more_data    (opt-in) twice align.max_train_samples (the alignment tasks scale with it): more data
    rq_kmeans    (opt-in) faiss residual k-means SIDs, colliding items reassigned (same embedding, levels, codes)
    dedup_level  (opt-in) RQ-VAE SIDs, colliding items told apart by a 4th SID level
    reassign     (opt-in) RQ-VAE SIDs, colliding items reassigned to a free last-level code (no 4th level)
    seed2/seed3  (opt-in) the full run with SFT and GRPO seeds config seed + 1 / + 2 (same SIDs and base
                 model): the generative rows then report the mean and sample std over the three seeds

Ablations compare arms at equal optimisation steps: each ablation trains exactly as many steps as the full run's
SFT did (early stopping off, the best validation checkpoint within them kept), so ``full`` trains first.

Ablation runs live in ``RUN/ablations/<name>`` and share the main run's data, semantics, SIDs and base model
through symlinks wherever their options are unchanged, so only what differs is recomputed. Every stage is
resumable (``sidrec pipeline`` markers, trainer checkpoints), so the script can be re-run until it finishes, and
variants can run in separate processes (one per core) after ``full`` has built the base model.

The report scores every generative model and every baseline prediction file found under ``--baselines-work``
(``scripts/bench_baselines.py --work`` folders) with the one evaluator: HR/NDCG@5/10/20 over all items, HR@10 and
NDCG@10 for head/tail items and users, the means over the baseline seeds, paired t-tests of each ablation against
the SFT model and of each baseline against the strongest one, and the ratio of the generative HR@10 to SASRec's.
Items are scored by item id (each prediction names item ids; the SID table is checked to be one-to-one).

How to run it: ``scripts/bench_pipeline.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from sidrec.benchmark.variants import DEFAULT_FILE, Variant, check_overrides, load_variants, set_dotted

KS = (5, 10, 20)
GROUPS = ("head_items", "tail_items", "head_users", "tail_users")
SHARED = (("prepare", "data"), ("semantics", "semantics"), ("quantize", "sids"))

log = logging.getLogger("bench_pipeline")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="pipeline YAML (e.g. configs/scientific.yaml)")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                   help="overrides for every variant, e.g. sft.num_train_epochs=2 model.tiny.hidden_size=128")
    p.add_argument("--variants", nargs="*", default=None,
                   help="variants to train (finished ones are skipped), names from --variants-file; default: those "
                        "it marks default (full text_sids no_sa_init no_ts_align), with ts_align instead of "
                        "no_ts_align when the config trains the main task only")
    p.add_argument("--variants-file", default=str(DEFAULT_FILE),
                   help="YAML file of the ablation arms (a 'variants:' mapping of named overrides)")
    p.add_argument("--report-only", action="store_true", help="train nothing; score what exists")
    p.add_argument("--no-report", action="store_true", help="train only")
    p.add_argument("--baselines-work", nargs="+", default=[], metavar="[LABEL=]DIR",
                   help="scripts/bench_baselines.py --work folders: their predictions are scored beside the LLM; "
                        "rows from a LABEL=DIR folder are named 'model (LABEL)' and its popularity/random floors "
                        "are left out (e.g. the same backbone under another training option)")
    p.add_argument("--aim", default=None, help="the target, stated under the HR@10 ratios (e.g. '1.5x SASRec-id')")
    p.add_argument("--name", default=None, help="results stem: pipeline_<name> (default: the config's stem)")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--notes", default=None, help="markdown appended to the results page (default: "
                                                 "<out>/pipeline_<name>_notes.md when it exists)")
    return p


def variants_of(args) -> dict[str, Variant]:
    """The arms of ``args.variants_file`` (read and checked once); SystemExit naming an unknown ``--variants``."""
    key = str(Path(getattr(args, "variants_file", None) or DEFAULT_FILE).resolve())
    if key not in _LOADED:
        _LOADED[key] = load_variants(key)
    found = _LOADED[key]
    unknown = [name for name in (getattr(args, "variants", None) or []) if name not in found]
    if unknown:
        raise SystemExit(f"--variants {' '.join(unknown)}: not in {key} (it has {', '.join(found)})")
    return found


_LOADED: dict[str, dict[str, Variant]] = {}


def labels_of(args) -> dict[str, str]:
    """``{"<variant>/<model>": row name}`` of every arm's decoded models (sft, grpo) that the page shows."""
    return {f"{name}/{model}": label for name, v in variants_of(args).items() for model, label in v.labels.items()}


def parse_sets(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"--set {item!r}: expected SECTION.KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def variant_config(args, name: str, check: bool = False):
    """The PipelineConfig of one variant (the main run's for ``full``) and the main run's folder. ``check``
    resolves every section with the variant's overrides first (an unknown key is an error naming the variants
    file, the variant and the key)."""
    import yaml

    from sidrec.config import resolve
    from sidrec.pipeline import PipelineConfig

    variant = variants_of(args)[name]
    raw = yaml.safe_load(Path(args.config).read_text())
    for key, value in parse_sets(args.set).items():  # --set first, then the variant
        set_dotted(raw, key, value)
    if check:
        check_overrides(variant, raw, args.config)
    tree = variant.apply(raw, args.config)
    main_root = Path(tree.get("run_dir", "runs/demo"))
    if name != "full":
        tree["run_dir"] = str(main_root / "ablations" / name)
        if not variant.seed_repeat:
            # Equal optimisation steps in every arm: an ablation trains exactly as many steps as the full run did
            # (early stopping off; the best validation checkpoint within them is still kept), whether the full
            # run stopped early or ran its epochs (an arm without the alignment tasks has fewer steps per epoch,
            # and a decaying learning-rate schedule spans the same steps).
            summary = main_root / "sft" / "sft_summary.json"
            if not summary.is_file():
                raise SystemExit(f"variant {name}: {summary} not found: train --variants full first (the "
                                 "ablations train as many steps as it did)")
            sft = tree.setdefault("sft", {})
            sft["max_steps"] = int(json.loads(summary.read_text())["global_step"])
            sft["early_stopping_patience"] = None
    return resolve(PipelineConfig, overrides=tree), main_root


def link_shared(main_cfg, cfg) -> None:
    """Symlink the main run's stage outputs (and copy their markers) wherever this variant's hash equals it."""
    from sidrec.pipeline import stage_hashes

    main_root, root = Path(main_cfg.run_dir), Path(cfg.run_dir)
    (root / ".pipeline").mkdir(parents=True, exist_ok=True)
    main_hash, var_hash = stage_hashes(main_cfg), stage_hashes(cfg)
    for stage, folder in SHARED:
        marker = main_root / ".pipeline" / f"{stage}.json"
        if main_hash[stage] != var_hash[stage] or not marker.is_file():
            continue
        link = root / folder
        if not link.exists():
            link.symlink_to((main_root / folder).resolve(), target_is_directory=True)
        shutil.copyfile(marker, root / ".pipeline" / f"{stage}.json")
    if main_cfg.model == cfg.model and not (root / "model").is_symlink() and not (root / "model").exists():
        (root / "model").symlink_to((main_root / "model").resolve(), target_is_directory=True)


def decode_sft_too(cfg) -> Path:
    """When GRPO ran, decode the SFT checkpoint as well (the GRPO-off row), with the pipeline's decode options."""
    from sidrec.config import resolve
    from sidrec.decode import DecodeConfig, run_decode

    root = Path(cfg.run_dir)
    out = root / "predictions" / "sft.jsonl"
    max_history = json.loads((root / "align" / "stats.json").read_text()).get("max_history")
    run_decode(resolve(DecodeConfig, overrides={"max_history": max_history, **cfg.decode,
                                                "model": str(root / "sft" / "final"), "sids": str(root / "sids"),
                                                "data": str(root / "data"),
                                                "split": cfg.evaluate.get("split", "test"), "out": str(out)}))
    return out


def default_variants(cfg, variants: dict[str, Variant]) -> list[str]:
    """The variants marked default, with the TS-Align arm turned around when the config trains the main task
    only."""
    ts_align = cfg.align.get("ts_align", True)
    return [v if ts_align or v != "no_ts_align" else "ts_align" for v, spec in variants.items() if spec.default]


def train(args) -> None:
    import yaml

    from sidrec.pipeline import Run, _model_source, run_pipeline

    variants = variants_of(args)
    main_cfg, _ = variant_config(args, "full")
    if args.variants is None:
        args.variants = default_variants(main_cfg, variants)
    raw = yaml.safe_load(Path(args.config).read_text())
    for key, value in parse_sets(args.set).items():
        set_dotted(raw, key, value)
    for name in args.variants:  # every arm's overrides resolve before the first one trains
        check_overrides(variants[name], raw, args.config)
    for name in args.variants:
        cfg, _ = variant_config(args, name)
        started = time.perf_counter()
        if name == "full":
            run_pipeline(cfg, until="quantize")
            _model_source(Run(cfg))  # the base model every variant shares
            run_pipeline(cfg, until="decode")
            if cfg.grpo.get("enabled", True):
                decode_sft_too(cfg)
        elif variants[name].seed_repeat:
            link_shared(main_cfg, cfg)
            run_pipeline(cfg, until="decode")
            if cfg.grpo.get("enabled", True):
                decode_sft_too(cfg)
        else:
            if not (Path(main_cfg.run_dir) / "model").is_dir():
                raise SystemExit(f"{main_cfg.run_dir}/model not found: run --variants full first (it builds the "
                                 "base model the ablations share)")
            link_shared(main_cfg, cfg)
            run_pipeline(cfg, until="decode")
        log.info("variant %s finished in %.1f min", name, (time.perf_counter() - started) / 60)


def _generative_predictions(args) -> dict[str, tuple[Path, Path]]:
    """{label: (predictions, run root)} of every generative model decoded so far."""
    found = {}
    labels = labels_of(args)
    for name in variants_of(args):
        try:
            cfg, _ = variant_config(args, name)
        except SystemExit:  # an opt-in variant this config cannot express
            continue
        root = Path(cfg.run_dir)
        for model in ("grpo", "sft"):
            path = root / "predictions" / f"{model}.jsonl"
            key = f"{name}/{model}"
            if key in labels and path.is_file():
                found[key] = (path, root)
    return found


def _seed_runs(args) -> dict[str, list[tuple[Path, Path]]]:
    """{"grpo"|"sft": [(predictions, run root)]} of the seed2/seed3 repeats of the full run decoded so far."""
    found: dict[str, list[tuple[Path, Path]]] = {}
    for name in [n for n, v in variants_of(args).items() if v.seed_repeat]:
        root = Path(variant_config(args, name)[0].run_dir)
        for model in ("grpo", "sft"):
            path = root / "predictions" / f"{model}.jsonl"
            if path.is_file():
                found.setdefault(model, []).append((path, root))
    return found


def _sft_cost(root: Path) -> dict[str, Any]:
    """Steps, epochs, time and tokens/s of a run's SFT (its sft_summary.json)."""
    path = root / "sft" / "sft_summary.json"
    sft = json.loads(path.read_text()) if path.is_file() else {}
    return {"run": str(root), **{k: sft.get(k) for k in ("global_step", "epochs", "total_train_seconds",
                                                         "tokens_per_second", "best_metric")}}


def _baseline_predictions(work: Path) -> dict[str, list[tuple[int, Path, dict]]]:
    """{model_fusion: [(seed, predictions, record)]} from a bench_baselines work folder."""
    runs: dict[str, list] = {}
    for metrics in sorted((work / "metrics").glob("*.json")):
        record = json.loads(metrics.read_text())
        pred = work / "predictions" / f"{record['tag']}.jsonl"
        if pred.is_file():
            name = record["model"] if record.get("fusion") is None else f"{record['model']}_{record['fusion']}"
            runs.setdefault(name, []).append((record["seed"], pred, record))
    return runs


FLOORS = ("popularity", "random")


def _baseline_folders(specs: list[str]) -> list[tuple[str | None, Path]]:
    """``--baselines-work`` entries as (label or None, folder); every folder must exist."""
    folders = []
    for spec in specs:
        label, sep, folder = spec.partition("=")
        label, folder = (label, folder) if sep else (None, spec)
        if not Path(folder).is_dir():
            raise SystemExit(f"--baselines-work {spec}: {folder} is not a folder")
        folders.append((label, Path(folder)))
    return folders


def _collect_baselines(specs: list[str]) -> dict[str, tuple[Path, list]]:
    """{row name: (folder, runs)} over the ``--baselines-work`` folders; a LABEL=DIR folder's rows are named
    'model (LABEL)'. The popularity/random floors come from the first folder that has them."""
    found: dict[str, tuple[Path, list]] = {}
    for label, folder in _baseline_folders(specs):
        for name, runs in _baseline_predictions(folder).items():
            if name in FLOORS and (label is not None or name in found):
                continue  # the floors are the same in every folder: the first one found stands
            row = name if label is None else f"{name} ({label})"
            if row in found:
                raise SystemExit(f"--baselines-work: {row} is in both {found[row][0]} and {folder}; "
                                 "give one of them a LABEL= (its rows are then named 'model (LABEL)')")
            found[row] = (folder, runs)
    return found


def _paired_vs_best_baseline(baselines: dict[str, list[Path]], data, split: str) -> dict[str, Any]:
    """Every baseline against the one with the highest mean HR@10 (per-sample metrics averaged over seeds), with a
    paired t-test p-value: tells a real gap between two backbones from test-set noise."""
    import numpy as np

    from sidrec.eval.evaluator import aligned_ranks
    from sidrec.eval.metrics import per_sample_metrics
    from sidrec.eval.stats import paired_delta

    per = {}
    for name, paths in baselines.items():
        seeds = [per_sample_metrics(aligned_ranks(path, data, split)[0], KS) for path in paths]
        per[name] = {m: np.mean([s[m] for s in seeds], axis=0) for m in ("HR@10", "NDCG@10")}
    if len(per) < 2:
        return {}
    best = max(per, key=lambda n: per[n]["HR@10"].mean())
    return {"reference": best, "rows": {name: paired_delta(per[name], per[best]) for name in per if name != best}}


def _check_sids(root: Path) -> dict[str, Any]:
    from sidrec.sid import SidTable

    table = SidTable.load(root / "sids")  # refuses a table in which two items share a SID
    return {"items": table.n_items, "unique_sids": len(table.sid_to_item)}


def _paired_vs_sft(generative: dict, labels: dict[str, str], data, split: str) -> dict[str, dict]:
    """Each generative model's change vs the full SFT model, per metric, with a paired t-test p-value."""
    from sidrec.eval.evaluator import aligned_ranks
    from sidrec.eval.metrics import per_sample_metrics
    from sidrec.eval.stats import paired_delta

    if "full/sft" not in generative:
        return {}
    per = {key: per_sample_metrics(aligned_ranks(path, data, split)[0], KS) for key, (path, _) in generative.items()}
    return {labels[key]: paired_delta(per[key], per["full/sft"]) for key in per if key != "full/sft"}


def report(args) -> dict:
    from sidrec.benchmark import environment, write_report
    from sidrec.data import load_data
    from sidrec.eval import evaluate
    from sidrec.eval.protocol import check_ranking_protocol, ranking_protocol
    from sidrec.eval.stats import mean_over_seeds

    main_cfg, main_root = variant_config(args, "full")
    split = main_cfg.evaluate.get("split", "test")
    exclude_history = bool(main_cfg.decode.get("exclude_history", False))
    data = load_data(main_root / "data")
    rows: dict[str, dict] = {}
    labels = labels_of(args)
    generative = _generative_predictions(args)
    if not generative:
        raise SystemExit(f"no generative predictions under {main_root}: train the variants first")
    details: dict[str, dict] = {}
    seeds = _seed_runs(args)
    for key, (path, root) in generative.items():
        runs = [(path, root)] + (seeds.get(key.split("/")[1], []) if key.startswith("full/") else [])
        rows[labels[key]] = {**mean_over_seeds([evaluate(p, data, split=split, ks=KS) for p, _ in runs]),
                             "kind": "generative", "seeds": len(runs)}
        summary = root / "sft" / "sft_summary.json"
        sft = json.loads(summary.read_text()) if summary.is_file() else {}
        align = json.loads((root / "align" / "stats.json").read_text())
        details[key] = {"label": labels[key], "sids": _check_sids(root), "sid_embedding": variant_config(args, key.split("/")[0])[0].quantize.get("embedding", "item"),
                        "sa_init": align.get("sa_init"), "train_per_task": align["dataset"]["train"]["per_task"],
                        "prompt_format": align.get("prompt_format", "instruction"),
                        "sft": {k: sft.get(k) for k in ("global_step", "train_examples", "train_seconds",
                                                         "total_train_seconds", "tokens_per_second", "n_parameters",
                                                         "total_tokens", "epochs", "best_checkpoint", "best_metric",
                                                         "validation")},
                        "seed_runs": [_sft_cost(r) for _, r in runs[1:]]}
    baselines, baseline_paths = {}, {}
    order = ("sasrec", "bsarec", "gru4rec", "bert4rec", "popularity", "random")
    fusions = ("id", "asegr", "guided", "said", "llmesr")
    found = _collect_baselines(args.baselines_work)

    def rank(name: str) -> tuple:
        base, _, label = name.partition(" (")
        model, _, fusion = base.partition("_")
        return (order.index(model) if model in order else len(order), fusions.index(fusion)
                if fusion in fusions else -1, label, name)

    for name in sorted(found, key=rank):
        folder, runs = found[name]
        try:  # one table, one ranking protocol: the generative model's decode.exclude_history
            check_ranking_protocol({name: [bool((r.get("config") or {}).get("exclude_history", False))
                                           for _, _, r in runs]}, expected=exclude_history)
        except ValueError as err:
            raise SystemExit(f"{folder}: {err} (the generative model's decode.exclude_history)") from None
        reports = [evaluate(path, data, split=split, ks=KS) for _, path, _ in runs]
        rows[name] = {**mean_over_seeds(reports), "kind": "baseline", "seeds": len(runs)}
        baselines[name] = {"folder": str(folder), "seeds": [s for s, _, _ in runs],
                           "valid_ndcg@10": [r["valid"].get("NDCG@10") for _, _, r in runs],
                           "train_seconds": [r.get("train_seconds") for _, _, r in runs],
                           "trainable_parameters": next((r.get("trainable_parameters") for _, _, r in runs
                                                         if r.get("trainable_parameters")), None)}
        if name.partition(" (")[0] not in FLOORS:
            baseline_paths[name] = [path for _, path, _ in runs]
    paired = _paired_vs_sft(generative, labels, data, split)
    paired_baselines = _paired_vs_best_baseline(baseline_paths, data, split)
    best_fusion = {}
    for name in baselines:
        model, _, fusion = name.partition("_")
        if " (" in fusion:  # a labelled folder's row is a variant, not a fusion mode
            continue
        if fusion and fusion != "id":
            score = sum(v or 0 for v in baselines[name]["valid_ndcg@10"]) / len(baselines[name]["valid_ndcg@10"])
            if score > best_fusion.get(model, ("", -1.0))[1]:
                best_fusion[model] = (fusion, score)
    head = labels.get("full/grpo") if labels.get("full/grpo") in rows else next(iter(rows))
    ratio = {}
    for ref in ("sasrec_id", f"sasrec_{best_fusion.get('sasrec', ('',))[0]}", "bsarec_id"):
        if ref in rows:
            ratio[ref] = rows[head]["overall"]["HR@10"] / max(rows[ref]["overall"]["HR@10"], 1e-12)
    protocol = ranking_protocol(exclude_history)
    out = {"benchmark": f"pipeline_{args.name or Path(args.config).stem}", **environment(), "protocol": protocol,
           "command": "python scripts/bench_pipeline.py " + shlex.join(sys.argv[1:]),
           "config": Path(args.config).read_text(), "overrides": args.set, "split": split, "ks": list(KS),
           "data_stats": json.loads((main_root / "data" / "stats.json").read_text()),
           "rows": rows, "generative": details, "baselines": baselines,
           "best_fusion": {m: f for m, (f, _) in best_fusion.items()}, "headline_model": head,
           "hr10_ratio": ratio, "aim": args.aim, "paired_vs_full_sft": paired,
           "paired_vs_best_baseline": paired_baselines}
    notes = Path(args.notes) if args.notes else Path(args.out) / f"{out['benchmark']}_notes.md"
    out["notes"] = notes.read_text() if notes.is_file() else None
    write_report(Path(args.out), out["benchmark"], out, markdown(out))
    print(markdown(out))
    return out


def markdown(r: dict) -> str:
    from sidrec.eval.protocol import ALL_ITEMS, split_protocol

    d = r["data_stats"]
    cols = [f"HR@{k}" for k in r["ks"]] + [f"NDCG@{k}" for k in r["ks"]]
    lines = [f"# {r['benchmark']}: generative pipeline, ablations and baselines ({r['split']} split)", "",
             f"{r['date']}, {r['device']}, commit {r['commit']}, torch {r['torch']}. {d['n_users']} users, "
             f"{d['n_items']} items, {d['samples']['train']} training samples, {d['samples'][r['split']]} "
             f"{r['split']} samples; {split_protocol(d)}, {r.get('protocol', ALL_ITEMS)}, scored by item id.", "",
             f"    {r['command']}", "",
             "| model | seeds | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name, row in r["rows"].items():
        best = " (best fusion)" if any(name == f"{m}_{f}" for m, f in r["best_fusion"].items()) else ""
        cells = []
        for c in cols:
            std = row.get("overall_std", {}).get(c, 0.0) if row["seeds"] > 1 else 0.0
            cells.append(f"{row['overall'][c]:.4f}" + (f" ± {std:.4f}" if std else ""))
        lines.append(f"| {name}{best} | {row['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "HR@10 / NDCG@10 by group (head = the 20% most popular items in training / the 20% of users with "
                  "the longest training sequences):", "",
              "| model | " + " | ".join(f"{g} HR@10 | {g} NDCG@10" for g in GROUPS) + " |",
              "|---|" + "---|---|" * len(GROUPS)]
    for name, row in r["rows"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row['groups'][g]['HR@10']:.4f} | {row['groups'][g]['NDCG@10']:.4f}"
                                               for g in GROUPS) + " |")
    lines.append("")
    for ref, value in r["hr10_ratio"].items():
        lines.append(f"- **HR@10 of {r['headline_model']} / HR@10 of {ref}: {value:.2f}x**")
    if r.get("aim"):
        lines.append(f"- The aim: {r['aim']}.")
    if r.get("paired_vs_full_sft"):
        lines += _paired_table("Each generative variant against the full SFT model (paired t-test over the same "
                               "samples):", r["paired_vs_full_sft"])
    if r.get("paired_vs_best_baseline"):
        v = r["paired_vs_best_baseline"]
        lines += _paired_table(f"Each baseline against the strongest, {v['reference']} (paired t-test over the same "
                               "samples; per-sample metrics averaged over seeds):", v["rows"])
    lines += ["", "Cost of every trained row (2-core CPU unless the header says otherwise):", "",
              "| model | parameters | epochs | wall time (min) | tokens/s |", "|---|---|---|---|---|"]
    for g in r["generative"].values():
        s = g["sft"]
        minutes = (s.get("total_train_seconds") or s.get("train_seconds") or 0) / 60
        epochs = f"{s['epochs']:.1f}" if s.get("epochs") is not None else ""
        rate = _tokens_per_second(s)
        lines.append(f"| {g['label']} | {s.get('n_parameters') or 0:,} | {epochs} | {minutes:.1f} (SFT) | {rate} |")
        for run in g.get("seed_runs", []):
            run_epochs = f"{run['epochs']:.1f}" if run.get("epochs") is not None else ""
            lines.append(f"| {g['label']}, {Path(run['run']).name} | {s.get('n_parameters') or 0:,} | {run_epochs} "
                         f"| {(run.get('total_train_seconds') or 0) / 60:.1f} (SFT) | {run.get('tokens_per_second')} |")
    for name, b in r["baselines"].items():
        seconds = [t for t in b.get("train_seconds", []) if t]
        if seconds:
            lines.append(f"| {name} | {b.get('trainable_parameters') or 0:,} | | "
                         f"{sum(seconds) / len(seconds) / 60:.1f} (mean of {len(seconds)}) | |")
    lines += ["", "Generative models:", ""]
    for g in r["generative"].values():
        s = g["sft"]
        lines.append(f"- {g['label']}: `{g.get('prompt_format', 'instruction')}` prompt format; SIDs from the "
                     f"`{g['sid_embedding']}` embedding, {g['sids']['unique_sids']} "
                     f"unique SIDs for {g['sids']['items']} items; SA-Init {g['sa_init']}; training examples "
                     f"{g['train_per_task']}; SFT {s.get('global_step')} steps, "
                     f"{(s.get('total_train_seconds') or s.get('train_seconds') or 0) / 60:.1f} min, "
                     f"{_tokens_per_second(s)} tokens/s, {s.get('n_parameters')} parameters.")
    if r.get("notes"):
        lines += ["", r["notes"].strip()]
    lines += ["", "Config:", "", "```yaml", r["config"].rstrip(), "```"]
    if r["overrides"]:
        lines.append(f"Overrides: {' '.join(r['overrides'])}")
    return "\n".join(lines) + "\n"


def _tokens_per_second(sft: dict) -> float | None:
    """SFT tokens/s over every attempt of a run (a resumed run's last process alone may have trained one step)."""
    if sft.get("total_tokens") and sft.get("total_train_seconds"):
        return round(sft["total_tokens"] / sft["total_train_seconds"], 1)
    return sft.get("tokens_per_second")


def _paired_table(title: str, rows: dict[str, dict]) -> list[str]:
    lines = ["", title, "", "| model | ΔHR@10 | p | ΔNDCG@10 | p |", "|---|---|---|---|---|"]
    for name, d in rows.items():
        lines.append(f"| {name} | {d['HR@10']['delta']:+.4f} | {d['HR@10']['p']:.3g} | "
                     f"{d['NDCG@10']['delta']:+.4f} | {d['NDCG@10']['p']:.3g} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.report_only:
        train(args)
    if not args.no_report:
        report(args)
