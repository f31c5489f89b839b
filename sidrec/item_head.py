"""The item head: a whole-item softmax read off the SID model's own weights (LIGER-style hybrid ranking).

A SID model scores an item as a chain of per-level choices, so an item whose first codes are rarely followed by it
(a tail item under a popular prefix) loses at the first level and never reaches the beam. The item head scores every
item at once from the hidden state that predicts its first SID token::

    e_i = sum_l W[token(l, sid_i[l])]          (W: the model's output embeddings; no new parameters)
    p_item(i | history) = softmax_i(h . e_i)

Trained beside the SID tokens' loss (``sft.item_loss``: its weight, one term per item target), it asks the hidden
state to carry the whole item, not only its first code. At decoding the beam's candidates are re-ranked by
``SID log-prob + weight * item-head log-prob`` (every backend; ``decode.item_weight``), as LIGER ranks
generative candidates with its dense head. A model trained with it records ``item_head: sid_sum`` in its config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from sidrec.sid import SidTable

ITEM_HEAD = "sid_sum"


def item_head_of(model) -> str | None:
    """``"sid_sum"`` when ``model`` (a transformers model, a model folder or a ``vllm.LLM``) was trained with the
    item head."""
    import os

    if isinstance(model, (str, os.PathLike)):
        import json
        from pathlib import Path

        path = Path(model) / "config.json"
        return json.loads(path.read_text()).get("item_head") if path.is_file() else None
    config = getattr(model, "config", None)
    if config is None and hasattr(model, "llm_engine"):  # a vllm.LLM
        config = model.llm_engine.model_config.hf_config
    return getattr(config, "item_head", None)


def item_token_ids(sid_table: SidTable, tokenizer, token_ids: torch.Tensor | None = None) -> torch.Tensor:
    """``(n_items, n_levels)`` vocab ids of every item's SID tokens, in ``sid_table.item_ids`` order, on the device
    of ``token_ids`` (:meth:`SidTable.token_ids` of ``tokenizer``, looked up when not given)."""
    import torch

    ids = sid_table.token_ids(tokenizer) if token_ids is None else token_ids  # (n_levels, max_codebook)
    codes = torch.as_tensor(sid_table.codes, device=ids.device)
    return torch.stack([ids[level, codes[:, level]] for level in range(sid_table.n_levels)], dim=1)


def item_embeddings(weight: torch.Tensor, item_tokens: torch.Tensor) -> torch.Tensor:
    """``(n_items, hidden)``: the sum of each item's SID token rows of ``weight`` (the output embeddings)."""
    return weight.index_select(0, item_tokens.reshape(-1).to(weight.device)).view(
        *item_tokens.shape, weight.shape[-1]).sum(1)


class ItemTargets:
    """Finds the item targets of a batch: a position whose next ``n_levels`` labels are one item's SID tokens."""

    def __init__(self, item_tokens: torch.Tensor, vocab_size: int):
        import torch

        self.item_tokens = item_tokens
        n_items, levels = item_tokens.shape
        self.levels = levels
        self.level_of = torch.full((vocab_size,), -1, dtype=torch.long)
        self.base = int(item_tokens.max()) + 1
        for level in range(levels):
            self.level_of[item_tokens[:, level]] = level
        keys = torch.zeros(n_items, dtype=torch.long)
        for level in range(levels):
            keys = keys * self.base + item_tokens[:, level]
        self.keys, self.order = keys.sort()

    def find(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rows, positions, items)``: for each item target in ``labels`` ``(batch, T)`` (-100 = no target),
        the row and position of its first SID token and its index in ``sid_table.item_ids``."""
        import torch

        device = labels.device
        batch, length = labels.shape
        padded = torch.cat([labels, labels.new_full((batch, self.levels), -100)], 1)
        windows = padded.unfold(1, self.levels, 1)[:, :length]  # (batch, T, levels)
        safe = windows.clamp(min=0, max=len(self.level_of) - 1)
        level_of = self.level_of.to(device)
        ok = ((windows >= 0) & (windows < len(self.level_of))
              & (level_of[safe] == torch.arange(self.levels, device=device))).all(-1)
        rows, positions = ok.nonzero(as_tuple=True)
        keys = torch.zeros(len(rows), dtype=torch.long, device=device)
        for level in range(self.levels):
            keys = keys * self.base + safe[rows, positions, level]
        sorted_keys = self.keys.to(device)
        at = torch.searchsorted(sorted_keys, keys).clamp(max=len(sorted_keys) - 1)
        found = sorted_keys[at] == keys
        return rows[found], positions[found], self.order.to(device)[at[found]]


def prompt_states(model, tokenizer, prompts, batch_size: int = 32):
    """``(n_prompts, hidden)`` final hidden states at each prompt's last token (left-padded batches, positions
    counted over the real tokens), in inference mode."""
    import torch

    from sidrec.decode.torch_backend import left_pad, pad_id_of, tokenize_prompts

    device = next(model.parameters()).device
    tokens = tokenize_prompts(tokenizer, prompts)
    states = []
    with torch.inference_mode():
        for start in range(0, len(tokens), batch_size):
            ids, mask = left_pad(tokens[start:start + batch_size], pad_id_of(tokenizer))
            ids, mask = ids.to(device), mask.to(device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            hidden = model.get_decoder()(input_ids=ids, attention_mask=mask, position_ids=positions,
                                         use_cache=False).last_hidden_state
            states.append(hidden[:, -1].float())
    return torch.cat(states) if states else torch.zeros(0)


def rerank(model, tokenizer, prompts, ranked, sid_table: SidTable, weight: float, topk: int):
    """``ranked`` (per prompt, ``(item_id, SID log-prob)`` candidates from any decoder) re-ranked by ``SID
    log-prob + weight * item-head log-prob``, the first ``topk`` kept: what the torch backend does inside its
    beam search, for the hf and vllm backends (``model``: the transformers model of the same weights)."""
    import torch

    if not len(prompts):
        return ranked
    states = prompt_states(model, tokenizer, prompts)
    with torch.inference_mode():
        vectors = item_embeddings(model.get_output_embeddings().weight, item_token_ids(sid_table, tokenizer).to(
            model.device)).float()
    index = sid_table.item_index
    out = []
    for state, candidates in zip(states, ranked):
        head = (state @ vectors.t()).log_softmax(-1)[[index[item] for item, _ in candidates]].tolist()
        scored = [(item, score + weight * h) for (item, score), h in zip(candidates, head)]
        out.append(sorted(scored, key=lambda pair: -pair[1])[:topk])
    return out
