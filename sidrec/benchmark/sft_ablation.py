"""Benchmark: SA-Init and TS-Align ablation of the SFT stage (random init vs SA-Init, with and without TS-Align).

For each variant the align stage is redone from the run's own align options (same base model, SIDs, history
window, main-task samples) with ``sa_init`` / ``ts_align`` switched, then SFT runs with one trainer config for every
variant, and each model writes a predictions file by the same constrained beam search (``sidrec decode``), scored by the
one evaluator on the first ``--limit`` validation samples next to the popularity baseline's (``sidrec baseline``). Paired Wilcoxon tests on per-sample NDCG@10 against the full
recipe (SA-Init + TS-Align). Results (JSON + markdown with device, commit, command, configs) go to
``benchmarks/results/sft_ablation_<name>.{json,md}``.

Every step is resumable: a finished align / SFT / scoring of a variant is skipped when the script is run again, and
an interrupted SFT resumes from its last checkpoint, so the script can be re-run under a time limit until it ends.

How to run it: ``scripts/bench_sft_ablation.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

VARIANTS = {  # name -> (sa_init, ts_align)
    "sa_init+ts_align": (True, True),
    "random_init+ts_align": (False, True),
    "sa_init": (True, False),
    "random_init": (False, False),
}
REFERENCE = "sa_init+ts_align"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory holding data/, sids/ and align/ (its config.yaml "
                                                "gives the align options every variant starts from)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--sft-config", default="configs/sft/demo.yaml")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="SFT overrides (flags of scripts/sft.py without the dashes), e.g. num_train_epochs=2")
    p.add_argument("--max-train-samples", type=int, default=None,
                   help="main-task training samples of every variant (default: the run's align value)")
    p.add_argument("--reference-sft", default=None,
                   help="a finished SFT output_dir of the full recipe trained on RUN/align with the same SFT config "
                        "(e.g. the acceptance run): its last checkpoint is taken over as the sa_init+ts_align "
                        "variant instead of training it again (only with the run's own align options)")
    p.add_argument("--limit", type=int, default=1000, help="score the first N validation samples")
    p.add_argument("--beams", type=int, default=20, help="beam width of the scoring decoder")
    p.add_argument("--name", default="synthetic", help="results file stem: sft_ablation_<name>")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--work", default=None, help="where the variants' models go (default RUN/bench_sft_ablation)")
    return p


def _align(run: Path, work: Path, name: str, args) -> Path:
    import yaml

    from sidrec.align import AlignConfig, run_align

    base = yaml.safe_load((run / "align" / "config.yaml").read_text())
    cfg = AlignConfig(**{k: v for k, v in base.items() if k in AlignConfig.__dataclass_fields__})
    cfg.sa_init, cfg.ts_align = VARIANTS[name]
    cfg.out, cfg.force = str(work / name / "align"), False
    if args.max_train_samples is not None:
        cfg.max_train_samples = args.max_train_samples
    return run_align(cfg)


def _take_over(reference: Path, out: Path) -> None:
    """Copy the last checkpoint of a finished SFT run into ``out``: run_sft then resumes from it at its final step
    (nothing left to train) and saves the model, with this benchmark's options recorded."""
    from transformers.trainer_utils import get_last_checkpoint

    if (out / "final").is_dir():
        return
    last = get_last_checkpoint(str(reference))
    if last is None:
        raise SystemExit(f"{reference}: no checkpoint-* folder to take over")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / Path(last).name).is_dir():
        shutil.copytree(last, out / Path(last).name)


def _sft(align: Path, out: Path, args) -> tuple[Path, dict]:
    from sidrec.train import sft

    argv = ["--config", args.sft_config, "--align_dir", str(align), "--output_dir", str(out),
            "--report_to", "none", "--disable_tqdm", "true", "--val_samples", "0", "--eval_strategy", "no",
            "--save_strategy", "steps", "--save_steps", "25", "--save_total_limit", "1"]
    sft_args, trainer_args = sft.parse_args(argv + [f"--{kv}" for kv in args.set])
    final = sft.run_sft(sft_args, trainer_args)
    return final, sft.read_summary(out)


def _environment() -> dict:
    from sidrec.benchmark import environment

    return environment()


