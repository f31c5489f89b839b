"""Benchmark constrained SID decoding: torch backend vs transformers generate (+ prefix_allowed_tokens_fn, and +
the vectorised trie processor) vs the vllm backend, in users/s, against the prefill-only floor. Results:
benchmarks/results/.

The same model, prompts and catalogue for every backend in one run. Prompts are SID histories of about
``--prompt-tokens`` tokens; the catalogue is ``--n-items`` random unique SIDs of ``--levels`` levels over
``--codebook`` codes. The prefill floor is what every backend does before its first decode step, from the same text
prompts: tokenization, padding and one forward pass of the whole prompt batch (last-position logits only):
no decoder can beat it, so ``torch users/s / floor users/s`` is the fraction of the ideal reached (the floor is timed
again before each timed run of a backend, so a ratio compares runs made under the same machine load).

How to run it: ``scripts/bench_decode.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from sidrec.benchmark import positive_int

SHAPES = {
    # name: Qwen2Config kwargs (vocab_size is max(tokenizer, this))
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=32, vocab_size=0, tie_word_embeddings=False),
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, head_dim=64, vocab_size=151936, tie_word_embeddings=True),
}
BACKENDS = ("torch", "hf", "hf-prefix-fn", "vllm")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--model-shape", choices=sorted(SHAPES), default="tiny")
    p.add_argument("--n-prompts", type=positive_int, default=64)
    p.add_argument("--prompt-tokens", type=positive_int, default=200, help="approximate prompt length in tokens")
    p.add_argument("--n-items", type=positive_int, default=12000)
    p.add_argument("--levels", type=positive_int, default=3)
    p.add_argument("--codebook", type=positive_int, default=256)
    p.add_argument("--beams", type=positive_int, nargs="+", default=[10, 50])
    p.add_argument("--topk", type=positive_int, default=10, help="items per user (<= beams for the hf backends)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="prompts per batch (all backends)")
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=["torch", "hf", "hf-prefix-fn"],
                   help="vllm needs .venv-vllm (scripts/_env_vllm.sh)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed runs per setting; the best is reported")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--sid-softmax", choices=("vocab", "level"), default="vocab",
                   help="how a SID token is scored: its softmax over the whole vocabulary (a pretrained LLM, the "
                        "default) or over its level's codes only (models trained with sft.sid_softmax: level, the "
                        "default of sidrec's own CPU models); level writes decode_<device>_<shape>_level")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results")
    return p


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> tuple[float, float, object]:
    _sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, result


def _best_time(fn, device, repeats: int, floor=None) -> tuple[float, float, object, tuple[float, float]]:
    """``(wall seconds, CPU seconds of this process, result, floor)`` of the fastest of ``repeats`` runs of ``fn``.

    ``floor`` (a function) is timed just before each run and its fastest ``(wall, CPU)`` returned, so a ratio to it
    compares runs made under the same load on a shared machine. The CPU seconds are the steadier figure there: time
    the process waited for a core is not in them.
    """
    best, cpu, result, floor_best = float("inf"), float("inf"), None, (float("inf"), float("inf"))
    for _ in range(repeats):
        if floor is not None:
            floor_best = min(floor_best, _timed(floor, device)[:2])
        seconds, cpu_seconds, result = _timed(fn, device)
        if seconds < best:
            best, cpu = seconds, cpu_seconds
    return best, cpu, result, floor_best


def main(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sidrec.decode import recommend
    from sidrec.decode.tiny import build_tokenizer
    from sidrec.decode.torch_backend import left_pad, tokenize_prompts
    from sidrec.sid import SidTable

    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = round(os.getloadavg()[0], 2)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rng = np.random.default_rng(args.seed)
    codes = np.unique(rng.integers(0, args.codebook, size=(int(args.n_items * 1.1) + 16, args.levels)), axis=0)
    codes = codes[rng.permutation(len(codes))[:args.n_items]]
    table = SidTable([f"item{i}" for i in range(len(codes))], codes, codebook_sizes=[args.codebook] * args.levels)
    tokenizer = build_tokenizer(table)
    shape = dict(SHAPES[args.model_shape])
    shape["vocab_size"] = max(shape["vocab_size"], len(tokenizer))
    torch.manual_seed(args.seed)
    config = Qwen2Config(**shape, max_position_embeddings=4096, bos_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = Qwen2ForCausalLM(config).to(device=device, dtype=dtype).eval()
    if args.model_shape == "tiny":  # peaked next-token distributions, as a trained model has
        with torch.no_grad():
            model.lm_head.weight.normal_(0.0, 0.5)

    per_item = args.levels + 2  # "<a_x><b_y><c_z>, " is levels tokens + a separator
    history_len = max(1, (args.prompt_tokens - 8) // per_item)
    histories = rng.integers(0, len(table.item_ids), size=(args.n_prompts, history_len))
    prompts = ["User history: " + ", ".join(table.item_sid_string(table.item_ids[i]) for i in row) + ". Next item:"
               for row in histories]
    token_lists = tokenize_prompts(tokenizer, prompts)
    prompt_lengths = [len(t) for t in token_lists]

    def prefill() -> None:
        # From the same text prompts the backends get: tokenize, pad, one forward pass. (Timing the forward pass of
        # pre-tokenized ids alone left tokenization, ~25% of it on the tiny model, on the backends' side only.)
        with torch.inference_mode():
            for start in range(0, len(prompts), args.batch_size):
                batch_ids, batch_mask = left_pad(tokenize_prompts(tokenizer, prompts[start:start + args.batch_size]),
                                                 tokenizer.pad_token_id)
                model(input_ids=batch_ids.to(device), attention_mask=batch_mask.to(device), logits_to_keep=1)

    prefill()  # warm-up
    prefill_s, prefill_cpu_s, _, _ = _best_time(prefill, device, args.repeats)
    engine = _vllm_engine(model, tokenizer, dtype, max(prompt_lengths) + args.levels + 8) \
        if "vllm" in args.backends else None
    level_softmax = args.sid_softmax == "level"
    rows = []
    for beams in args.beams:
        topk = min(args.topk, beams)
        results = {}
        for backend in args.backends:
            decoder = engine if backend == "vllm" else model

            def run(backend=backend, beams=beams, topk=topk, decoder=decoder):
                if backend == "vllm":
                    decoder.reset_prefix_cache()  # no timed run reuses the prefill of an earlier one
                return recommend(decoder, tokenizer, prompts, table, beams=beams, topk=topk, backend=backend,
                                 batch_size=args.batch_size, level_softmax=level_softmax)

            recommend(decoder, tokenizer, prompts[:2], table, beams=beams, topk=topk, backend=backend,
                      level_softmax=level_softmax)  # warm-up
            seconds, cpu_seconds, ranked, (floor_s, floor_cpu_s) = _best_time(run, device, args.repeats, prefill)
            valid = sum(item in table.item_index for r in ranked for item, _ in r)
            total = sum(len(r) for r in ranked)
            results[backend] = ranked
            rows.append({"beams": beams, "backend": backend, "seconds": round(seconds, 4),
                         "cpu_seconds": round(cpu_seconds, 4), "floor_seconds": round(floor_s, 4),
                         "floor_cpu_seconds": round(floor_cpu_s, 4),
                         "fraction_of_prefill_floor": round(floor_s / seconds, 4),
                         "cpu_fraction_of_prefill_floor": round(floor_cpu_s / cpu_seconds, 4),
                         "users_per_s": round(len(prompts) / seconds, 2), "items_returned": total,
                         "valid_items": valid})
            print(f"beams {beams:3d} {backend:13s} {seconds:8.3f} s  {len(prompts) / seconds:9.1f} users/s  "
                  f"valid {valid}/{total}", flush=True)
        if "torch" in results:
            for backend, ranked in results.items():
                same_top1 = np.mean([a[:1] and b[:1] and a[0][0] == b[0][0] for a, b in zip(ranked, results["torch"])])
                same_list = np.mean([[i for i, _ in a] == [i for i, _ in b] for a, b in zip(ranked, results["torch"])])
                row = next(r for r in rows if r["beams"] == beams and r["backend"] == backend)
                row["top1_agrees_with_torch"] = round(float(same_top1), 4)
                row["topk_list_equals_torch"] = round(float(same_list), 4)
    floor = len(prompts) / prefill_s
    summary = []
    for beams in args.beams:
        by = {r["backend"]: r for r in rows if r["beams"] == beams}
        entry = {"beams": beams}
        if "torch" in by:
            entry["torch_fraction_of_prefill_floor"] = by["torch"]["fraction_of_prefill_floor"]
            entry["torch_cpu_fraction_of_prefill_floor"] = by["torch"]["cpu_fraction_of_prefill_floor"]
            for other in ("hf-prefix-fn", "hf", "vllm"):
                if other in by:
                    entry[f"torch_over_{other}"] = round(by["torch"]["users_per_s"] / by[other]["users_per_s"], 2)
        summary.append(entry)
    from sidrec.benchmark import environment

    # "+dirty" only for changes to what this benchmark runs (others may be editing unrelated files).
    code = ("sidrec/sid.py", "sidrec/decode/__init__.py", "sidrec/decode/torch_backend.py", "sidrec/decode/tiny.py",
            "sidrec/decode/hf_backend.py", "sidrec/decode/vllm_backend.py", "scripts/bench_decode.py",
            "sidrec/benchmark/decode.py")
    report = {"benchmark": "decode", **environment(str(device), dirty_paths=code),
              "config": {**vars(args), "dtype": str(dtype), "model_params": sum(p.numel() for p in model.parameters()),
                         "prompt_tokens_mean": float(np.mean(prompt_lengths)), "n_items": len(table.item_ids)},
              "prefill_floor": {"seconds": round(prefill_s, 4), "cpu_seconds": round(prefill_cpu_s, 4),
                                "users_per_s": round(floor, 2)},
              "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
              "versions": _versions(args.backends),
              "results": rows, "summary": summary}
    out = Path(args.out)
    stem = f"decode_{device.type}_{args.model_shape}" + ("_level" if level_softmax else "")
    from sidrec.benchmark import write_report

    write_report(out, stem, report, _markdown(report))
    print(_markdown(report))
    return report


def _vllm_engine(model, tokenizer, dtype, max_model_len: int):
    """A ``vllm.LLM`` over ``model``'s weights (saved with the tokenizer to a temporary folder), set up by
    :func:`sidrec.decode.vllm_backend.make_llm`."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from sidrec.decode.vllm_backend import make_llm

    folder = Path(tempfile.mkdtemp(prefix="bench_decode_vllm-"))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return make_llm(str(folder), dtype=str(dtype).removeprefix("torch."), max_model_len=max_model_len)


