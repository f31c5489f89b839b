"""Side-by-side comparison of several models on one split: a markdown table with paired significance tests
against a reference model, and a PNG bar chart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sidrec.data.store import CanonicalData, load_data
from sidrec.eval.evaluator import aligned_ranks
from sidrec.eval.metrics import per_sample_metrics
from sidrec.eval.stats import paired_pvalue

TABLE_METRICS: tuple[str, ...] = ("HR@3", "HR@5", "HR@10", "HR@20", "NDCG@3", "NDCG@5", "NDCG@10", "NDCG@20",
                                  "MRR@10")


def default_names(predictions: Sequence[str | Path]) -> list[str]:
    """File stems, or where two files share a stem (``a/predictions/sft.jsonl``, ``b/predictions/sft.jsonl``), the
    shortest trailing parts of their paths that tell them apart (``a/predictions/sft``, ``b/predictions/sft``)."""
    paths = [Path(p).with_suffix("") for p in predictions]
    for depth in range(1, max((len(p.parts) for p in paths), default=1) + 1):
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(Path(p)) for p in predictions]  # the same file given twice: its full path, twice (rejected below)


def compare(predictions: Sequence[str | Path], data: str | Path | CanonicalData, split: str = "test",
            names: Sequence[str] | None = None, reference: str | None = None, test: str = "ttest",
            metrics: Sequence[str] = TABLE_METRICS, allow_missing: bool = False) -> dict[str, Any]:
    """Per-model metrics, and per-metric p-values of each model against ``reference`` (default: the first)."""
    data = data if isinstance(data, CanonicalData) else load_data(data)
    names = list(names) if names else default_names(predictions)
    if len(names) != len(predictions):
        raise ValueError(f"{len(names)} model names for {len(predictions)} prediction files: {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique: {names}")
    ks = sorted({int(m.split("@")[1]) for m in metrics})
    per_model = {}
    for name, path in zip(names, predictions):
        ranks, _ = aligned_ranks(path, data, split, allow_missing)
        per_model[name] = per_sample_metrics(ranks, ks)
    reference = reference or names[0]
    if reference not in per_model:
        raise ValueError(f"reference {reference!r} is not one of {names}")
    rows = {}
    for name in names:
        rows[name] = {m: float(per_model[name][m].mean()) for m in metrics}
    pvalues = {name: {m: paired_pvalue(per_model[name][m], per_model[reference][m], test) for m in metrics}
               for name in names if name != reference}
    return {"split": split, "reference": reference, "test": test, "metrics": list(metrics), "rows": rows,
            "pvalues": pvalues, "n_samples": len(data.split(split))}


def to_markdown(result: dict[str, Any], alpha: float = 0.05) -> str:
    """Markdown table; best value per column in bold; ``*`` marks p < alpha against the reference."""
    metrics, rows = result["metrics"], result["rows"]
    best = {m: max(r[m] for r in rows.values()) for m in metrics}
    lines = ["| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, row in rows.items():
        cells = []
        for m in metrics:
            cell = f"{row[m]:.4f}"
            if row[m] == best[m]:
                cell = f"**{cell}**"
            p = result["pvalues"].get(name, {}).get(m)
            if p is not None and p < alpha:
                cell += "*"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{result['n_samples']} {result['split']} samples; * = p < {alpha} against "
                 f"`{result['reference']}` ({'paired t-test' if result['test'] == 'ttest' else 'paired bootstrap'}).")
    return "\n".join(lines)


def plot_bars(result: dict[str, Any], path: str | Path, metrics: Sequence[str] = ("HR@5", "HR@10", "NDCG@5",
                                                                                   "NDCG@10")) -> Path:
    """Grouped bar chart (metrics on x, one bar per model) saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sidrec.artifacts import atomic_path

    metrics = [m for m in metrics if m in result["metrics"]]
    names = list(result["rows"])
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(metrics) + 0.4 * len(names)), 4))
    x = np.arange(len(metrics))
    for j, name in enumerate(names):
        vals = [result["rows"][name][m] for m in metrics]
        bars = ax.bar(x + (j - (len(names) - 1) / 2) * width, vals, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks(x, metrics)
    ax.set_xlabel("metric")
    ax.set_ylabel("value (mean over samples)")
    ax.set_title(f"Model comparison on the {result['split']} split ({result['n_samples']} samples)")
    ax.legend(fontsize=8)
    ax.margins(y=0.25)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
