"""The torch backend: exact, level-synchronous constrained beam search over SIDs with the KV cache.

Every SID has exactly ``n_levels`` tokens, so beam search needs no end-of-sequence bookkeeping: the prompt batch is
prefilled once (only the last position's logits are computed), then there is one decode step per SID level. At each
level, every live beam's allowed children (from the dense trie) are scored with the model's full-vocabulary
log-probability, and the exact top-``beams`` of ``beams x codebook`` candidates per prompt are kept. The last level
needs no forward pass: its candidates are ranked directly and the top-``topk`` leaves are the recommended items.

The beams of a prompt share its KV cache row instead of each copying it (tree attention, as speculative decoders
verify a token tree -- SpecInfer, Miao et al. 2024; Medusa, Cai et al. 2024): a decode step appends the ``beams``
new tokens of a prompt to its one cache row as ``beams`` query positions, and a 4D attention mask lets each attend
to the prompt, to its own ancestors among the tokens appended before, and to itself. Each token gets the position
id it would have in its own sequence. So a step costs ``batch x beams`` query tokens against one copy of the prompt,
not ``batch x beams`` copies of the prompt cache: the memory traffic of a step no longer grows with
``beams x prompt length``, which is what made larger batches no cheaper per prompt.

Exactness: when ``beams`` is at least the number of valid prefixes at every level, nothing is pruned and the
result equals ranking every item by its SID log-probability ``sum_l log p(code_l | prompt, code_<l)`` (the
quantity HF beam search also accumulates, since it masks after ``log_softmax``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sidrec.sid import SidTable


def tokenize_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of already-formatted prompts (the SID is generated right after them)."""
    return tokenizer(list(prompts), add_special_tokens=False)["input_ids"]


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both ``(batch, max_len)``, padded on the left."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.as_tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


def pad_id_of(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return 0 if pad is None else int(pad)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), longest first."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _level_log_probs(logits: torch.Tensor, level_token_ids: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary log-probabilities of one level's SID tokens: ``(rows, V) -> (rows, C)``."""
    logits = logits.float()
    return logits[:, level_token_ids] - torch.logsumexp(logits, dim=-1, keepdim=True)


