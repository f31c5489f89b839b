"""Stage ``evaluate``: one evaluator for every model (HR/NDCG/MRR@K over all items, head/tail groups), the
statistics of result tables (seed means with sample std, paired tests) and the evaluation protocol in words."""

from sidrec.eval.compare import compare, plot_bars, to_markdown
from sidrec.eval.evaluator import EvalConfig, aligned_ranks, evaluate
from sidrec.eval.metrics import DEFAULT_KS, per_sample_metrics, target_ranks
from sidrec.eval.protocol import check_ranking_protocol, ranking_protocol, split_protocol
from sidrec.eval.stats import mean_over_seeds, paired_delta, paired_pvalue, seed_stat

__all__ = ["DEFAULT_KS", "EvalConfig", "aligned_ranks", "check_ranking_protocol", "compare", "evaluate",
           "mean_over_seeds", "paired_delta", "paired_pvalue", "per_sample_metrics", "plot_bars", "ranking_protocol",
           "seed_stat", "split_protocol", "target_ranks", "to_markdown"]
