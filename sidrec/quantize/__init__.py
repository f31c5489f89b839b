"""Stage ``quantize``: item embeddings -> unique semantic IDs (RQ-VAE or residual k-means).

Public surface: :class:`QuantizeConfig`, :func:`run_quantize` (the stage), :func:`assign_sids` and
:func:`add_items_to_sids` (cold start: SIDs for new items from the trained quantizer), :func:`load_quantizer`,
and :func:`sidrec.quantize.analysis.sid_stats` (statistics of any SID assignment).
"""

from sidrec.quantize.analysis import sid_stats
from sidrec.quantize.stage import QuantizeConfig, add_items_to_sids, assign_sids, load_quantizer, run_quantize

__all__ = ["QuantizeConfig", "add_items_to_sids", "assign_sids", "load_quantizer", "run_quantize", "sid_stats"]