def _tree_mask(prompt_mask: torch.Tensor, ancestors: torch.Tensor, past: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4D attention mask ``(batch, 1, width, past + width)`` of one tree-attention decode step.

    ``prompt_mask``: ``(batch, prompt_len)`` 1 for real prompt tokens; ``ancestors``: ``(batch, width, depth)``
    cache columns of each new token's earlier SID tokens; ``past``: columns in the cache before this step. A new
    token attends to the real prompt tokens, its ancestors and itself.
    """
    batch, width, _ = ancestors.shape
    prompt_len = prompt_mask.shape[1]
    allowed = torch.zeros(batch, width, past + width, dtype=torch.bool, device=prompt_mask.device)
    allowed[:, :, :prompt_len] = prompt_mask.bool()[:, None, :]
    if ancestors.shape[-1]:
        allowed.scatter_(2, ancestors, True)
    allowed[:, :, past:] = torch.eye(width, dtype=torch.bool, device=prompt_mask.device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=prompt_mask.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


@torch.inference_mode()
def beam_search_batch(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, sid_table: SidTable,
                      sid_token_ids: torch.Tensor, beams: int, topk: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Constrained beam search for one left-padded prompt batch (tree attention: module docstring).

    Args:
        input_ids, attention_mask: ``(batch, prompt_len)`` on the model's device, padded on the left.
        sid_token_ids: ``(n_levels, max_codebook)`` vocab ids from :meth:`SidTable.token_ids` (same device).
        beams: beam width kept after every level but the last.
        topk: items returned per prompt (may exceed ``beams``: the last level ranks all candidates).

    Returns:
        ``(items, scores)``, both ``(batch, k)`` with ``k = min(topk, candidates)``: item indices into
        ``sid_table.item_ids`` (``-1`` where fewer valid items exist) and SID log-probabilities (``-inf`` there).
    """
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None) or "sdpa"
    if attention not in ("sdpa", "eager"):
        raise ValueError(f"the torch decode backend needs attention that takes a 4D mask (sdpa or eager), the model "
                         f"uses {attention!r}: load it with attn_implementation='sdpa' or use backend 'hf'")
    device = input_ids.device
    trie = sid_table.trie(device)
    sizes = trie.codebook_sizes
    batch = input_ids.shape[0]
    prompt_len = attention_mask.sum(-1)  # (batch,) real tokens per prompt
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                logits_to_keep=1)
    cache = out.past_key_values
    logits = out.logits[:, -1]  # (batch, V)
    del out
    mask_dtype = next(model.parameters()).dtype
    past = input_ids.shape[1]  # columns in the cache
    rows = torch.arange(batch, device=device)[:, None]

    node = torch.zeros(batch, 1, dtype=torch.long, device=device)  # (batch, width): trie node of each beam
    score = torch.zeros(batch, 1, device=device)  # (batch, width): SID log-prob so far
    alive = torch.ones(batch, 1, dtype=torch.bool, device=device)  # False for padding beams
    ancestors = torch.zeros(batch, 1, 0, dtype=torch.long, device=device)  # (batch, width, level): cache columns
    for level, size in enumerate(sizes):
        width = node.shape[1]
        level_tokens = sid_token_ids[level, :size]  # (C,)
        log_probs = _level_log_probs(logits, level_tokens).view(batch, width, size)
        child = trie.children[node.clamp(min=0).view(-1), :size].view(batch, width, size)
        allowed = (child >= 0) & alive[..., None]
        candidates = (score[..., None] + log_probs).masked_fill(~allowed, float("-inf")).view(batch, -1)
        last = level == len(sizes) - 1
        k = min(topk if last else beams, width * size)
        score, flat = candidates.topk(k, dim=-1)  # exact top-k of (width * C) per prompt
        node = child.view(batch, -1).gather(1, flat)
        alive = allowed.view(batch, -1).gather(1, flat)
        if last:
            break
        parent = flat // size  # (batch, k) beam each candidate extends
        code = flat % size
        ancestors = ancestors[rows, parent]  # (batch, k, level): the parent's path
        mask = _tree_mask(attention_mask, ancestors, past, mask_dtype)
        position = (prompt_len[:, None] + level).expand(batch, k)  # each token's position in its own sequence
        out = model(input_ids=level_tokens[code], attention_mask=mask, position_ids=position,
                    past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        logits = out.logits.reshape(batch * k, -1)  # (batch * k, V)
        del out
        ancestors = torch.cat([ancestors, (past + torch.arange(k, device=device)).expand(batch, k)[..., None]], -1)
        past += k
    items = trie.leaf_item(node).masked_fill(~alive, -1)
    return items, score.masked_fill(~alive, float("-inf"))


def recommend_torch(model, tokenizer, prompts: Sequence[str], sid_table: SidTable, beams: int = 50,
                    topk: int = 20, batch_size: int = 16, progress: bool = False) -> list[list[tuple[str, float]]]:
    """Top-``topk`` items with SID log-probabilities for each prompt, best first (see :func:`beam_search_batch`)."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    sid_token_ids = sid_table.token_ids(tokenizer).to(device)
    token_lists = tokenize_prompts(tokenizer, prompts)
    pad = pad_id_of(tokenizer)
    results: list[list[tuple[str, float]]] = [[] for _ in prompts]
    batches = length_sorted_batches([len(t) for t in token_lists], batch_size)
    for index in tqdm(batches, desc="decode (torch)", disable=not progress):
        ids, mask = left_pad([token_lists[i] for i in index], pad)
        items, scores = beam_search_batch(model, ids.to(device), mask.to(device), sid_table, sid_token_ids,
                                          beams, topk)
        for row, i in enumerate(index):
            results[i] = [(sid_table.item_ids[it], sc) for it, sc in zip(items[row].tolist(), scores[row].tolist())
                          if it >= 0]
    return results
