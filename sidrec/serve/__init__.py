"""Using a finished run: recommendations for any history (``sidrec recommend``), an HTTP service
(``sidrec serve``) and cold-start items (``sidrec add-items``).

- :class:`Recommender` (:mod:`.recommender`): the run's model, tokenizer and catalogue loaded once; what both
  ``recommend`` and ``serve`` decode with.
- :mod:`.app`: the FastAPI service, with :class:`~sidrec.serve.batching.DynamicBatcher` decoding concurrent
  requests together.
- :func:`add_items` (:mod:`.catalog`): SIDs for new items from the trained quantizer, no retraining.

Heavy imports (torch, transformers, FastAPI) load only when a function that needs them runs.
"""

from sidrec.serve.catalog import add_items, read_new_items
from sidrec.serve.config import ServeConfig
from sidrec.serve.recommender import (
           Catalogue,
           Query,
           Recommender,
           generative_model_dir,
           recommend_for_history,
)

__all__ = ["Catalogue", "Query", "Recommender", "ServeConfig", "add_items", "generative_model_dir",
           "read_new_items", "recommend_for_history"]
