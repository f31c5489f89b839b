"""Benchmark the SFT path's speed: TRL's SFTTrainer vs a plain torch training loop, same model, batches and data.

Both arms train the align stage's model on the same batches: the TRL arm is sidrec's SFT stage
(:func:`sidrec.train.sft.build_trainer`, the real options file) for ``--steps`` optimiser steps; the plain arm
takes the very batches the trainer's own dataloader yields (same sampler, same collator, so the same tokens and
padding) and runs ``forward -> loss.backward -> clip -> AdamW.step`` on a fresh copy of the same model. Each arm
starts with ``--warmup`` untimed steps; the arms alternate ``--rounds`` times and the best round of each is kept.
Tokens are the non-padding tokens of the batches; the ratio TRL / plain is what the issue asks for (aim >= 0.8).

How to run it: ``scripts/bench_sft_speed.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from sidrec.benchmark import positive_int


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--align", required=True, help="RUN/align folder (model/, dataset/, sids/)")
    p.add_argument("--config", default=None, help="SFT options YAML (SftArgs + SFTConfig keys), as for `sidrec sft`, "
                   "or a pipeline config (its sft section is used)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="option overrides, e.g. "
                   "per_device_train_batch_size=64")
    p.add_argument("--steps", type=positive_int, default=30, help="timed optimiser steps per arm and round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before each timed round")
    p.add_argument("--rounds", type=positive_int, default=2, help="alternating rounds per arm; the best is kept")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--name", default="cpu", help="results stem: sft_speed_<name>")
    p.add_argument("--out", default="benchmarks/results")
    return p


def _options(args, output_dir: str) -> dict:
    import yaml

    options = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    if isinstance(options.get("sft"), dict):  # a pipeline config: its sft section
        options = dict(options["sft"])
    for item in args.set:
        key, _, value = item.partition("=")
        options[key] = yaml.safe_load(value)
    total = args.warmup + args.steps
    # Time training only: no evaluation, checkpoint, validation decoding or early stopping.
    options.update({"align_dir": args.align, "output_dir": output_dir, "max_steps": total, "eval_strategy": "no",
                    "save_strategy": "no", "load_best_model_at_end": False, "metric_for_best_model": None,
                    "early_stopping_patience": None, "val_samples": 0, "report_to": [], "logging_steps": 10**6,
                    "disable_tqdm": True})
    return options


def _batches(trainer, n: int) -> list[dict]:
    """The first ``n`` batches of the trainer's own training dataloader (its sampler and collator)."""
    batches = []
    while len(batches) < n:
        for batch in trainer.get_train_dataloader():
            batches.append(batch)
            if len(batches) == n:
                break
    return batches


def _tokens(batches: list[dict]) -> int:
    return int(sum(int(b["attention_mask"].sum()) for b in batches))