def main(args: argparse.Namespace) -> dict:
    from sidrec.benchmark.scoring import decode_model, per_sample, popularity_predictions, without_mrr
    from sidrec.data import load_data
    from sidrec.eval.stats import paired_pvalue

    run = Path(args.run)
    work = Path(args.work) if args.work else run / "bench_sft_ablation"
    max_history = json.loads((run / "align" / "stats.json").read_text()).get("max_history")
    ks = (5, 10)
    data = load_data(run / "data")
    results, per_model = {}, {}
    if args.reference_sft and args.max_train_samples is not None:
        raise SystemExit("--reference-sft needs the run's own align options (drop --max-train-samples)")
    for name in args.variants:
        started = time.perf_counter()
        if name == REFERENCE and args.reference_sft:
            _take_over(Path(args.reference_sft), work / name / "sft")
        align = _align(run, work, name, args)
        align_stats = json.loads((align / "stats.json").read_text())
        final, summary = _sft(align, work / name / "sft", args)
        if name == REFERENCE and args.reference_sft:  # nothing was trained here: time and rate of the original
            from sidrec.train.sft import read_summary

            summary = summary | {k: read_summary(args.reference_sft)[k] for k in ("train_seconds",
                                                                                   "tokens_per_second")}
        # The variant's predictions file (sidrec decode: skipped when up to date), scored by the evaluator.
        predictions, score_seconds = decode_model(final, run, "valid", work / name / "valid.jsonl", beams=args.beams,
                                                  topk=10, limit=args.limit, max_history=max_history)
        per_model[name] = per_sample(predictions, data, "valid", ks, args.limit)
        results[name] = {
            "sa_init": VARIANTS[name][0], "ts_align": VARIANTS[name][1],
            "metrics": without_mrr(per_model[name]),
            "train_examples": align_stats["dataset"]["train"]["n"],
            "train_per_task": align_stats["dataset"]["train"]["per_task"],
            "sa_init_tokens": align_stats["sa_init"]["initialised"],
            "sft_steps": summary["global_step"], "sft_seconds": summary["train_seconds"],
            "tokens_per_second": summary["tokens_per_second"], "loss_last": summary["loss_last"],
            "score_seconds": round(score_seconds, 1) if score_seconds is not None else None,
        }
        print(f"{name}: HR@10 {results[name]['metrics']['HR@10']:.4f} NDCG@10 "
              f"{results[name]['metrics']['NDCG@10']:.4f} ({(time.perf_counter() - started) / 60:.1f} min)",
              flush=True)
    pop = per_sample(popularity_predictions(run / "data", "valid", work / "popularity_valid.jsonl"), data, "valid",
                     ks, args.limit)
    if REFERENCE in per_model:
        for name in results:
            if name != REFERENCE:
                results[name]["wilcoxon_p_ndcg@10_vs_reference"] = paired_pvalue(
                    per_model[REFERENCE]["NDCG@10"], per_model[name]["NDCG@10"], "wilcoxon")

    # SA-Init's own effect, within each TS-Align setting (paired on the same samples).
    sa_init_effect = {}
    for ts_name, sa, rnd in (("with TS-Align", "sa_init+ts_align", "random_init+ts_align"),
                             ("without TS-Align", "sa_init", "random_init")):
        if sa in per_model and rnd in per_model:
            sa_ndcg, rnd_ndcg = per_model[sa]["NDCG@10"], per_model[rnd]["NDCG@10"]
            sa_init_effect[ts_name] = {"delta_ndcg@10": float((sa_ndcg - rnd_ndcg).mean()),
                                       "wilcoxon_p": paired_pvalue(sa_ndcg, rnd_ndcg, "wilcoxon")}

    report = {
        "benchmark": "sft_ablation", **_environment(),
        "command": "python scripts/bench_sft_ablation.py " + shlex.join(sys.argv[1:]),
        "run": str(run), "split": "valid", "n_samples": int(len(pop["HR@10"])), "beams": args.beams,
        "max_history": max_history, "align_config": (run / "align" / "config.yaml").read_text(),
        "max_train_samples": args.max_train_samples, "sft_config": Path(args.sft_config).read_text(),
        "sft_overrides": args.set, "reference": REFERENCE, "reference_sft": args.reference_sft,
        "popularity": without_mrr(pop),
        "variants": results, "sa_init_effect": sa_init_effect,
    }
    out = Path(args.out)
    from sidrec.benchmark import write_report

    write_report(out, f"sft_ablation_{args.name}", report, _markdown(report))
    print(_markdown(report))
    return report


def _markdown(report: dict) -> str:
    names = ["HR@5", "HR@10", "NDCG@5", "NDCG@10"]
    lines = [f"# SFT ablation: SA-Init and TS-Align ({report['split']} split, {report['device']})", "",
             f"{report['date']}, commit {report['commit']}, torch {report['torch']}; run `{report['run']}`; "
             f"scoring: constrained beam search ({report['beams']} beams) on the first {report['n_samples']} "
             f"validation samples, popularity on the same samples.", "",
             f"    {report['command']}", "",
             "| variant | SA-Init | TS-Align | train examples | SFT steps | " + " | ".join(names)
             + " | p (NDCG@10 vs full) | tokens/s |",
             "|---|---|---|---|---|" + "---|" * len(names) + "---|---|"]
    for name, r in report["variants"].items():
        p = r.get("wilcoxon_p_ndcg@10_vs_reference")
        lines.append(f"| {name} | {'yes' if r['sa_init'] else 'no'} | {'yes' if r['ts_align'] else 'no'} | "
                     f"{r['train_examples']} | {r['sft_steps']} | "
                     + " | ".join(f"{r['metrics'][n]:.4f}" for n in names)
                     + f" | {'—' if p is None else f'{p:.3g}'} | {r['tokens_per_second']} |")
    lines += ["| popularity | | | | | " + " | ".join(f"{report['popularity'][n]:.4f}" for n in names) + " | | |", ""]
    for setting, e in report.get("sa_init_effect", {}).items():
        lines.append(f"SA-Init vs random init {setting}: ΔNDCG@10 {e['delta_ndcg@10']:+.4f} "
                     f"(paired Wilcoxon p {e['wilcoxon_p']:.3g}).")
    if report.get("reference_sft"):
        lines += ["", f"The {report['reference']} row is the SFT run `{report['reference_sft']}` (the same align "
                      "data and SFT config), taken over from its last checkpoint rather than trained twice."]
    lines += ["", "Random init = what `resize_token_embeddings` gives new rows (transformers' mean resizing: samples "
                  "from a normal with the existing embeddings' mean and covariance); SA-Init = the mean of the "
                  "token's keyword sub-token embeddings. Without TS-Align the training set is the main task only.",
              "", f"Main-task samples per variant: {report['max_train_samples'] or 'as the run'}; history window "
                  f"{report['max_history']}. SFT overrides: {' '.join(report['sft_overrides']) or 'none'}.", "",
              "SFT config:", "", "```yaml", report["sft_config"].rstrip(), "```"]
    return "\n".join(lines) + "\n"
