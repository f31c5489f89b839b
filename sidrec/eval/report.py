"""``report.md`` for a run: the comparison table (significance against the best baseline), head/tail breakdown,
PNG plots (metric bars, head/tail, learning and reward curves) and SID cluster examples with their keywords."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sidrec.artifacts import atomic_path, write_json, write_text
from sidrec.data.store import CanonicalData, load_data
from sidrec.eval.compare import compare, plot_bars, to_markdown
from sidrec.eval.evaluator import evaluate
from sidrec.eval.protocol import describe_ranking, predictions_exclude_history, split_protocol

GROUP_METRICS = ("HR@10", "NDCG@10")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    _plt().close(fig)
    return path


def plot_groups(metrics: dict[str, dict], path: Path, metric: str = "HR@10") -> Path:
    """Bars of ``metric`` per model for head/tail items and users."""
    plt = _plt()
    groups = ["head_items", "tail_items", "head_users", "tail_users"]
    names = list(metrics)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) + 0.4 * len(names)), 4))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(groups))
    for j, name in enumerate(names):
        vals = [metrics[name]["groups"][g][metric] for g in groups]
        ax.bar(x + (j - (len(names) - 1) / 2) * width, vals, width, label=name)
    ax.set_xticks(x, [g.replace("_", " ") for g in groups])
    ax.set_xlabel("sample group")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by head/tail item and user group")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def trainer_logs(folder: Path) -> list[dict[str, Any]]:
    """``log_history`` of the newest trainer_state.json under ``folder`` (or [] when there is none)."""
    states = sorted(folder.rglob("trainer_state.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    history = folder / "log_history.json"
    if history.is_file():
        return json.loads(history.read_text())
    return json.loads(states[-1].read_text()).get("log_history", []) if states else []


def plot_curves(logs: dict[str, list[dict]], keys: Sequence[str], path: Path, title: str) -> Path | None:
    """Line plot of the given log keys against the training step, one panel per key that has data."""
    series = []
    for stage, history in logs.items():
        for key in keys:
            pts = [(h["step"], h[key]) for h in history if key in h and "step" in h]
            if pts:
                series.append((f"{stage}: {key}", pts))
    if not series:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.4), squeeze=False)
    for ax, (label, pts) in zip(axes[0], series):
        steps, vals = zip(*pts)
        ax.plot(steps, vals, marker="o", ms=2)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(label.split(": ")[1])
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def sid_examples(run_dir: Path, data: CanonicalData, n_clusters: int = 5, per_cluster: int = 4) -> list[str]:
    """Markdown lines: the largest first-level SID clusters, their keywords and a few item titles."""
    sids_file = run_dir / "sids" / "sids.json"
    if not sids_file.is_file():
        return []
    sids = json.loads(sids_file.read_text())
    from sidrec.eval.explain import token_keywords

    keywords = token_keywords(run_dir / "align" / "sid_keywords.json")
    by_first: dict[int, list[str]] = {}
    for item, codes in sids.items():
        by_first.setdefault(int(codes[0]), []).append(item)
    titles = dict(zip(data.items["item_id"], data.items["title"]))
    lines = []
    for code, items in sorted(by_first.items(), key=lambda kv: -len(kv[1]))[:n_clusters]:
        token = f"<a_{code}>"
        kw = keywords.get(token, [])
        lines.append(f"- `{token}` ({len(items)} items) keywords: {', '.join(map(str, kw[:8])) or 'n/a'}")
        for item in items[:per_cluster]:
            lines.append(f"  - {item}: {titles.get(item, '')[:90]}")
    return lines


def write_report(run_dir: str | Path, data_dir: str | Path | None = None, split: str = "test",
                 generative: Sequence[str] = (), baselines: Sequence[str] = (), test: str = "ttest") -> Path:
    """Evaluate every ``RUN/predictions/*.jsonl`` and write ``RUN/report.md``, ``RUN/metrics/*.json`` and
    ``RUN/plots/*.png``. Significance is tested against the best baseline by NDCG@10 (or the first model)."""
    run_dir = Path(run_dir)
    data = load_data(data_dir or run_dir / "data")
    pred_files = sorted((run_dir / "predictions").glob("*.jsonl"))
    if not pred_files:
        raise FileNotFoundError(f"no predictions in {run_dir / 'predictions'}")
    names = [p.stem for p in pred_files]
    metrics = {}
    for name, path in zip(names, pred_files):
        metrics[name] = evaluate(path, data, split)
        write_json(run_dir / "metrics" / f"{name}.json", metrics[name])
    base = [n for n in names if n in baselines] or [n for n in names if n not in generative] or names
    best_baseline = max(base, key=lambda n: metrics[n]["overall"]["NDCG@10"])
    ordered = [n for n in names if n in generative] + [n for n in names if n not in generative]
    result = compare([run_dir / "predictions" / f"{n}.jsonl" for n in ordered], data, split, names=ordered,
                     reference=best_baseline, test=test)
    write_json(run_dir / "metrics" / "comparison.json", result)
    plots = run_dir / "plots"
    figures = [("Metric comparison", plot_bars(result, plots / "metrics.png")),
               ("Head/tail breakdown (HR@10)", plot_groups({n: metrics[n] for n in ordered}, plots / "head_tail.png"))]
    logs = {stage: trainer_logs(run_dir / stage) for stage in ("sft", "grpo")}
    curve = plot_curves({"sft": logs["sft"]}, ("loss", "eval_loss", "eval_HR@10", "eval_NDCG@10"),
                        plots / "sft_curves.png", "SFT learning curves")
    if curve:
        figures.append(("SFT learning curves", curve))
    reward_keys = ["reward", "kl"] + sorted({k for h in logs["grpo"] for k in h if k.startswith("rewards/")
                                             and k.endswith("/mean")})
    curve = plot_curves({"grpo": logs["grpo"]}, reward_keys, plots / "grpo_curves.png", "GRPO reward and KL")
    if curve:
        figures.append(("GRPO reward and KL curves", curve))
    md = [f"# sidrec report: {run_dir.name}", "",
          f"Dataset `{data.root}` ({data.stats['source']}, {data.stats['n_users']:,} users, "
          f"{data.stats['n_items']:,} items); split `{split}`, {len(data.split(split)):,} samples; "
          f"{split_protocol(data.stats)}, {ranking_text(pred_files, run_dir)}.", "", "## Comparison", "", to_markdown(result), "",
          f"Significance reference: best baseline by NDCG@10 = `{best_baseline}`.", "",
          "## Head / tail breakdown", "", "| model | group | n | HR@10 | NDCG@10 |", "|---|---|---|---|---|"]
    for n in ordered:
        for g, vals in metrics[n]["groups"].items():
            md.append(f"| {n} | {g} | {vals['n_samples']} | {vals['HR@10']:.4f} | {vals['NDCG@10']:.4f} |")
    md += ["", "## Plots", ""]
    md += [f"![{title}](plots/{p.name})" for title, p in figures]
    examples = sid_examples(run_dir, data)
    if examples:
        md += ["", "## SID clusters (largest first-level codes)", ""] + examples
    md += ["", "## Reproducibility", "", reproducibility(run_dir)]
    for note in data.stats.get("notes", []):
        md += ["", f"> note: {note}"]
    out = run_dir / "report.md"
    write_text(out, "\n".join(md) + "\n")
    return out


def ranking_text(pred_files: Sequence[Path], run_dir: Path) -> str:
    """The ranking protocol the predictions were made under (their decode sidecars / baseline summaries), in words;
    a bold warning naming the models when they differ. Files that record nothing count as ranked over all items
    (the default of ``sidrec decode`` and ``sidrec baseline``)."""
    return describe_ranking({p.stem: bool(predictions_exclude_history(p, run_dir)) for p in pred_files})


def reproducibility(run_dir: str | Path) -> str:
    """Whether this run's figures repeat when it is run again (README: Reproducibility): always on CPU for the same
    config, seed and thread count, killed and resumed or not; not exactly under a time budget or on GPU kernels."""
    import yaml

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    budgets = []
    for section in ("sft", "grpo"):
        options = dict(config.get(section) or {})
        file = options.get("config_file")
        if file and Path(file).is_file():
            options = {**(yaml.safe_load(Path(file).read_text()) or {}), **options}
        if options.get("max_minutes") is not None:
            budgets.append(f"{section}.max_minutes {options['max_minutes']}")
    budgets += [f"baseline {b.get('model')}/{b.get('fusion', 'id')} max_minutes {b['max_minutes']}"
                for b in config.get("baselines") or [] if isinstance(b, dict) and b.get("max_minutes") is not None]
    devices = set()
    for summary in [run_dir / "sft" / "sft_summary.json", *sorted(run_dir.glob("baselines/*/summary.json"))]:
        try:
            devices.add(str(json.loads(summary.read_text()).get("device", "")))
        except (OSError, ValueError):
            continue
    gpu = sorted(d for d in devices if d.startswith("cuda"))
    text = ("Same config, seed and thread count (`OMP_NUM_THREADS`) on CPU: a rerun, also one killed and resumed "
            "anywhere, gives these figures exactly (byte-identical predictions; tests/test_reproducibility.py). "
            "Timings are measurements of this machine and its load, never repeatable.")
    if gpu:
        text += (f" Trained on {', '.join(gpu)}: " + (
            "with `--deterministic` (deterministic torch kernels), repeatable on the same GPU model and software."
            if config.get("deterministic") else
            "GPU kernels are not all deterministic, so a rerun may differ in the last digits; "
            "`sidrec pipeline --deterministic` switches on torch's deterministic algorithms."))
    if budgets:
        text += (f" **Not exactly repeatable here**: training stopped on a time budget ({'; '.join(budgets)}), "
                 "and where it stops depends on the machine's speed and load; without the budget the run repeats.")
    return text