def _sync() -> None:
    """Wait for queued CUDA work, so a clock reading covers it (nothing to wait for on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def trl_arm(trainer_factory, n_warmup: int, n_steps: int) -> float:
    """Seconds of ``n_steps`` TRL optimiser steps after ``n_warmup`` untimed ones (one trainer run)."""
    from transformers import TrainerCallback

    marks: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (n_warmup, n_warmup + n_steps):
                _sync()
            if state.global_step == n_warmup:
                marks["start"] = time.perf_counter()
            if state.global_step == n_warmup + n_steps:
                marks["end"] = time.perf_counter()

    trainer = trainer_factory()
    trainer.add_callback(Clock())
    trainer.train()
    return marks["end"] - marks["start"]


def plain_arm(model_path: str, batches: list[dict], n_warmup: int, trainer_args, level_tokens=None) -> float:
    """Seconds of a plain AdamW loop over ``batches[n_warmup:]`` (after ``batches[:n_warmup]`` untimed), with the
    trainer's device and weight dtype (bf16 weights on a GPU when ``bf16``, as the SFT stage loads them; fused
    AdamW there). ``level_tokens`` (``sid_softmax: level``): the same per-level loss the SFT stage computes."""
    import torch
    from transformers import AutoModelForCausalLM

    from sidrec.train.sft import level_softmax_loss

    cuda = torch.cuda.is_available() and not trainer_args.use_cpu
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if trainer_args.bf16 and cuda else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=trainer_args.learning_rate,
                                  weight_decay=trainer_args.weight_decay, fused=cuda)
    batches = [{k: v.to(device) for k, v in b.items() if k in ("input_ids", "attention_mask", "labels")}
               for b in batches]
    start = 0.0
    for step, batch in enumerate(batches):
        if step == n_warmup:
            _sync()
            start = time.perf_counter()
        if level_tokens is not None:
            loss = level_softmax_loss(model, batch, level_tokens)
        else:
            loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trainer_args.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    args = make_parser().parse_args(argv)
    import torch

    from sidrec.benchmark import environment, write_report
    from sidrec.train.options import parse_section
    from sidrec.train.sft import _model_path, build_trainer
    from sidrec.train.sft import make_parser as sft_parser

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        sft_args, trainer_args = parse_section(sft_parser(), _options(args, tmp), {}, "bench_sft_speed")
        factory = lambda: build_trainer(sft_args, trainer_args)[0]  # noqa: E731
        probe = factory()
        batches = _batches(probe, args.warmup + args.steps)
        n_params = sum(p.numel() for p in probe.model.parameters())
        level_tokens = getattr(probe, "sid_level_tokens", None)
        del probe
        tokens = _tokens(batches[args.warmup:])
        rounds = {"trl": [], "plain": []}
        for _ in range(args.rounds):
            rounds["trl"].append(trl_arm(factory, args.warmup, args.steps))
            rounds["plain"].append(plain_arm(_model_path(sft_args), batches, args.warmup, trainer_args,
                                             level_tokens))
    best = {arm: min(times) for arm, times in rounds.items()}
    rate = {arm: tokens / best[arm] for arm in best}
    result = {"benchmark": f"sft_speed_{args.name}", **environment(), "align": args.align,
              "command": "python scripts/bench_sft_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "config": Path(args.config).read_text() if args.config else None, "overrides": args.set,
              "sid_softmax": sft_args.sid_softmax,
              "steps": args.steps, "warmup": args.warmup, "rounds": rounds, "batch_size":
              trainer_args.per_device_train_batch_size, "tokens_per_round": tokens, "n_parameters": n_params,
              "tokens_per_s": {k: round(v, 1) for k, v in rate.items()},
              "ratio_trl_to_plain": round(rate["trl"] / rate["plain"], 3)}
    md = "\n".join([
        f"# SFT speed: TRL SFTTrainer vs a plain torch loop ({result['device']})", "",
        f"{result['date']}, commit {result['commit']}, torch {result['torch']}; align data `{args.align}`; "
        f"{n_params / 1e6:.2f}M parameters; loss: softmax over the {'SID level' if sft_args.sid_softmax == 'level' else 'vocabulary'} "
        f"(sid_softmax: {sft_args.sid_softmax}, both arms); batch {result['batch_size']}; the same {args.steps} batches "
        f"({tokens} non-padding tokens) per arm and round, after {args.warmup} untimed steps; best of "
        f"{args.rounds} alternating rounds.", "", f"    {result['command']}", "",
        "| arm | seconds (best) | tokens/s | all rounds (s) |", "|---|---|---|---|",
        *[f"| {arm} | {best[arm]:.2f} | {rate[arm]:.0f} | {', '.join(f'{t:.2f}' for t in rounds[arm])} |"
          for arm in ("trl", "plain")], "",
        f"**TRL / plain tokens/s: {result['ratio_trl_to_plain']:.2f}** (aim >= 0.80).", ""])
    write_report(Path(args.out), result["benchmark"], result, md)
    print(md)
    print(json.dumps(result["tokens_per_s"]))
    return result
