"""Semantic IDs on Amazon Industrial_and_Scientific: our RQ-VAE (and rq-kmeans) beside MiniOneRec's own SIDs.

Runs the stages through the real CLI, one subprocess each with OMP_NUM_THREADS=1, and records the wall and CPU time
of each: ``prepare`` (MiniOneRec copy in ../shared), ``semantics`` (sensory + text + fuse,
configs/semantics/industrial.yaml), ``quantize`` (RQ-VAE, configs/quantize/industrial.yaml) and ``rq-kmeans``
(configs/quantize/rq_kmeans.yaml). Then it compares the SID assignments: uniqueness, collision rate before
resolution, per-level code usage and perplexity, and whether items sharing a first-level code (or the first two)
are more alike than random pairs -- by the cosine of their text embeddings (MiniLM, our text encoder) and, as a
measure independent of any encoder, of their TF-IDF title+description vectors. MiniOneRec's SIDs
(``index/<D>.index.json``, keyed by the same item indices as our prepared item ids) get the same statistics; they
have no collision-resolution step, so their "before" is their final assignment.

How to run it: ``scripts/bench_quantize.py`` (its docstring has the commands).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from sidrec.benchmark import ROOT, cpu_name, git_commit, write_report

STAGES = ("prepare", "semantics", "quantize", "rq-kmeans")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="../shared/data/minionerec-amazon18", help="MiniOneRec data folder")
    p.add_argument("--dataset", default="Industrial_and_Scientific")
    p.add_argument("--run", default="runs/quant/ind", help="run folder (data/, semantics/, sids/, sids_rqk/)")
    p.add_argument("--stages", nargs="*", default=[], choices=[*STAGES, "all"],
                   help="stages to (re)run and time before the report (default: none, report only)")
    p.add_argument("--semantics-config", default="configs/semantics/industrial.yaml")
    p.add_argument("--quantize-config", default="configs/quantize/industrial.yaml")
    p.add_argument("--rq-kmeans-config", default="configs/quantize/rq_kmeans.yaml")
    p.add_argument("--out", default="benchmarks/results", help="where quantize_industrial.{json,md} go")
    return p


def stage_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    run = Path(args.run)
    return {
        "prepare": ["data", "prepare", "--source", "minionerec", "--path", args.source, "--dataset", args.dataset,
                    "--out", str(run / "data"), "--force"],
        "semantics": ["semantics", "all", "--config", args.semantics_config, "--data", str(run / "data"),
                      "--out", str(run / "semantics"), "--no-progress", "--force"],
        "quantize": ["quantize", "--config", args.quantize_config, "--semantics", str(run / "semantics"),
                     "--data", str(run / "data"), "--out", str(run / "sids"), "--no-progress", "--force"],
        "rq-kmeans": ["quantize", "--config", args.rq_kmeans_config, "--semantics", str(run / "semantics"),
                      "--data", str(run / "data"), "--out", str(run / "sids_rqk"), "--no-progress", "--force"],
    }


def run_stage(name: str, cli_args: list[str]) -> dict:
    """Run one stage as a child process on one thread; its wall time and CPU time (user + system)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sidrec.cli", *cli_args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"stage {name} failed (exit {proc.returncode})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(proc.stdout[-1500:])
    return {"command": "OMP_NUM_THREADS=1 sidrec " + shlex.join(cli_args), "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(None)}


# ---- statistics ------------------------------------------------------------------------------------------------------
def group_ids(codes, depth: int):
    """One integer per item naming its first ``depth`` codes."""
    import numpy as np

    return np.unique(codes[:, :depth], axis=0, return_inverse=True)[1].reshape(-1)


def pair_similarity_sparse(x, groups) -> dict[str, float]:
    """Mean dot product over item pairs sharing a group vs over all pairs, for a sparse (or dense) row matrix.

    ``sum_{i<j} x_i . x_j = (|sum_i x_i|^2 - sum_i |x_i|^2) / 2`` over the rows of a group, so no pair is enumerated.
    """
    import numpy as np
    import scipy.sparse as sp

    x = sp.csr_matrix(x)
    sq = np.asarray(x.multiply(x).sum(1)).ravel()

    def pair_sum(rows) -> float:
        s = np.asarray(x[rows].sum(0)).ravel()
        return (float(s @ s) - float(sq[rows].sum())) / 2

    same, pairs = 0.0, 0
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    for rows in np.split(order, bounds):
        if len(rows) > 1:
            same += pair_sum(rows)
            pairs += len(rows) * (len(rows) - 1) // 2
    n = x.shape[0]
    all_mean = pair_sum(np.arange(n)) / (n * (n - 1) // 2)
    same_mean = same / pairs if pairs else float("nan")
    return {"same": same_mean, "random": all_mean, "lift": same_mean - all_mean, "pairs": pairs}


def similarity_block(codes, text_emb, tfidf) -> dict:
    out = {}
    for depth in (1, 2):
        g = group_ids(codes, depth)
        out[f"prefix{depth}"] = {"text_cosine": pair_similarity_sparse(text_emb, g),
                                 "tfidf_cosine": pair_similarity_sparse(tfidf, g)}
    return out


def summarise(codes, sizes, text_emb, tfidf, before: dict | None = None, extra: dict | None = None) -> dict:
    from sidrec.quantize import sid_stats

    final = sid_stats(codes, sizes)
    pre = before if before is not None else final
    return {"n_items": final["n_items"], "levels": final["n_levels"], "codebook_sizes": final["codebook_sizes"],
            "unique_sids": final["unique_sids"], "unique_fraction": final["unique_fraction"],
            "collision_rate_before_resolution": pre["collision_rate"],
            "colliding_groups_before_resolution": pre["colliding_groups"],
            "largest_collision_group_before_resolution": pre["largest_collision_group"],
            "levels_before_resolution": pre["levels"], "levels_final": final["levels"],
            "similarity": similarity_block(codes[:, :3], text_emb, tfidf), **(extra or {})}


def load_ours(sids_dir: Path, ids: list[str]):
    import numpy as np

    table = json.loads((sids_dir / "sids.json").read_text())
    stats = json.loads((sids_dir / "stats.json").read_text())
    codes = np.array([table[i] for i in ids], dtype=np.int64)
    extra = {"method": stats["method"], "collision_resolution": stats["collision_resolution"],
             "reconstruction_mse": stats["reconstruction_mse"], "quantize_timings": stats["timings"],
             "training": stats["training"]}
    return codes, stats["codebook_sizes"], stats["before_resolution"], extra


def load_minionerec(source: Path, dataset: str, ids: list[str]):
    import numpy as np

    from sidrec.sid import SID_TOKEN_RE

    path = source / "index" / f"{dataset}.index.json"
    index = json.loads(path.read_text())
    missing = [i for i in ids if i not in index]
    rows = []
    for i in ids:
        rows.append([int(SID_TOKEN_RE.fullmatch(tok).group(2)) for tok in index[i]] if i in index else None)
    if missing:
        raise SystemExit(f"{len(missing)} of our items have no MiniOneRec SID ({missing[:5]}); {path}")
    return np.array(rows, dtype=np.int64), {"source": str(path), "items_mapped": len(ids) - len(missing),
                                            "items_in_index": len(index)}


def report(args: argparse.Namespace, timings: dict) -> dict:
    import numpy as np
    import torch
    from sklearn.feature_extraction.text import TfidfVectorizer

    from sidrec.data import load_data

    run = Path(args.run)
    ids = [str(i) for i in json.loads((run / "semantics" / "item_index.json").read_text())]
    text_emb = np.load(run / "semantics" / "text_emb.npy")
    data = load_data(run / "data")
    assert list(data.items["item_id"]) == ids, "item order of data/ and semantics/ differs"
    docs = [f"{r['title'] or ''} {r['description'] or ''}" for r in data.items]
    tfidf = TfidfVectorizer(stop_words="english", min_df=2, sublinear_tf=True).fit_transform(docs)
    systems = {}
    for name, folder in (("ours_rqvae", run / "sids"), ("ours_rq_kmeans", run / "sids_rqk")):
        if (folder / "sids.json").is_file():
            codes, sizes, before, extra = load_ours(folder, ids)
            systems[name] = summarise(codes, sizes, text_emb, tfidf, before, extra)
    mo_codes, mo_extra = load_minionerec(Path(args.source), args.dataset, ids)
    systems["minionerec"] = summarise(mo_codes, [256, 256, 256], text_emb, tfidf, None,
                                      {"method": "MiniOneRec RQ-VAE (their index.json, as shipped)", **mo_extra})
    sem_stats = json.loads((run / "semantics" / "stats.json").read_text())
    result = {
        "benchmark": "quantize_industrial", "dataset": args.dataset,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(None),
        "device": f"CPU ({cpu_name()}), {os.cpu_count()} cores shared with other jobs; stages on 1 thread",
        "torch": torch.__version__,
        "command": "python scripts/bench_quantize.py " + shlex.join(sys.argv[1:]),
        "configs": {"semantics": args.semantics_config, "quantize": args.quantize_config,
                    "rq_kmeans": args.rq_kmeans_config},
        "n_items": len(ids), "text_similarity_encoder": "all-MiniLM-L6-v2 (semantics/text_emb.npy)",
        "stage_timings": timings,
        "semantics_part_wall_s": {p: sem_stats.get(p, {}).get("wall_s") for p in ("sensory", "text", "fuse")},
        "systems": systems,
    }
    out = Path(args.out)
    write_report(out, "quantize_industrial", result, markdown(result))
    return result


def markdown(r: dict) -> str:
    systems = r["systems"]
    names = {"ours_rqvae": "ours: RQ-VAE", "ours_rq_kmeans": "ours: rq-kmeans", "minionerec": "MiniOneRec"}
    cols = [k for k in names if k in systems]
    head = "| | " + " | ".join(names[c] for c in cols) + " |\n|---|" + "---|" * len(cols)

    def row(label, fn) -> str:
        return f"| {label} | " + " | ".join(fn(systems[c]) for c in cols) + " |"

    def sim(s, depth, kind, key):
        return f"{s['similarity'][f'prefix{depth}'][kind][key]:.3f}"

    lines = [f"# Semantic IDs on {r['dataset']} ({r['n_items']:,} items)", "",
             f"{r['date']}, commit {r['commit']}, {r['device']}, torch {r['torch']}.", "",
             "Reproduce: `python scripts/bench_quantize.py --stages prepare semantics`, then `--stages quantize "
             "rq-kmeans` (each stage is timed in its own child process and the times are kept), then "
             f"`python scripts/bench_quantize.py` for the report (this file: `{r['command']}`). Configs: "
             + ", ".join(f"`{v}`" for v in r["configs"].values()) + ".", "",
             "## SIDs side by side", "", head,
             row("levels x codes", lambda s: " x ".join(map(str, s["codebook_sizes"]))),
             row("unique SIDs (final)", lambda s: f"{s['unique_sids']:,} ({s['unique_fraction']:.2%})"),
             row("collision rate before resolution", lambda s: f"{s['collision_rate_before_resolution']:.2%}"),
             row("colliding groups / largest, before", lambda s: f"{s['colliding_groups_before_resolution']} / "
                                                                 f"{s['largest_collision_group_before_resolution']}"),
             row("resolution", lambda s: _resolution(s))]
    for lv in range(3):
        lines.append(row(f"level {lv + 1}: used codes / perplexity",
                         lambda s, lv=lv: f"{s['levels_final'][lv]['used_codes']} / "
                                          f"{s['levels_final'][lv]['perplexity']:.1f}"))
    for lv in range(3):
        lines.append(row(f"largest group sharing the first {lv + 1} code(s)",
                         lambda s, lv=lv: str(s["levels_final"][lv]["largest_prefix_group"])))
    for depth in (1, 2):
        for kind, label in (("text_cosine", "text cosine (MiniLM)"), ("tfidf_cosine", "TF-IDF cosine")):
            lines.append(row(f"{label}: pairs sharing {depth} code(s) vs all pairs",
                             lambda s, d=depth, k=kind: f"{sim(s, d, k, 'same')} vs {sim(s, d, k, 'random')}"))
    lines.append(row("reconstruction MSE (unit-norm input)",
                     lambda s: f"{s['reconstruction_mse']:.3f}" if "reconstruction_mse" in s else "-"))
    mo = systems["minionerec"]
    lines += ["", "Per-level statistics of our SIDs are after collision resolution; the collision rate counts every "
              "item whose codes equal another item's (the share of items in a colliding group). MiniOneRec's "
              "index.json is already the output of its own resolution (rq/generate_indices.py re-quantizes each "
              "colliding group with Sinkhorn at the last level, up to 20 rounds; its pre-resolution rate is not "
              f"published) and still leaves {mo['n_items'] - mo['unique_sids']} items without a SID of their own "
              f"({mo['collision_rate_before_resolution']:.2%} of items in colliding groups; "
              f"{(mo['n_items'] - mo['unique_sids']) / mo['n_items']:.2%} by its own (items - unique SIDs) / items "
              "definition). Its first level uses few codes, so its first-level groups are large and a same-first-"
              "code mean is over coarser groups than ours. Text cosine uses our text encoder, which also fed our "
              "quantizer (item_emb = text + sensory), so it favours our SIDs; TF-IDF cosine over title + "
              "description is independent of both systems' encoders.", "",
              "## Stage times on CPU (one thread, shared 2-core machine)", "",
              "| stage | wall s | CPU s | command |", "|---|---|---|---|"]
    for name, t in r["stage_timings"].items():
        lines.append(f"| {name} | {t['wall_s']} | {t['cpu_s']} | `{t['command']}` |")
    parts = r["semantics_part_wall_s"]
    lines += ["", "Semantics parts (wall s, from semantics/stats.json): "
              + ", ".join(f"{k} {v}" for k, v in parts.items()) + ". Quantize (from sids/stats.json): "
              + ", ".join(f"{names[c]} train {systems[c]['quantize_timings']['train_s']} s, assign "
                          f"{systems[c]['quantize_timings']['assign_s']} s" for c in cols if c != "minionerec")
              + ".", ""]
    return "\n".join(lines)


def _resolution(s: dict) -> str:
    res = s.get("collision_resolution")
    if not res:
        return "none"
    if res["strategy"] == "reassign":
        return f"reassign: {res['moved_items']} items moved"
    return f"extra level of {res['extra_level_size']} codes"


def main(args: argparse.Namespace) -> dict:
    os.chdir(ROOT)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    timings_path = run / "bench_timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    commands = stage_commands(args)
    for stage in STAGES:
        if stage in args.stages or "all" in args.stages:
            print(f"== {stage}: sidrec {shlex.join(commands[stage])}", flush=True)
            timings[stage] = run_stage(stage, commands[stage])
            timings_path.write_text(json.dumps(timings, indent=2) + "\n")
            print(f"   {timings[stage]['wall_s']} s wall, {timings[stage]['cpu_s']} s CPU", flush=True)
    result = report(args, {s: timings[s] for s in STAGES if s in timings})
    print(markdown(result))
    return result