def _versions(backends) -> dict[str, str]:
    import transformers

    versions = {"transformers": transformers.__version__}
    if "vllm" in backends:
        import vllm

        versions["vllm"] = vllm.__version__
    return versions


def _markdown(report: dict) -> str:
    cfg = report["config"]
    versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
    load = report.get("load_average_1min")
    lines = [f"# Constrained SID decoding benchmark ({cfg['model_shape']}, {report['device']})", "",
             f"{report['date']}, commit {report['commit']}, torch {report['torch']}"
             f"{', ' + versions if versions else ''}, {cfg['dtype']}, "
             f"{cfg['model_params']:,} parameters; {cfg['n_prompts']} prompts of ~{cfg['prompt_tokens_mean']:.0f} "
             f"tokens, {cfg['n_items']:,} items, {cfg['levels']} levels x {cfg['codebook']} codes, top-{cfg['topk']}, "
             f"batch {cfg['batch_size']}, best of {cfg['repeats']}; SID tokens scored by their softmax over "
             + ("their level's codes (sid_softmax: level)" if cfg.get("sid_softmax") == "level"
                else "the whole vocabulary")
             + (f"; machine load average {load['start']} at the start, {load['end']} at the end" if load else "")
             + ".", "",
             f"Prefill-only floor: {report['prefill_floor']['seconds']} s = "
             f"{report['prefill_floor']['users_per_s']} users/s"
             + (f" ({report['prefill_floor']['cpu_seconds']} CPU s)" if "cpu_seconds" in report['prefill_floor']
                else "") + " (tokenizing the text prompts, padding and one forward pass: what every backend does "
             "before its first decode step), timed before the backends. Each row's ratio uses the floor timed again just before "
             "each of that row's runs (\"floor s\", best of the repeats), so both were measured under the same load. "
             "Users/s, seconds and \"of prefill floor\" are wall-clock figures (best of the repeats); \"CPU s\" is "
             "the CPU time of this process in that same run, and \"of floor, CPU\" the floor's CPU time over it, the "
             "steadier ratio when other processes share the cores (see the load average above).", "",
             "| beams | backend | users/s | of prefill floor | seconds | floor s | CPU s | of floor, CPU | "
             "valid items | top-1 = torch | top-K list = torch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['beams']} | {r['backend']} | {r['users_per_s']} | {r.get('fraction_of_prefill_floor', '')} | "
                     f"{r['seconds']} | {r.get('floor_seconds', '')} | {r.get('cpu_seconds', '')} | "
                     f"{r.get('cpu_fraction_of_prefill_floor', '')} | "
                     f"{r['valid_items']}/{r['items_returned']} | "
                     f"{r.get('top1_agrees_with_torch', '')} | {r.get('topk_list_equals_torch', '')} |")
    others = [b for b in ("hf-prefix-fn", "hf", "vllm") if any(f"torch_over_{b}" in s for s in report["summary"])]
    names = {"hf-prefix-fn": "hf+prefix_fn", "hf": "hf+processor", "vllm": "vllm"}
    lines += ["", "| beams | " + " | ".join(f"torch / {names[b]}" for b in others)
              + " | torch / prefill floor | same, CPU time |", "|---|" + "---|" * (len(others) + 2)]
    for s in report["summary"]:
        lines.append(f"| {s['beams']} | " + " | ".join(str(s.get(f"torch_over_{b}", "")) for b in others)
                     + f" | {s.get('torch_fraction_of_prefill_floor', '')} | "
                     f"{s.get('torch_cpu_fraction_of_prefill_floor', '')} |")
    lines += ["", "Command: `python scripts/bench_decode.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in cfg.items() if k in ("device", "model_shape", "n_prompts", "prompt_tokens", "n_items", "levels",
                                         "codebook", "beams", "topk", "batch_size", "repeats", "threads", "backends",
                                         "sid_softmax")
        and v is not None) + "`" + (" (in .venv-vllm: `source scripts/_env_vllm.sh`)" if "vllm" in cfg["backends"]
                                    else ""), ""]
    return "\n".join(lines)
