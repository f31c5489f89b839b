"""The hf backend: transformers ``generate`` beam search constrained by the SID trie.

Two constraints, same result: ``constraint="processor"`` (default) uses the vectorised
:class:`sidrec.sid.SidLogitsProcessor`; ``constraint="prefix_fn"`` uses ``prefix_allowed_tokens_fn`` over a Python
dict trie, the reference (and MiniOneRec's approach). Beam scores are summed full-vocabulary log-probabilities
(``length_penalty=0``; transformers masks after ``log_softmax``), so they match the torch backend's scores.

:func:`constrain_generate` wraps a model's ``generate`` so that every call is trie-constrained: what GRPO rollouts
use, since a logits processor cannot go through ``GRPOConfig(generation_kwargs=...)`` (STACK_NOTES).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import torch

from sidrec.decode.torch_backend import left_pad, length_sorted_batches, pad_id_of, tokenize_prompts
from sidrec.sid import SidLogitsProcessor, SidTable

Constraint = Literal["processor", "prefix_fn"]


def _items_of_suffix(sid_table: SidTable, processor: SidLogitsProcessor, sequences: torch.Tensor,
                     prompt_length: int) -> torch.Tensor:
    """Item index of each generated SID ``(rows,)``, -1 where the suffix is not a complete valid SID."""
    node = processor.nodes(sequences[:, :prompt_length + sid_table.n_levels])
    return processor.trie.leaf_item(node)


class LevelSoftmaxProcessor:
    """A logits processor for models trained with ``sid_softmax: level``: at generated step ``l`` the scores of
    SID level ``l``'s codebook tokens become their log-softmax among themselves, every other token ``-inf``.
    Placed before the trie constraint (which then masks the invalid children without renormalising), beam search
    sums exactly the per-level log-probabilities the torch backend ranks by. Works on logits or on
    log-probabilities (beam search hands it ``log_softmax`` scores): the softmax among a subset is the same."""

    def __init__(self, sid_token_ids: torch.Tensor, codebook_sizes: Sequence[int], prompt_length: int):
        self.levels = [sid_token_ids[level, :size] for level, size in enumerate(codebook_sizes)]
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_length
        if step >= len(self.levels):  # past the SID: nothing to normalise
            return scores
        tokens = self.levels[step].to(scores.device)
        level = scores.index_select(-1, tokens).float().log_softmax(-1).to(scores.dtype)
        return torch.full_like(scores, float("-inf")).index_copy_(-1, tokens, level)


@torch.inference_mode()
def recommend_hf(model, tokenizer, prompts: Sequence[str], sid_table: SidTable, beams: int = 50, topk: int = 20,
                 batch_size: int = 16, constraint: Constraint = "processor", progress: bool = False,
                 level_softmax: bool = False) -> list[list[tuple[str, float]]]:
    """Top-``min(topk, beams)`` items per prompt via ``model.generate(num_beams=beams)``; best first.
    ``level_softmax``: SID tokens scored by their softmax within their level (:class:`LevelSoftmaxProcessor`)."""
    from tqdm.auto import tqdm
    from transformers import LogitsProcessorList, PrefixConstrainedLogitsProcessor

    device = next(model.parameters()).device
    sid_token_ids = sid_table.token_ids(tokenizer).to(device)
    token_lists = tokenize_prompts(tokenizer, prompts)
    pad = pad_id_of(tokenizer)
    n_return = min(topk, beams)
    results: list[list[tuple[str, float]]] = [[] for _ in prompts]
    for index in tqdm(length_sorted_batches([len(t) for t in token_lists], batch_size), desc="decode (hf)",
                      disable=not progress):
        ids, mask = left_pad([token_lists[i] for i in index], pad)
        prompt_length = ids.shape[1]
        processor = SidLogitsProcessor(sid_table.trie(device), sid_token_ids, prompt_length)
        first = [LevelSoftmaxProcessor(sid_token_ids, sid_table.codebook_sizes, prompt_length)] if level_softmax \
            else []
        if constraint == "processor":
            constraint_kwargs = {"logits_processor": LogitsProcessorList([*first, processor])}
        elif first:  # the prefix constraint after the level softmax (generate's own would come before it)
            prefix = PrefixConstrainedLogitsProcessor(sid_table.prefix_allowed_tokens_fn(tokenizer, prompt_length),
                                                      beams)
            constraint_kwargs = {"logits_processor": LogitsProcessorList([*first, prefix])}
        else:
            constraint_kwargs = {"prefix_allowed_tokens_fn": sid_table.prefix_allowed_tokens_fn(tokenizer,
                                                                                                prompt_length)}
        beam_kwargs = {"length_penalty": 0.0, "early_stopping": True} if beams > 1 else {}
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=beams,
                             num_return_sequences=n_return, max_new_tokens=sid_table.n_levels,
                             min_new_tokens=sid_table.n_levels, do_sample=False, output_scores=True,
                             output_logits=beams == 1, return_dict_in_generate=True, pad_token_id=pad,
                             **beam_kwargs, **constraint_kwargs)
        items = _items_of_suffix(sid_table, processor, out.sequences, prompt_length).view(len(index), n_return)
        if beams > 1:
            scores = out.sequences_scores.float()
        else:  # greedy returns no sequence score: sum the raw logits' full-vocabulary log-probs
            generated = out.sequences[:, prompt_length:]
            if level_softmax:  # each step's softmax within its SID level
                norm = [first[0].levels[t].to(device) for t in range(sid_table.n_levels)]
                scores = sum(step.float().index_select(-1, norm[t]).log_softmax(-1).gather(
                    1, (sid_token_ids[t][None] == generated[:, t:t + 1]).float().argmax(-1, keepdim=True)).squeeze(1)
                    for t, step in enumerate(out.logits))
            else:
                scores = sum(step.float().log_softmax(-1).gather(1, generated[:, t:t + 1]).squeeze(1)
                             for t, step in enumerate(out.logits))
        scores = scores.view(len(index), n_return)
        for row, i in enumerate(index):
            results[i] = [(sid_table.item_ids[it], sc) for it, sc in zip(items[row].tolist(), scores[row].tolist())
                          if it >= 0 and sc > float("-inf")]
    return results


def constrain_generate(model, tokenizer, sid_table: SidTable, eos_token_id: int | None = None):
    """Wrap ``model.generate`` in place so every call appends a trie :class:`SidLogitsProcessor` (built with the
    prompt length ``input_ids.shape[1]`` of that call); returns the model.

    For GRPO rollouts (constrained sampling): the first ``n_levels`` generated tokens form a valid SID, then only
    ``eos_token_id`` (default: the tokenizer's) may follow. The policy loss still sees the full vocabulary. Undo
    with ``model.generate = model.generate.__wrapped__``.
    """
    sid_token_ids = sid_table.token_ids(tokenizer)
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    original = model.generate

    @functools.wraps(original)
    def generate(*args, **kwargs):
        from transformers import LogitsProcessorList

        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            raise ValueError("constrain_generate: call generate with input_ids (the prompt length is needed)")
        processor = SidLogitsProcessor(sid_table.trie(input_ids.device), sid_token_ids, input_ids.shape[1], eos)
        processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
        processors.append(processor)
        return original(*args, logits_processor=processors, **kwargs)

    model.generate = generate
    return model
