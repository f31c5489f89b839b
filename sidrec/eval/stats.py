"""Statistics for result tables: means over training seeds and paired tests over the samples of one split.

Two kinds of spread, never mixed: across seeds (:func:`seed_stat`, :func:`mean_over_seeds`) the spread is the
SAMPLE standard deviation (``ddof=1``, 0 for a single seed), the honest estimate from two or three runs; across
samples two models are compared on the very same samples by a paired test (:func:`paired_pvalue`,
:func:`paired_delta`), which tells a real gap from test-set noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

GROUPS: tuple[str, ...] = ("head_items", "tail_items", "head_users", "tail_users")


def seed_stat(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std"}`` of one number over seeds; ``std`` is the sample standard deviation (ddof=1), 0 for one.

    >>> {k: round(v, 6) for k, v in seed_stat([0.1, 0.2, 0.3]).items()}
    {'mean': 0.2, 'std': 0.1}
    """
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def mean_over_seeds(reports: Sequence[dict[str, Any]], groups: Sequence[str] = GROUPS) -> dict[str, Any]:
    """Mean of several :func:`sidrec.eval.evaluate` reports (one per seed, same samples): ``overall`` (means),
    ``overall_std`` (SAMPLE std over seeds, ddof=1; 0 for one seed), ``groups`` (means) and ``n_samples``."""
    keys = reports[0]["overall"]
    overall = {k: float(np.mean([r["overall"][k] for r in reports])) for k in keys}
    overall_std = {k: float(np.std([r["overall"][k] for r in reports], ddof=1)) if len(reports) > 1 else 0.0
                   for k in keys}
    group_means = {g: {k: float(np.mean([r["groups"][g][k] for r in reports])) for k in reports[0]["groups"][g]}
                   for g in groups}
    return {"overall": overall, "overall_std": overall_std, "groups": group_means,
            "n_samples": reports[0]["n_samples"]}


def paired_pvalue(a: np.ndarray, b: np.ndarray, test: str = "ttest", n_boot: int = 2000, seed: int = 0) -> float:
    """Two-sided p-value that per-sample metrics ``a`` and ``b`` (same samples, same order) have equal means.

    ``ttest``: paired t-test; ``wilcoxon``: Wilcoxon signed-rank test of the differences; ``bootstrap``:
    resampling the per-sample differences. 1.0 when the two never differ.
    """
    from scipy import stats as sps

    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not np.any(diff):
        return 1.0
    if test == "ttest":
        return float(sps.ttest_rel(a, b).pvalue)
    if test == "wilcoxon":
        return float(sps.wilcoxon(diff).pvalue)
    if test != "bootstrap":
        raise ValueError(f"test must be ttest, wilcoxon or bootstrap, not {test!r}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(min(1.0, 2 * min((means <= 0).mean(), (means >= 0).mean())))


def paired_delta(ours: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray],
                 metrics: Sequence[str] = ("HR@10", "NDCG@10"), test: str = "ttest") -> dict[str, dict[str, float]]:
    """``{metric: {"delta": mean(ours) - mean(ref), "p": paired p-value}}`` of per-sample metrics (same samples)."""
    return {m: {"delta": float(np.mean(ours[m]) - np.mean(ref[m])), "p": paired_pvalue(ours[m], ref[m], test)}
            for m in metrics}
