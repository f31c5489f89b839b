"""Stage ``evaluate``: one evaluator for every model (HR/NDCG/MRR@K over all items, head/tail groups)."""

from sidrec.eval.compare import compare, plot_bars, to_markdown
from sidrec.eval.evaluator import EvalConfig, evaluate
from sidrec.eval.metrics import DEFAULT_KS, per_sample_metrics, target_ranks

__all__ = ["DEFAULT_KS", "EvalConfig", "compare", "evaluate", "per_sample_metrics", "plot_bars", "target_ranks",
           "to_markdown"]
