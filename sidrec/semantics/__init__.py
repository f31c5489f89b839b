"""Stage ``semantics``: item text embeddings, sensory attributes (ASEGR teacher + student) and their fusion.

Public surface: :class:`SemanticsConfig`, :func:`run_semantics` (the stage), :func:`embed_new_items` (cold start:
embed items outside the catalogue with the trained models), the extractors :class:`LexiconExtractor` and
:class:`LLMExtractor` with the robust parser :func:`parse_llm_output`, and the metrics in
:mod:`sidrec.semantics.metrics`.
"""

from sidrec.semantics.extract import ItemTexts, LexiconExtractor
from sidrec.semantics.stage import SemanticsConfig, embed_new_items, load_semantics_config, run_semantics
from sidrec.semantics.teacher import LLMExtractor, ParseStats, parse_llm_output

__all__ = ["ItemTexts", "LLMExtractor", "LexiconExtractor", "ParseStats", "SemanticsConfig", "embed_new_items",
           "load_semantics_config", "parse_llm_output", "run_semantics"]
