"""The GPU check's SFT speed parts and its results page (scripts/gpu_check.sh runs every step; read that first).

Subcommands:

- ``setup``: a synthetic RUN/align folder for the SFT speed arms: a random-init model of ``--shape`` (the
  Qwen2.5-0.5B shape on a GPU), a byte-level BPE tokenizer holding the SID tokens, and prompt/completion pairs of
  exactly ``--seq-len`` tokens (a history of SIDs -> the next SID + EOS), so every batch is full and no padding
  flatters or hides anything.
- ``sft``: tokens/s of sidrec's SFT path (TRL's SFTTrainer built by :func:`sidrec.train.sft.build_trainer`) and of
  a plain torch loop on the very same batches (the arms of scripts/bench_sft_speed.py), with MFU. Launched by
  ``accelerate launch`` with a DeepSpeed config, it times the TRL arm under that ZeRO stage instead.
- ``report``: merges the parts (``sft_*.json``) and scripts/bench_decode.py's JSON into ``gpu_<device>.md`` +
  ``.json``, beside the H100 reference figures of ../shared/gpu/README.md.

MFU = 6 x (parameters in matrix multiplies) x tokens/s / the GPU's dense bf16 peak (989 TFLOP/s for an H100 or
H200 SXM); attention's own FLOPs (12 x layers x hidden x seq per token, +2% at 0.5B and seq 256) are left out, as
in the reference figure.

How to run it: ``scripts/bench_gpu.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import tempfile
from pathlib import Path

from sidrec.benchmark import positive_int

# Dense bf16 peak FLOP/s by a substring of torch.cuda.get_device_name() (vendor data sheets, SXM parts).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12}
# Measured on an H100 with a random-init Qwen2.5-0.5B-shaped model (494M parameters, bf16, sdpa attention), 64
# prompts of 200 tokens, 3-level SIDs over 12,000 items (../shared/gpu/README.md).
H100_REFERENCE = {
    "sft_tokens_per_s": 64_000,  # full fine-tuning step, fused AdamW, seq 256, micro-batch 32 (~190 TFLOP/s)
    "decode": {10: {"hf-prefix-fn": 102, "hf": 144, "prefill_floor": 1000},
               50: {"hf-prefix-fn": 24, "hf": 34, "prefill_floor": 1200}},
}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("setup", help="synthetic RUN/align folder for the SFT arms")
    s.add_argument("--work", required=True, help="work folder (align/ is written inside)")
    s.add_argument("--shape", default="qwen2.5-0.5b", help="model shape, one of scripts/bench_decode.py's SHAPES")
    s.add_argument("--seq-len", type=positive_int, default=256, help="tokens per training example (prompt + SID + EOS)")
    s.add_argument("--n-examples", type=positive_int, default=2048)
    s.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("sft", help="tokens/s of the TRL arm and the plain loop (or of TRL under DeepSpeed)")
    t.add_argument("--work", required=True)
    t.add_argument("--arms", nargs="+", choices=("trl", "plain"), default=["trl", "plain"])
    t.add_argument("--tag", default="single", help="name of this part: sft_<tag>.json")
    t.add_argument("--batch-size", type=positive_int, default=32, help="micro-batch (examples per optimiser step)")
    t.add_argument("--steps", type=positive_int, default=20, help="timed optimiser steps per arm and round")
    t.add_argument("--warmup", type=int, default=3, help="untimed steps before each timed round")
    t.add_argument("--rounds", type=positive_int, default=1, help="rounds per arm; the best is kept")
    r = sub.add_parser("report", help="gpu_<device>.md + .json from the parts in --work")
    r.add_argument("--work", required=True)
    r.add_argument("--out", default="benchmarks/results")
    r.add_argument("--failed", nargs="*", default=[], help="steps of gpu_check.sh that failed (named on the page)")
    return p


# ------------------------------------------------------------------------------------------------ setup
def setup(args: argparse.Namespace) -> Path:
    """Write ``WORK/align/{model,dataset,sids}``; returns the align folder."""
    import datasets
    import numpy as np
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sidrec.benchmark.decode import SHAPES
    from sidrec.decode.tiny import build_tokenizer
    from sidrec.sid import SidTable

    align = Path(args.work) / "align"
    rng = np.random.default_rng(args.seed)
    levels, codebook, n_items = 3, 256, 12000
    codes = np.unique(rng.integers(0, codebook, size=(int(n_items * 1.1), levels)), axis=0)[:n_items]
    table = SidTable([f"item{i}" for i in range(len(codes))], codes, codebook_sizes=[codebook] * levels)
    tokenizer = build_tokenizer(table)
    cuda = torch.cuda.is_available()
    shape = dict(SHAPES[args.shape])
    shape["vocab_size"] = max(shape["vocab_size"], len(tokenizer))
    config = Qwen2Config(**shape, max_position_embeddings=4096, bos_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(args.seed)
    with torch.device("cuda" if cuda else "cpu"):  # random init on the GPU: seconds instead of a minute
        model = Qwen2ForCausalLM(config).to(torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(align / "model")
    tokenizer.save_pretrained(align / "model")

    # Prompt = a history of whole SIDs; completion = the next SID; TRL appends EOS: seq_len tokens in all.
    history = (args.seq_len - levels - 1) // levels
    if history < 1:
        raise SystemExit(f"--seq-len {args.seq_len}: too short for one SID of history ({levels + 1 + levels} min)")
    picks = rng.integers(0, len(table.item_ids), size=(args.n_examples, history + 1))
    sid = [table.item_sid_string(item) for item in table.item_ids]
    prompts = ["".join(sid[i] for i in row[:-1]) for row in picks]
    completions = [sid[row[-1]] for row in picks]
    train = datasets.Dataset.from_dict({"prompt": prompts, "completion": completions,
                                        "task": ["next_sid"] * len(prompts)})
    valid = datasets.Dataset.from_dict({"prompt": prompts[:8], "completion": completions[:8],
                                        "target": [table.item_ids[row[-1]] for row in picks[:8]]})
    datasets.DatasetDict({"train": train, "valid": valid}).save_to_disk(str(align / "dataset"))
    (align / "sids").mkdir(parents=True, exist_ok=True)
    (align / "sids" / "sids.json").write_text(json.dumps({item: table.item_sid(item) for item in table.item_ids}))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"setup: {args.shape} model, {n_params / 1e6:.1f}M parameters, {len(prompts)} examples of "
          f"{history * levels + levels + 1} tokens -> {align}", flush=True)
    return align


# ------------------------------------------------------------------------------------------------ sft
def matmul_parameters(model) -> int:
    """Parameters that take part in a matrix multiply per token: all, less an untied input embedding (a lookup)."""
    n = sum(p.numel() for p in model.parameters())
    if not model.config.tie_word_embeddings:
        n -= model.get_input_embeddings().weight.numel()
    return n


def peak_flops(device_name: str) -> float | None:
    return next((flops for key, flops in PEAK_BF16.items() if key in device_name), None)


def sft(args: argparse.Namespace) -> dict:
    """Time the arms; write ``WORK/sft_<tag>.json``."""
    import torch

    from sidrec.benchmark import device_name
    from sidrec.benchmark.sft_speed import _batches, _tokens, plain_arm, trl_arm
    from sidrec.train.options import parse_section
    from sidrec.train.sft import _model_path, build_trainer
    from sidrec.train.sft import make_parser as sft_parser

    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if deepspeed and "plain" in args.arms:
        raise SystemExit("sft: under DeepSpeed only the TRL arm runs (--arms trl)")
    cuda = torch.cuda.is_available()
    work = Path(args.work)
    with tempfile.TemporaryDirectory() as tmp:
        options = {"align_dir": str(work / "align"), "output_dir": tmp, "max_steps": args.warmup + args.steps,
                   "per_device_train_batch_size": args.batch_size, "gradient_accumulation_steps": 1,
                   "learning_rate": 1e-5, "max_length": 4096, "bf16": cuda, "use_cpu": not cuda,
                   "eval_strategy": "no", "save_strategy": "no", "val_samples": 0, "report_to": [],
                   "logging_steps": 10**6, "disable_tqdm": True, "gradient_checkpointing": False, "seed": 0,
                   "dataloader_num_workers": 0}
        sft_args, trainer_args = parse_section(sft_parser(), options, {}, "bench_gpu")
        engine: dict = {}

        def factory():
            trainer = build_trainer(sft_args, trainer_args)[0]
            plugin = trainer.accelerator.state.deepspeed_plugin
            engine.update(deepspeed_zero_stage=plugin.zero_stage if plugin is not None else None,
                          n_parameters=sum(p.numel() for p in trainer.model.parameters()),
                          matmul_parameters=matmul_parameters(trainer.model),
                          weight_dtype=str(next(trainer.model.parameters()).dtype))
            return trainer

        probe = factory()
        batches = _batches(probe, args.warmup + args.steps)
        if deepspeed:  # accelerate allows one DeepSpeed Accelerator per process: time the probe itself, once
            args.rounds = 1
        else:
            del probe
            if cuda:
                torch.cuda.empty_cache()
        tokens = _tokens(batches[args.warmup:])
        seq_len = int(batches[0]["input_ids"].shape[1])
        seconds: dict[str, list[float]] = {arm: [] for arm in args.arms}
        for _ in range(args.rounds):
            if "trl" in args.arms:
                seconds["trl"].append(trl_arm((lambda: probe) if deepspeed else factory, args.warmup, args.steps))
            if "plain" in args.arms:
                seconds["plain"].append(plain_arm(_model_path(sft_args), batches, args.warmup, trainer_args))
            if cuda:
                torch.cuda.empty_cache()
    device = device_name("cuda" if cuda else "cpu")
    peak = peak_flops(device) if cuda else None
    arms = {}
    for arm, times in seconds.items():
        rate = tokens / min(times)
        achieved = 6 * engine["matmul_parameters"] * rate
        arms[arm] = {"seconds": [round(t, 3) for t in times], "tokens_per_s": round(rate, 1),
                     "tflops": float(f"{achieved / 1e12:.3g}"), "mfu": round(achieved / peak, 4) if peak else None}
    part = {"tag": args.tag, "device": device, "deepspeed": deepspeed, **engine, "batch_size": args.batch_size,
            "seq_len": seq_len, "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
            "tokens_per_round": tokens, "peak_flops": peak, "arms": arms,
            "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
    if int(os.environ.get("RANK", "0")) == 0:
        (work / f"sft_{args.tag}.json").write_text(json.dumps(part, indent=2))
        print(f"sft {args.tag}: " + ", ".join(f"{arm} {a['tokens_per_s']:.0f} tokens/s (MFU {a['mfu']})"
                                               for arm, a in arms.items()), flush=True)
    return part


# ------------------------------------------------------------------------------------------------ report
def _slug(device: str) -> str:
    if device.startswith("CPU"):
        return "cpu"
    return "_".join("".join(c if c.isalnum() else " " for c in device.lower()).split())


def report(args: argparse.Namespace) -> Path:
    """``OUT/gpu_<device>.md`` + ``.json`` from ``WORK/sft_*.json`` and ``WORK/decode_*.json``."""
    from sidrec.benchmark import environment, write_report

    work = Path(args.work)
    parts = {Path(f).stem.removeprefix("sft_"): json.loads(Path(f).read_text())
             for f in sorted(glob.glob(str(work / "sft_*.json")))}
    decode_files = sorted(glob.glob(str(work / "decode_*.json")))
    decode = json.loads(Path(decode_files[0]).read_text()) if decode_files else None
    env = environment(dirty_paths=("sidrec", "scripts"))
    device = next((p["device"] for p in parts.values()), None) or (decode or {}).get("device") or env["device"]
    result = {"benchmark": "gpu_check", **env, "device": device, "sft": parts, "decode": decode,
              "failed_steps": args.failed, "h100_reference": H100_REFERENCE}
    stem = f"gpu_{_slug(device)}"
    write_report(args.out, stem, result, _markdown(result))
    print(f"report: {Path(args.out) / stem}.md", flush=True)
    return Path(args.out) / f"{stem}.md"


def _markdown(result: dict) -> str:
    ref = H100_REFERENCE
    lines = [f"# GPU check: SFT speed and constrained decoding ({result['device']})", "",
             f"{result['date']}, commit {result['commit']}, torch {result['torch']}. Produced by "
             "`bash scripts/gpu_check.sh` in one device call (scripts/bench_gpu.py, scripts/bench_decode.py); "
             "random-init models, so speed only, no quality.", ""]
    if result["failed_steps"]:
        lines += [f"**Steps that failed** (their logs came back with the run): {', '.join(result['failed_steps'])}.",
                  ""]
    lines += ["## SFT tokens/s", ""]
    if result["sft"]:
        any_part = next(iter(result["sft"].values()))
        peak = any_part["peak_flops"]
        lines += [f"{any_part['n_parameters'] / 1e6:.2f}M parameters ({any_part['weight_dtype']} weights), "
                  f"micro-batch {any_part['batch_size']} x {any_part['seq_len']} tokens (no padding), "
                  f"{any_part['steps']} timed steps after {any_part['warmup']} untimed; MFU = 6 x "
                  f"{any_part['matmul_parameters'] / 1e6:.2f}M x tokens/s / "
                  + (f"{peak / 1e12:.0f} TFLOP/s (bf16 dense peak)." if peak else "peak (unknown for this device)."),
                  "",
                  "| arm | launch | tokens/s | TFLOP/s | MFU | peak memory GiB | vs H100 reference |",
                  "|---|---|---|---|---|---|---|"]
        names = {"trl": "TRL SFTTrainer (sidrec's SFT stage)", "plain": "plain torch loop (AdamW, fused on a GPU)"}
        for part in result["sft"].values():
            launch = (f"accelerate launch, DeepSpeed ZeRO-{part['deepspeed_zero_stage']}" if part["deepspeed"]
                      else "python, one process")
            for arm, a in part["arms"].items():
                lines.append(f"| {names[arm]} | {launch} | {a['tokens_per_s']:,.0f} | {a['tflops']} | "
                             f"{a['mfu'] if a['mfu'] is not None else ''} | {part['max_memory_gib'] or ''} | "
                             f"{a['tokens_per_s'] / ref['sft_tokens_per_s']:.2f}x |")
        single = result["sft"].get("single", {}).get("arms", {})
        if "trl" in single and "plain" in single:
            lines += ["", f"TRL / plain tokens/s: **{single['trl']['tokens_per_s'] / single['plain']['tokens_per_s']:.2f}**"]
        zero2 = result["sft"].get("zero2", {}).get("arms", {})
        if "trl" in zero2 and "trl" in single:
            lines += [f"ZeRO-2 / single-process TRL tokens/s: "
                      f"**{zero2['trl']['tokens_per_s'] / single['trl']['tokens_per_s']:.2f}**"]
        lines += ["", f"H100 reference: full fine-tuning step, seq 256, micro-batch 32: "
                      f"{ref['sft_tokens_per_s']:,} tokens/s (~190 TFLOP/s).", ""]
    else:
        lines += ["(no SFT result)", ""]
    lines += ["## Constrained decoding users/s", ""]
    decode = result["decode"]
    if decode:
        cfg = decode["config"]
        floor = decode["prefill_floor"]
        lines += [f"{cfg['model_params'] / 1e6:.2f}M parameters, {cfg['dtype']}; {cfg['n_prompts']} prompts of "
                  f"~{cfg['prompt_tokens_mean']:.0f} tokens, {cfg['n_items']:,} items, {cfg['levels']} levels x "
                  f"{cfg['codebook']} codes, top-{cfg['topk']}, best of {cfg['repeats']}. Prefill-only floor: "
                  f"{floor['seconds'] * 1000:.0f} ms for the prompts = {floor['users_per_s']:,} users/s.", "",
                  "| beams | backend | users/s | of prefill floor | valid items | top-K list = torch | H100 reference |",
                  "|---|---|---|---|---|---|---|"]
        for r in decode["results"]:
            reference = ref["decode"].get(r["beams"], {}).get(r["backend"], "")
            lines.append(f"| {r['beams']} | {r['backend']} | {r['users_per_s']} | "
                         f"{r.get('fraction_of_prefill_floor', '')} | {r['valid_items']}/{r['items_returned']} | "
                         f"{r.get('topk_list_equals_torch', '')} | {reference} |")
        lines += ["", "H100 reference prefill floor: ~1,000 users/s at beam 10 setting, ~1,200 at beam 50 (the same "
                      "64 prompts, 65 ms and 53 ms).", ""]
    else:
        lines += ["(no decoding result)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    {"setup": setup, "sft": sft, "report": report}[args.command](args)
