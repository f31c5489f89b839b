"""Benchmark: does GRPO after SFT improve ranking? SFT checkpoint vs SFT+GRPO on the same split, same decoder.

For each seed: SFT (``configs/sft/*.yaml``, that seed) unless ``--sft-model`` gives a finished one, then GRPO from
it (``configs/grpo/*.yaml``, that seed); both models write predictions files by the same constrained beam search
(``sidrec decode``, torch backend; not decoded again when up to date), scored by the one evaluator on every sample
of ``--split`` (or the first ``--limit``) next to the popularity baseline's (``sidrec baseline``): HR/NDCG@K for K in ``--ks``, the per-seed difference, and a paired Wilcoxon test
on per-sample NDCG@10. Results (JSON + markdown with device, commit, command and configs) go to
``benchmarks/results/grpo_<name>.{json,md}``.

How to run it: ``scripts/bench_grpo.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from sidrec.benchmark import positive_int


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory holding data/, sids/, align/")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--sft-config", default="configs/sft/demo.yaml")
    p.add_argument("--grpo-config", default="configs/grpo/demo.yaml")
    p.add_argument("--sft-model", default=None, help="a finished SFT model to start every seed's GRPO from "
                                                     "(default: train SFT once per seed)")
    p.add_argument("--split", choices=("valid", "test"), default="valid")
    p.add_argument("--ks", type=positive_int, nargs="+", default=[1, 5, 10])
    p.add_argument("--beams", type=positive_int, default=20, help="beam width of the scoring decoder")
    p.add_argument("--limit", type=positive_int, default=None, help="score only the first N samples of the split")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra GRPO options (flags of scripts/grpo.py without the dashes), e.g. learning_rate=5e-5")
    p.add_argument("--name", default="synthetic", help="results file stem: grpo_<name>")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--work", default=None, help="where the bench's models go (default RUN/bench_grpo)")
    return p


def main(args: argparse.Namespace) -> dict:
    import numpy as np

    from sidrec.benchmark.scoring import decode_model, per_sample, popularity_predictions, without_mrr
    from sidrec.data import load_data
    from sidrec.eval.stats import paired_pvalue
    from sidrec.train import grpo, sft

    run = Path(args.run)
    data = load_data(run / "data")
    work = Path(args.work) if args.work else run / "bench_grpo"
    align_stats = run / "align" / "stats.json"
    max_history = json.loads(align_stats.read_text()).get("max_history") if align_stats.is_file() else None
    extra = [f"--{kv}" for kv in args.set]  # --learning_rate=5e-5
    ks = tuple(sorted(set(args.ks) | {10}))
    seeds = []
    for seed in args.seeds:
        seed_dir = work / f"seed{seed}"
        started = time.perf_counter()
        if args.sft_model:
            sft_final = Path(args.sft_model)
        else:
            sft_args, sft_trainer = sft.parse_args([
                "--config", args.sft_config, "--align_dir", str(run / "align"), "--output_dir", str(seed_dir / "sft"),
                "--seed", str(seed), "--report_to", "none", "--disable_tqdm", "true"])
            sft_final = sft.run_sft(sft_args, sft_trainer)
        sft_minutes = (time.perf_counter() - started) / 60
        grpo_argv = ["--config", args.grpo_config, "--sft_model", str(sft_final), "--data", str(run / "data"),
                     "--sids", str(run / "sids"), "--output_dir", str(seed_dir / "grpo"), "--seed", str(seed),
                     "--valid_samples", "0", "--report_to", "tensorboard", "--disable_tqdm", "true"]
        if max_history is not None:
            grpo_argv += ["--max_history", str(max_history)]
        g_args, g_trainer = grpo.parse_args(grpo_argv + extra)
        started = time.perf_counter()
        grpo_final = grpo.run_grpo(g_args, g_trainer)
        grpo_minutes = (time.perf_counter() - started) / 60
        # Both models' predictions files (sidrec decode: made once, skipped when up to date), scored by the evaluator.
        predictions = {"sft": (sft_final, (work if args.sft_model else seed_dir) / f"sft_{args.split}.jsonl"),
                       "grpo": (grpo_final, seed_dir / f"grpo_{args.split}.jsonl")}
        per_model = {name: per_sample(decode_model(model, run, args.split, out, beams=args.beams,
                                                   topk=max(max(args.ks), 10), limit=args.limit,
                                                   max_history=max_history)[0], data, args.split, ks, args.limit)
                     for name, (model, out) in predictions.items()}
        metrics = {name: without_mrr(m) for name, m in per_model.items()}
        diff = per_model["grpo"]["NDCG@10"] - per_model["sft"]["NDCG@10"]
        p_value = paired_pvalue(per_model["grpo"]["NDCG@10"], per_model["sft"]["NDCG@10"], "wilcoxon")
        curves = json.loads((seed_dir / "grpo" / grpo.CURVES_FILE).read_text())
        rewarded = [r for r in curves if "reward" in r]
        seeds.append({
            "seed": seed, "n_samples": int(len(diff)), "sft": metrics["sft"], "grpo": metrics["grpo"],
            "delta_ndcg@10": float(diff.mean()), "wilcoxon_p_ndcg@10": p_value,
            "improved_samples": int((diff > 0).sum()), "worsened_samples": int((diff < 0).sum()),
            "sft_minutes": round(sft_minutes, 2) if not args.sft_model else None,
            "grpo_minutes": round(grpo_minutes, 2), "grpo_steps": rewarded[-1]["step"] if rewarded else 0,
            "reward_first": rewarded[0]["reward"] if rewarded else None,
            "reward_last": rewarded[-1]["reward"] if rewarded else None,
            "kl_last": rewarded[-1].get("kl") if rewarded else None,
        })
        print(f"seed {seed}: NDCG@10 sft {metrics['sft']['NDCG@10']:.4f} -> grpo {metrics['grpo']['NDCG@10']:.4f} "
              f"(p={p_value:.3g}), GRPO {grpo_minutes:.1f} min", flush=True)

    from sidrec.benchmark import environment

    report = {
        "benchmark": "grpo_vs_sft", **environment(),
        "command": "python scripts/bench_grpo.py " + shlex.join(sys.argv[1:]),
        "run": str(run), "split": args.split, "ks": list(ks), "beams": args.beams,
        "sft_config": Path(args.sft_config).read_text() if not args.sft_model else f"given: {args.sft_model}",
        "grpo_config": Path(args.grpo_config).read_text(), "grpo_overrides": args.set,
        "data_stats": json.loads((run / "data" / "stats.json").read_text()),
        "seeds": seeds,
        "popularity": without_mrr(per_sample(popularity_predictions(
            run / "data", args.split, work / f"popularity_{args.split}.jsonl"), data, args.split, ks, args.limit)),
        "mean_delta_ndcg@10": float(np.mean([s["delta_ndcg@10"] for s in seeds])),
        "improved_every_seed": all(s["delta_ndcg@10"] > 0 for s in seeds),
    }
    out = Path(args.out)
    from sidrec.benchmark import write_report

    write_report(out, f"grpo_{args.name}", report, _markdown(report))
    print(_markdown(report))
    return report


def _markdown(report: dict) -> str:
    ks = report["ks"]
    names = [f"{m}@{k}" for m in ("HR", "NDCG") for k in ks]
    lines = [f"# GRPO after SFT vs the SFT checkpoint ({report['split']} split, {report['device']})", "",
             f"{report['date']}, commit {report['commit']}, torch {report['torch']}; run `{report['run']}` "
             f"({report['data_stats'].get('n_items', '?')} items); scoring: constrained beam search, "
             f"{report['beams']} beams, every sample of the split.", "",
             f"    {report['command']}", "",
             "| seed | model | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for s in report["seeds"]:
        for model in ("sft", "grpo"):
            lines.append(f"| {s['seed']} | {model} | " + " | ".join(f"{s[model][n]:.4f}" for n in names) + " |")
    lines.append("| — | popularity | " + " | ".join(f"{report['popularity'][n]:.4f}" for n in names) + " |")
    lines += ["", "| seed | ΔNDCG@10 | Wilcoxon p | samples better / worse | GRPO steps | reward first → last | "
                  "KL last | GRPO min |", "|---|---|---|---|---|---|---|---|"]
    for s in report["seeds"]:
        lines.append(f"| {s['seed']} | {s['delta_ndcg@10']:+.4f} | {s['wilcoxon_p_ndcg@10']:.3g} | "
                     f"{s['improved_samples']} / {s['worsened_samples']} | {s['grpo_steps']} | "
                     f"{s['reward_first']:.3f} → {s['reward_last']:.3f} | {s['kl_last']:.4f} | "
                     f"{s['grpo_minutes']:.1f} |")
    lines += ["", f"Mean ΔNDCG@10 over seeds: {report['mean_delta_ndcg@10']:+.4f}; improved on every seed: "
                  f"{report['improved_every_seed']}.", "", "GRPO config:", "", "```yaml",
              report["grpo_config"].rstrip(), "```"]
    if report["grpo_overrides"]:
        lines.append(f"Overrides: {' '.join(report['grpo_overrides'])}")
    return "\n".join(lines) + "\n"
