"""How a benchmark scores a model: it writes the model's predictions file, then reads it with the one evaluator.

Nothing is ranked or scored in memory: a generative model goes through ``sidrec decode``
(:func:`sidrec.decode.run_decode`, which skips a file already made with the same options and inputs), the
popularity floor through ``sidrec baseline --model popularity`` (:func:`sidrec.baselines.train_baseline`), and both
files through :func:`sidrec.eval.evaluator.aligned_ranks`, which validates every line against the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def decode_model(model_dir: str | Path, run: str | Path, split: str, out: str | Path, *, beams: int, topk: int,
                 limit: int | None = None, max_history: int | None = None) -> tuple[Path, float | None]:
    """Write ``model_dir``'s predictions on ``split`` of ``RUN/data`` (SIDs: ``RUN/sids``) to ``out``: constrained
    beam search, torch backend, float32 on the CPU (how these benchmarks have always scored). Returns the file and
    the decoding seconds its ``sidrec decode`` marker records (of the call that made it)."""
    from sidrec.decode import DecodeConfig, run_decode
    from sidrec.decode.run import decode_seconds

    run = Path(run)
    path = run_decode(DecodeConfig(model=str(model_dir), sids=str(run / "sids"), data=str(run / "data"),
                                   backend="torch", beams=beams, topk=topk, split=split, out=str(out),
                                   device="cpu", dtype="float32", limit=limit, max_history=max_history))
    return path, decode_seconds(path)


def popularity_predictions(data_dir: str | Path, split: str, out: str | Path) -> Path:
    """The popularity floor's predictions on ``split`` (training counts, ties by item table order; history items
    not masked), written by ``sidrec baseline --model popularity`` to ``out``."""
    from sidrec.baselines import BaselineConfig, train_baseline
    from sidrec.config import resolve

    out = Path(out)
    return train_baseline(resolve(BaselineConfig, overrides={
        "model": "popularity", "data": str(data_dir), "split": split, "out": str(out), "device": "cpu",
        "checkpoint_dir": str(out.with_suffix(".train"))}))


def per_sample(predictions: str | Path, data, split: str, ks: Sequence[int], limit: int | None = None
               ) -> dict[str, np.ndarray]:
    """Per-sample HR/NDCG/MRR@K of a predictions file on the first ``limit`` samples of ``split`` (all when None),
    through the one evaluator (:func:`sidrec.eval.evaluator.aligned_ranks`)."""
    from sidrec.data.store import CanonicalData, load_data
    from sidrec.eval.evaluator import aligned_ranks
    from sidrec.eval.metrics import per_sample_metrics

    data = data if isinstance(data, CanonicalData) else load_data(data)
    return per_sample_metrics(aligned_ranks(predictions, data, split, limit=limit)[0], ks)


def without_mrr(per_sample_values: dict[str, np.ndarray]) -> dict[str, float]:
    """Means of the HR and NDCG columns (the pages of these benchmarks leave MRR out)."""
    from sidrec.eval.metrics import summarize

    return {k: v for k, v in summarize(per_sample_values).items() if not k.startswith("MRR")}
