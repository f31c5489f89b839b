"""Benchmark: the LLM stages on Amazon Industrial_and_Scientific (MiniOneRec split): SFT and SFT+GRPO vs popularity.

One harness, one test split, one decoder: a small local Qwen2 (``sidrec model init-tiny``, options from
``--tiny``) gets the run's SID tokens with SA-Init and the TS-Align data (``sidrec align``), is fine-tuned with
``configs/sft/industrial_cpu.yaml`` and then trained with GRPO (``configs/grpo/industrial_cpu.yaml``); both models
write their predictions on the test samples by constrained beam search (``sidrec decode``, RUN/predictions/), and
every predictions file -- theirs, the popularity baseline's (``sidrec baseline``) and any extra given with
``--baseline NAME=predictions.jsonl`` -- is scored by the one evaluator with HR/NDCG@3/5/10 on the same samples.
Training time and tokens/s are reported. Results (JSON + markdown with device, commit,
command and configs) go to ``benchmarks/results/llm_<name>.{json,md}``.

Every step is resumable (finished stages are skipped, interrupted trainers resume from their checkpoints, a
predictions file made with the same options and inputs is not decoded again), so the script can be re-run under a time limit until it ends.

How to run it: ``scripts/bench_llm_industrial.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

KS = (3, 5, 10)


def _kv(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run directory holding data/, semantics/ and sids/")
    p.add_argument("--tiny", nargs="*", default=["vocab_size=4000", "hidden_size=128", "num_layers=2",
                                                 "intermediate_size=512", "lm_epochs=1.0", "lm_max_texts=8000"],
                   metavar="KEY=VALUE", help="`sidrec model init-tiny` options of the base model")
    p.add_argument("--align", nargs="*", default=["valid_samples=200"], metavar="KEY=VALUE",
                   help="`sidrec align` options (e.g. max_train_samples=5000)")
    p.add_argument("--sft-config", default="configs/sft/industrial_cpu.yaml")
    p.add_argument("--sft-set", nargs="*", default=[], metavar="KEY=VALUE", help="SFT overrides")
    p.add_argument("--grpo-config", default="configs/grpo/industrial_cpu.yaml")
    p.add_argument("--grpo-set", nargs="*", default=[], metavar="KEY=VALUE", help="GRPO overrides")
    p.add_argument("--no-grpo", action="store_true", help="stop after SFT")
    p.add_argument("--split", choices=("valid", "test"), default="test")
    p.add_argument("--limit", type=int, default=None, help="score only the first N samples of the split")
    p.add_argument("--beams", type=int, default=20, help="beam width of the scoring decoder")
    p.add_argument("--baseline", nargs="*", default=[], metavar="NAME=PREDICTIONS",
                   help="extra predictions JSONL (same data, same split) scored beside the LLM, e.g. "
                        "sasrec=runs/industrial/predictions/sasrec_id.jsonl")
    p.add_argument("--name", default="industrial", help="results file stem: llm_<name>")
    p.add_argument("--out", default="benchmarks/results")
    return p


def _flags(pairs: dict[str, str]) -> list[str]:
    return [x for k, v in pairs.items() for x in (f"--{k}", v)]


def _yaml_value(value: str):
    import yaml

    return yaml.safe_load(value)


def _environment() -> dict:
    from sidrec.benchmark import environment

    return environment()


def main(args: argparse.Namespace) -> dict:
    from sidrec.align import AlignConfig, init_tiny_model, run_align
    from sidrec.benchmark.scoring import decode_model, per_sample, popularity_predictions, without_mrr
    from sidrec.data import load_data
    from sidrec.eval.stats import paired_pvalue
    from sidrec.train import grpo, sft

    run = Path(args.run)
    for part in ("data", "sids"):
        if not (run / part).is_dir():
            raise SystemExit(f"{run / part} not found: see the commands in scripts/bench_llm_industrial.py's docstring")
    data = load_data(run / "data")
    tiny = {k: _yaml_value(v) for k, v in _kv(args.tiny).items()}
    started = time.perf_counter()
    init_tiny_model(run / "data", run / "base_model", **tiny)
    base_info = json.loads((run / "base_model" / "tiny_model.json").read_text())
    align_opts = {k: _yaml_value(v) for k, v in _kv(args.align).items()}
    cfg = AlignConfig(data=str(run / "data"), sids=str(run / "sids"), model=str(run / "base_model"),
                      out=str(run / "align"),
                      semantics=str(run / "semantics") if (run / "semantics").is_dir() else None, **align_opts)
    run_align(cfg)
    align_stats = json.loads((run / "align" / "stats.json").read_text())
    max_history = align_stats["max_history"]
    prep_minutes = (time.perf_counter() - started) / 60

    sft_args, sft_trainer = sft.parse_args(["--config", args.sft_config, "--align_dir", str(run / "align"),
                                            "--output_dir", str(run / "sft"), "--disable_tqdm", "true",
                                            *_flags(_kv(args.sft_set))])
    sft_final = sft.run_sft(sft_args, sft_trainer)
    sft_summary = sft.read_summary(run / "sft")
    models = {"sft": sft_final}
    grpo_info = None
    if not args.no_grpo:
        g_args, g_trainer = grpo.parse_args(["--config", args.grpo_config, "--sft_model", str(sft_final),
                                             "--data", str(run / "data"), "--sids", str(run / "sids"),
                                             "--output_dir", str(run / "grpo"), "--max_history", str(max_history),
                                             "--disable_tqdm", "true", *_flags(_kv(args.grpo_set))])
        t0 = time.perf_counter()
        models["sft+grpo"] = grpo.run_grpo(g_args, g_trainer)
        curves = json.loads((run / "grpo" / grpo.CURVES_FILE).read_text())
        rewarded = [r for r in curves if "reward" in r]
        train_end = [r for r in curves if "train_runtime" in r]
        grpo_info = {"steps": rewarded[-1]["step"] if rewarded else 0,
                     "seconds": train_end[-1]["train_runtime"] if train_end else round(time.perf_counter() - t0, 1),
                     "reward_first": rewarded[0]["reward"] if rewarded else None,
                     "reward_last": rewarded[-1]["reward"] if rewarded else None,
                     "kl_last": rewarded[-1].get("kl") if rewarded else None,
                     "prompts": g_args.max_train_samples, "num_generations": g_trainer.num_generations}

    samples = data.split(args.split)
    if args.limit is not None:
        samples = samples.select(range(min(args.limit, len(samples))))
    # Every row is a predictions file (sidrec decode / sidrec baseline, skipped when up to date) read by the evaluator.
    per_model, seconds, predictions = {}, {}, run / "predictions"
    for name, path in models.items():
        made, decode_seconds = decode_model(path, run, args.split, predictions / f"{name}_{args.split}.jsonl",
                                           beams=args.beams, topk=max(KS), limit=args.limit, max_history=max_history)
        seconds[name] = round(decode_seconds, 1) if decode_seconds is not None else None
        per_model[name] = per_sample(made, data, args.split, KS, args.limit)
    popularity = popularity_predictions(run / "data", args.split, predictions / f"popularity_{args.split}.jsonl")
    per_model["popularity"] = per_sample(popularity, data, args.split, KS, args.limit)
    for name, path in _kv(args.baseline).items():
        per_model[name] = per_sample(path, data, args.split, KS, args.limit)
    metrics = {name: without_mrr(m) for name, m in per_model.items()}

    report = {
        "benchmark": "llm_industrial", **_environment(),
        "command": "python scripts/bench_llm_industrial.py " + shlex.join(sys.argv[1:]),
        "run": str(run), "split": args.split, "n_samples": len(samples), "beams": args.beams, "ks": list(KS),
        "data_stats": json.loads((run / "data" / "stats.json").read_text()),
        "sid_stats": {k: v for k, v in json.loads((run / "sids" / "stats.json").read_text()).items()
                      if k in ("method", "n_items", "codebook_sizes", "collision_rate_before")},
        "base_model": {"n_parameters": base_info["n_parameters"], "vocab_size": base_info["vocab_size"],
                       "options": tiny, "lm_warmup": base_info["lm_warmup"]},
        "align": {"options": align_opts, "n_sid_tokens": align_stats["n_sid_tokens"],
                  "sa_init": align_stats["sa_init"], "train_per_task": align_stats["dataset"]["train"]["per_task"]},
        "prep_minutes_this_call": round(prep_minutes, 2),
        "sft": {k: sft_summary.get(k) for k in ("global_step", "train_examples", "train_seconds", "tokens",
                                                 "tokens_per_second", "loss_first", "loss_last", "n_parameters",
                                                 "validation")},
        "grpo": grpo_info, "score_seconds": seconds, "metrics": metrics,
        "sft_config": Path(args.sft_config).read_text(), "sft_overrides": args.sft_set,
        "grpo_config": None if args.no_grpo else Path(args.grpo_config).read_text(), "grpo_overrides": args.grpo_set,
    }
    if "sft+grpo" in per_model:
        grpo_ndcg, sft_ndcg = per_model["sft+grpo"]["NDCG@10"], per_model["sft"]["NDCG@10"]
        report["grpo_vs_sft"] = {"delta_ndcg@10": float((grpo_ndcg - sft_ndcg).mean()),
                                 "wilcoxon_p": paired_pvalue(grpo_ndcg, sft_ndcg, "wilcoxon")}
    out = Path(args.out)
    from sidrec.benchmark import write_report

    write_report(out, f"llm_{args.name}", report, _markdown(report))
    print(_markdown(report))
    return report


def _markdown(report: dict) -> str:
    names = [f"{m}@{k}" for k in report["ks"] for m in ("HR", "NDCG")]
    d = report["data_stats"]
    b, s = report["base_model"], report["sft"]
    lines = [f"# LLM stages on Industrial_and_Scientific ({report['split']} split, {report['device']})", "",
             f"{report['date']}, commit {report['commit']}, torch {report['torch']}; run `{report['run']}`: "
             f"{d.get('n_items')} items, {d.get('samples', {}).get('train')} training samples; "
             f"{report['n_samples']} {report['split']} samples scored; constrained beam search with "
             f"{report['beams']} beams (MiniOneRec's published figures use 50).", "",
             f"    {report['command']}", "",
             "| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, m in report["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[n]:.4f}" for n in names) + " |")
    lines += ["", f"Base model: local Qwen2, {b['n_parameters'] / 1e6:.2f}M parameters, vocabulary {b['vocab_size']} "
                  f"+ {report['align']['n_sid_tokens']} SID tokens (SA-Init: {report['align']['sa_init']}); "
                  f"options {b['options']}.",
              f"SFT: {s['global_step']} steps over {s['train_examples']} examples "
              f"({report['align']['train_per_task']}), {s['train_seconds'] / 60:.1f} min, "
              f"{s['tokens_per_second']} tokens/s, loss {s['loss_first']} → {s['loss_last']}."]
    g = report["grpo"]
    if g:
        lines.append(f"GRPO: {g['steps']} steps ({g['prompts']} prompts x {g['num_generations']} beams), "
                     f"{g['seconds'] / 60:.1f} min, reward {g['reward_first']:.3f} → {g['reward_last']:.3f}, "
                     f"KL {g['kl_last']:.4f}; ΔNDCG@10 vs SFT {report['grpo_vs_sft']['delta_ndcg@10']:+.4f} "
                     f"(Wilcoxon p {report['grpo_vs_sft']['wilcoxon_p']:.3g}).")
    lines += [f"Decoding the split: {report['score_seconds']} s.", "",
              "SFT config:", "", "```yaml", report["sft_config"].rstrip(), "```"]
    if report["sft_overrides"]:
        lines.append(f"Overrides: {' '.join(report['sft_overrides'])}")
    return "\n".join(lines) + "\n"
