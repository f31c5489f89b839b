"""The torch backend: exact, level-synchronous constrained beam search over SIDs with the KV cache.

Every SID has exactly ``n_levels`` tokens, so beam search needs no end-of-sequence bookkeeping: the prompt batch is
prefilled once (only the last position's logits are computed), then there is one decode step per SID level. At each
level, every live beam's allowed children (from the dense trie) are scored with the model's full-vocabulary
log-probability, and the exact top-``beams`` of those candidates per prompt are kept. The last level
needs no forward pass: its candidates are ranked directly and the top-``topk`` leaves are the recommended items.

The beams of a prompt share its prompt's keys and values instead of each copying them (tree attention, as
speculative decoders verify a token tree -- SpecInfer, Miao et al. 2024; Medusa, Cai et al. 2024). Each new token
attends to the prompt's real tokens, its own ancestors and itself, at the position after its SID prefix (on the
tree path counted from the padded prompt's start: rotary attention only sees position differences). Two paths:

- ``TREE_MODELS`` (Qwen2, Qwen3, Llama): a decode step runs ``model.model`` with :func:`tree_attention` as its
  attention function. The prefill's cache is read, never grown or copied: the beams of a prompt attend to it as one
  dense block (the heads sharing a KV head stacked as query rows), each beam attends to its own short path (kept
  apart in :class:`BeamTree`), and the two are merged by their log-sum-exps, as split-KV attention kernels do
  (FlashDecoding, Dao et al. 2023; cascade attention in FlashInfer, Ye et al. 2025). The step's logits are computed
  a cache-sized chunk of rows at a time and only at the beams' valid children (:class:`LevelChildren`).
- any other causal LM: the ``beams`` new tokens are appended to the prompt's one cache row as query positions, and a
  4D attention mask through ``model(...)`` restricts what each sees (sdpa or eager attention).

So a step costs ``batch x beams`` query tokens against one copy of the prompt, not ``batch x beams`` copies of the
prompt cache. Decode speed against the prefill-only floor: benchmarks/results/decode_cpu_tiny.md.

Exactness: when ``beams`` is at least the number of valid prefixes at every level, nothing is pruned and the
result equals ranking every item by its SID log-probability ``sum_l log p(code_l | prompt, code_<l)`` (the
quantity HF beam search also accumulates, since it masks after ``log_softmax``).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from weakref import WeakKeyDictionary

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


# Causal LMs whose logits are exactly ``lm_head(model.model(...).last_hidden_state)`` (no logit scaling or
# softcapping) and whose attention layers call a transformers attention function with no option but ``scaling``
# (and ``sliding_window``, None unless ``config.use_sliding_window``): for these the decode steps run
# :func:`tree_attention` inside ``model.model`` and apply the head themselves. Any other model takes the generic
# path (a 4D mask through ``model(...)``, its own attention, its cache grown by every step).
TREE_MODELS = ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM")
TREE_ATTENTION = "sidrec_tree"  # the name :func:`tree_attention` is registered under in transformers
# Bytes of float32 logits per head chunk: on CPU a chunk that stays in the cache is ~3x faster than one big
# (rows, vocab) matrix (measured on the tiny benchmark model: 3,200 rows x 1,167 tokens); half a MiB leaves room in
# a 1-2 MiB L2 for the head's weights. On GPU it bounds memory.
LOGIT_CHUNK_BYTES = {"cpu": 1 << 19}
DEVICE_LOGIT_CHUNK_BYTES = 1 << 28


@dataclass(frozen=True)
class LevelChildren:
    """The valid children of one trie level's nodes, packed to the left in code order.

    Nodes of a level are numbered consecutively from ``first_node`` (:class:`sidrec.sid.SidTrie`), so row
    ``node - first_node`` holds a node's children. Packing makes a step score ``max_children`` candidates per beam
    instead of the whole codebook (in the CPU benchmark's catalogue: 256, ~70 and ~6 at the three levels).
    """

    first_node: int
    codes: torch.Tensor  # (n_nodes, max_children) int64: the code of each child; 0 past a node's children
    nodes: torch.Tensor  # (n_nodes, max_children) int64: the child node; -1 past a node's children


_LEVEL_CHILDREN: WeakKeyDictionary[SidTable, dict[str, list[LevelChildren]]] = WeakKeyDictionary()
_SID_TOKEN_IDS: WeakKeyDictionary[SidTable, tuple] = WeakKeyDictionary()
_CHILD_TOKENS: WeakKeyDictionary[SidTable, tuple] = WeakKeyDictionary()


def level_children(sid_table: SidTable, device: torch.device) -> list[LevelChildren]:
    """One :class:`LevelChildren` per SID level of ``sid_table``'s trie on ``device`` (cached per table)."""
    per_device = _LEVEL_CHILDREN.setdefault(sid_table, {})
    if str(device) not in per_device:
        trie = sid_table.trie(device)
        levels = []
        for level, size in enumerate(trie.codebook_sizes):
            in_level = (trie.depth == level).nonzero().flatten()
            first, end = int(in_level[0]), int(in_level[-1]) + 1
            children = trie.children[first:end, :size]  # (n_nodes, size)
            valid = children >= 0
            max_children = max(int(valid.sum(-1).max()), 1)
            order = torch.sort((~valid).to(torch.uint8), dim=-1, stable=True).indices[:, :max_children]
            nodes = children.gather(1, order)
            levels.append(LevelChildren(first, order.masked_fill(nodes < 0, 0), nodes))
        per_device[str(device)] = levels
    return per_device[str(device)]


def cached_token_ids(sid_table: SidTable, tokenizer, device: torch.device) -> torch.Tensor:
    """:meth:`SidTable.token_ids` on ``device``, kept per table for its last tokenizer (building it reads the whole
    vocabulary, which costs more than a small decode batch); rebuilt when the tokenizer or its size changes."""
    cached = _SID_TOKEN_IDS.get(sid_table)
    if cached is not None and cached[0]() is tokenizer and cached[1:3] == (len(tokenizer), str(device)):
        return cached[3]
    token_ids = sid_table.token_ids(tokenizer).to(device)
    _SID_TOKEN_IDS[sid_table] = (weakref.ref(tokenizer), len(tokenizer), str(device), token_ids)
    return token_ids


def level_child_tokens(sid_table: SidTable, levels: list[LevelChildren], sid_token_ids: torch.Tensor
                       ) -> list[torch.Tensor]:
    """Per level, the vocab id of each packed child, ``(n_nodes, max_children)`` like ``LevelChildren.codes``; kept
    per table for the last ``sid_token_ids`` (a step then looks up one row per beam, not one id per child)."""
    cached = _CHILD_TOKENS.get(sid_table)
    if cached is None or not (cached[0] is sid_token_ids or (cached[0].device == sid_token_ids.device
                                                              and torch.equal(cached[0], sid_token_ids))):
        tables = [sid_token_ids[level].index_select(0, children.codes.view(-1)).view(children.codes.shape)
                  for level, children in enumerate(levels)]
        cached = _CHILD_TOKENS[sid_table] = (sid_token_ids, tables)
    return cached[1]


def _child_log_probs(features: torch.Tensor, head, tokens: torch.Tensor, chunk_rows: int,
                      norm_tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Full-vocabulary log-probabilities of some tokens per row: ``(rows, n)``.

    ``features`` are ``(rows, vocab)`` logits when ``head`` is None, else ``(rows, hidden)`` final hidden states
    that ``head`` projects to logits ``chunk_rows`` rows at a time into one reused buffer (the ``(rows, vocab)``
    matrix is never built); ``tokens``: ``(rows, n)`` vocab ids. ``log p = logit - logsumexp(logits)``, in float32
    whatever the model's dtype, as HF beam search scores (it masks after ``log_softmax``).

    The log-sum-exp is ``log(sum(exp(logits)))`` taken in place in the chunk's logits after the wanted logits are
    read: no second ``(rows, vocab)`` matrix of log-probabilities (half the memory traffic of ``log_softmax`` +
    ``gather``) and no max pass. A row whose sum overflows or comes close to float32's smallest normal number (a
    logit above ~88, or every logit below ~-69) is taken again in the max-shifted form, so every row keeps float32
    accuracy; the two forms differ by rounding only.

    ``norm_tokens`` (``(size,)`` vocab ids of one SID level's codebook): the softmax is over those tokens only
    (a level-softmax model: ``sid_softmax: level``) and ``tokens`` are positions in ``norm_tokens`` (codes); only
    those rows of the head are computed.
    """
    linear = isinstance(head, torch.nn.Linear) and head.bias is None
    weight = None if not linear else head.weight if norm_tokens is None else head.weight.index_select(0, norm_tokens)

    def project(block: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The chunk's logits (over ``norm_tokens`` when given), float32; a bias-free Linear head into ``out``."""
        if linear:
            logits = torch.mm(block, weight.t(), out=out)
        else:
            logits = block if head is None else head(block)
            if norm_tokens is not None:
                logits = logits.index_select(-1, norm_tokens)
        return logits.float()

    wanted = torch.empty(tokens.shape, dtype=torch.float32, device=tokens.device)
    total = torch.empty(tokens.shape[0], 1, dtype=torch.float32, device=tokens.device)
    buffer = None
    for start in range(0, tokens.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        block = features[rows]
        if linear and buffer is None:  # one buffer for every chunk's logits (no allocation per chunk)
            buffer = block.new_empty(min(chunk_rows, tokens.shape[0]), weight.shape[0])
        logits = project(block, buffer[:block.shape[0]] if linear else None)
        torch.gather(logits, 1, tokens[rows], out=wanted[rows])
        # ``features`` are the caller's: exponentiate a copy then, else in place
        torch.sum(logits.exp() if head is None else logits.exp_(), -1, keepdim=True, out=total[rows])
    unsafe = (~((total > _SAFE_SUM[0]) & (total < _SAFE_SUM[1]))).view(-1)
    total.log_()
    if bool(unsafe.any()):  # rare: those rows again, in the max-shifted form
        index = unsafe.nonzero().view(-1)
        logits = project(features.index_select(0, index))
        top = logits.amax(-1, keepdim=True)
        total[index] = (logits - top).exp_().sum(-1, keepdim=True).log_().add_(top)
    return wanted.sub_(total)


# A sum of exponentiated logits inside this range keeps float32's relative accuracy: every term that matters is a
# normal number (below ~1e-30, terms under the smallest normal, ~1.2e-38, could add a relative 1e-5 error per 1,000
# tokens) and nothing overflowed.
_SAFE_SUM = (1e-30, 3e38)


@dataclass
class BeamTree:
    """What :func:`tree_attention` reads in a decode step: the prompt's keys and values per layer, computed once by
    the prefill and shared by all beams (never copied), and each beam's own path, its earlier SID tokens' keys and
    values (all layers in one tensor per token, so following the beams is one gather per SID level)."""

    prompt_keys: list[torch.Tensor]  # per layer (batch, kv_heads, prompt_len, head_dim)
    prompt_values: list[torch.Tensor]
    prompt_bias: torch.Tensor | None  # (batch, 1, 1, prompt_len) additive: dtype min at padding; None: no padding
    paths: list[torch.Tensor]  # per earlier SID token (batch, width, layers, 2, kv_heads, head_dim): keys, values
    step: torch.Tensor | None = None  # this step's tokens, same shape: filled layer by layer by tree_attention

    def follow(self, parent: torch.Tensor) -> None:
        """Make the paths those of the next step's beams (the last step's tokens join them): ``parent``
        ``(batch, k)`` is the beam each extends."""
        batch, width = parent.shape
        paths = self.paths if self.step is None else [*self.paths, self.step]
        if paths:  # one row copy per new beam: index_select over (batch x old width) rows
            index = (parent + paths[0].shape[1] * torch.arange(batch, device=parent.device)[:, None]).view(-1)
            self.paths = [path.flatten(0, 1).index_select(0, index).view(batch, width, *path.shape[2:])
                          for path in paths]
        layers, kv_heads, head_dim = len(self.prompt_keys), *self.prompt_keys[0].shape[1:4:2]
        self.step = self.prompt_keys[0].new_empty(batch, width, layers, 2, kv_heads, head_dim)


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None, scale: float,
            fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention with an additive ``bias`` (None: no mask), and the log-sum-exp of each query's scores (to
    merge with attention over other keys): ``(batch, heads, q, d)`` against ``(batch, heads, k, d)`` -> ``(out, lse)``,
    float32. ``fused`` (default: on CPU) uses torch's flash-attention CPU kernel, which returns both; else matmuls."""
    if query.device.type == "cpu" if fused is None else fused:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, attn_mask=None if bias is None else bias.to(query.dtype), scale=scale)[:2]
        return out.float(), lse.float()
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)).mul_(scale)
    if bias is not None:
        scores.add_(bias)
    lse = scores.logsumexp(-1)
    return torch.matmul(torch.exp(scores - lse[..., None]), value.float()), lse


def tree_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask,
                   scaling: float | None = None, beam_tree: BeamTree | None = None, **kwargs
                   ) -> tuple[torch.Tensor, None]:
    """Attention of one decode step's beam tokens, as a transformers attention function (``TREE_ATTENTION``).

    ``query``, ``key``, ``value``: ``(batch, heads or kv_heads, width, head_dim)``, the ``width`` beam tokens of
    each prompt (positions already applied). Each attends to its prompt's real tokens, its ancestors and itself,
    computed in two parts merged by their log-sum-exps (as split-KV / cascade attention kernels do): all beams of a
    prompt against its one cached prompt (one dense product per prompt, the heads that share a KV head stacked as
    rows), and each beam against its own short path, one SID token at a time (a path holds at most ``n_levels``
    tokens, so these are a few elementwise products, not tiny matmuls). The step's keys and values are stored in
    ``beam_tree.step``. Returns ``((batch, width, heads, head_dim), None)``.
    """
    if beam_tree is None or kwargs.get("sliding_window") is not None:
        raise ValueError(f"{TREE_ATTENTION!r} attention is only for sidrec's beam search (beam_tree=...), without "
                         f"a sliding window; got beam_tree={beam_tree!r}, sliding_window={kwargs.get('sliding_window')}")
    layer = module.layer_idx
    batch, heads, width, head_dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scale = head_dim ** -0.5 if scaling is None else scaling
    # Beam-major layout (batch, width, kv_heads, groups, head_dim), the projections' own: with one KV head the
    # prompt part's query rows and output are views, not copies.
    query = query.transpose(1, 2).reshape(batch, width, kv_heads, groups, head_dim)
    out_prompt, lse_prompt = _attend(query.transpose(1, 2).reshape(batch, kv_heads, width * groups, head_dim),
                                     beam_tree.prompt_keys[layer], beam_tree.prompt_values[layer],
                                     beam_tree.prompt_bias, scale)
    out_prompt = out_prompt.view(batch, kv_heads, width, groups, head_dim).transpose(1, 2)
    lse_prompt = lse_prompt.view(batch, kv_heads, width, groups).transpose(1, 2)  # (batch, width, kv, groups)
    key, value = key.transpose(1, 2), value.transpose(1, 2)  # (batch, width, kv_heads, head_dim)
    beam_tree.step[:, :, layer, 0] = key
    beam_tree.step[:, :, layer, 1] = value
    path = [(p[:, :, layer, 0], p[:, :, layer, 1]) for p in beam_tree.paths] + [(key, value)]
    query = query.float()
    scores = [(query * k[:, :, :, None].float()).sum(-1).mul_(scale) for k, _ in path]  # each (b, w, kv, groups)
    top = lse_prompt
    for s in scores:
        top = torch.maximum(top, s)
    weight_prompt = (lse_prompt - top).exp_()
    weights = [(s - top).exp_() for s in scores]
    total = weight_prompt + sum(weights)
    out = out_prompt * (weight_prompt / total)[..., None]
    for w, (_, v) in zip(weights, path):
        out.addcmul_((w / total)[..., None], v[:, :, :, None].float())
    return out.to(value.dtype).reshape(batch, width, heads, head_dim), None


@contextmanager
def _attention_implementation(model, name: str):
    """Switch ``model``'s attention function for the duration (the decode steps); restored afterwards. Not for a
    model that another thread runs meanwhile."""
    from transformers import AttentionInterface

    if name not in AttentionInterface._global_mapping:
        AttentionInterface.register(name, tree_attention)
    previous = model.config._attn_implementation
    model.config._attn_implementation = name
    try:
        yield
    finally:
        model.config._attn_implementation = previous


def _tree_mask(prompt_mask: torch.Tensor, ancestors: torch.Tensor, past: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4D attention mask ``(batch, 1, width, past + width)`` of one decode step on the generic path.

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


_ITEM_PATHS: WeakKeyDictionary[SidTable, dict[str, torch.Tensor]] = WeakKeyDictionary()


def prefix_log_mass(sid_table: SidTable, item_logits: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``(batch, n_nodes)``: for every trie node (internal nodes, then leaves: :class:`sidrec.sid.SidTrie`), the log
    of the probability mass that ``softmax(item_logits)`` ``(batch, n_items)`` puts on the items under it (at a
    leaf: the item's own log-probability)."""
    per_device = _ITEM_PATHS.setdefault(sid_table, {})
    trie = sid_table.trie(device)
    if str(device) not in per_device:  # (n_items, n_levels - 1): each item's internal node below the root per level
        codes = torch.as_tensor(sid_table.codes, device=device)
        per_device[str(device)] = torch.stack([trie.walk(codes[:, :level]) for level in
                                               range(1, sid_table.n_levels)], 1) if sid_table.n_levels > 1 else \
            torch.zeros(len(codes), 0, dtype=torch.long, device=device)
    paths = per_device[str(device)]
    log_p = item_logits.log_softmax(-1)
    probs = log_p.exp()
    out = torch.full((log_p.shape[0], trie.n_internal + log_p.shape[1]), float("-inf"), device=device)
    mass = torch.zeros(log_p.shape[0], trie.n_internal, device=device)
    for level in range(paths.shape[1]):
        mass.index_add_(1, paths[:, level], probs)
    out[:, :trie.n_internal] = mass.clamp_min(torch.finfo(mass.dtype).tiny).log()
    out[:, trie.n_internal:] = log_p
    return out


@torch.inference_mode()
def beam_search_batch(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, sid_table: SidTable,
                      sid_token_ids: torch.Tensor, beams: int, topk: int, tree: bool | None = None,
                      level_softmax: bool = False, return_hidden: bool = False,
                      item_vectors: torch.Tensor | None = None, item_weight: float = 0.0):
    """Constrained beam search for one left-padded prompt batch (tree attention: module docstring).

    Args:
        input_ids, attention_mask: ``(batch, prompt_len)`` on the model's device, padded on the left.
        sid_token_ids: ``(n_levels, max_codebook)`` vocab ids from :meth:`SidTable.token_ids` (same device).
        beams: beam width kept after every level but the last.
        topk: items returned per prompt (may exceed ``beams``: the last level ranks all candidates).
        tree: decode steps through :func:`tree_attention` (default: when the model is one of ``TREE_MODELS``);
            False takes the generic path (a 4D mask through the model's own attention).
        level_softmax: score each SID token by its softmax over its level's codebook tokens only, as a model
            trained with ``sid_softmax: level`` predicts them (default: over the whole vocabulary).

        return_hidden: also return the final hidden state at each prompt's last position ``(batch, hidden)``, the
            state that predicts the first SID token (what :mod:`sidrec.item_head` scores items from).

        item_vectors, item_weight: the item head (:mod:`sidrec.item_head`; ``(n_items, hidden)`` item vectors):
            every prefix is ranked by its SID log-prob plus ``item_weight`` x the log of the item head's
            probability mass under that prefix, so the beam keeps prefixes either expert favours; at the last
            level the score is SID log-prob + ``item_weight`` x item-head log-prob (the returned score).

    Returns:
        ``(items, scores)``, both ``(batch, k)`` with ``k = min(topk, candidates)``: item indices into
        ``sid_table.item_ids`` (``-1`` where fewer valid items exist) and SID log-probabilities (``-inf`` there);
        with ``return_hidden``, ``(items, scores, hidden)``.
    """
    if tree is None:
        tree = type(model).__name__ in TREE_MODELS and not getattr(model.config, "use_sliding_window", False)
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None) or "sdpa"
    if not tree and attention not in ("sdpa", "eager"):
        raise ValueError(f"the torch decode backend needs attention that takes a 4D mask (sdpa or eager), the model "
                         f"uses {attention!r}: load it with attn_implementation='sdpa' or use backend 'hf'")
    device = input_ids.device
    levels = level_children(sid_table, device)
    child_token_table = level_child_tokens(sid_table, levels, sid_token_ids)
    batch, past = input_ids.shape  # past: columns in the cache (generic path: grows by every step)
    if tree:
        # RoPE, which every TREE_MODELS model uses, makes attention depend only on position differences, so a
        # left-padded prompt may keep its padding's positions (the same scores up to float rounding): one row of
        # positions serves the batch (the model builds its rotary table once, not per prompt), and the beams' SID
        # token of ``level`` is at ``past + level`` in every prompt.
        position_ids = torch.arange(past, device=device)[None]
        sid_position = torch.full((1, 1), past, device=device)
    else:
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        sid_position = attention_mask.sum(-1, keepdim=True)  # (batch, 1): real tokens per prompt
    prompt_hidden = None
    guided = item_vectors is not None and item_weight > 0
    if return_hidden or guided:  # the decoder, then the head on the last position (what logits_to_keep=1 computes)
        out = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  use_cache=True)
        prompt_hidden = out.last_hidden_state[:, -1]
        features = model.get_output_embeddings()(prompt_hidden)
    else:
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                    logits_to_keep=1)
        features = out.logits[:, -1]  # (batch, V) logits of the first SID token
    cache, head = out.past_key_values, None
    del out
    if guided:
        node_guide = item_weight * prefix_log_mass(sid_table, (prompt_hidden @ item_vectors.t()).float(), device)
    vocab = model.get_output_embeddings().weight.shape[0] if tree else features.shape[-1]
    chunk_rows = max(32, LOGIT_CHUNK_BYTES.get(device.type, DEVICE_LOGIT_CHUNK_BYTES) // (4 * vocab))
    dtype = next(model.parameters()).dtype
    rows = torch.arange(batch, device=device)[:, None]
    if tree:
        prompt_bias = None  # no padding: attention needs no mask
        if not bool(attention_mask.all()):
            prompt_bias = torch.zeros(batch, 1, 1, past, dtype=dtype, device=device)
            prompt_bias.masked_fill_(attention_mask[:, None, None, :] == 0, torch.finfo(dtype).min)
        beam_tree = BeamTree([layer.keys for layer in cache.layers], [layer.values for layer in cache.layers],
                             prompt_bias, [])

    node = torch.zeros(batch, 1, dtype=torch.long, device=device)  # (batch, width): trie node of each beam
    score = torch.zeros(batch, 1, device=device)  # (batch, width): SID log-prob so far
    alive = torch.ones(batch, 1, dtype=torch.bool, device=device)  # False for padding beams
    ancestors = torch.zeros(batch, 1, 0, dtype=torch.long, device=device)  # (batch, width, level): cache columns
    with _attention_implementation(model, TREE_ATTENTION) if tree else nullcontext():
        for level, children in enumerate(levels):
            width = node.shape[1]
            local = (node - children.first_node).clamp(0, children.codes.shape[0] - 1).view(-1)  # padding: any node
            n = children.codes.shape[1]  # max_children
            child_nodes = children.nodes.index_select(0, local).view(batch, width, n)
            allowed = (child_nodes >= 0) & alive[..., None]
            child_tokens = child_token_table[level].index_select(0, local).view(batch, width, n)  # vocab ids
            if level_softmax:  # the softmax over this level's codes: children are positions among them
                codes = children.codes.index_select(0, local).view(batch * width, n)
                norm = sid_token_ids[level, :sid_table.codebook_sizes[level]]
                log_probs = _child_log_probs(features, head, codes, chunk_rows, norm_tokens=norm)
            else:
                log_probs = _child_log_probs(features, head, child_tokens.view(batch * width, n), chunk_rows)
            candidates = log_probs.view(batch, width, n).add_(score[..., None]).masked_fill_(~allowed, float("-inf"))
            last = level == len(levels) - 1
            k = min(topk if last else beams, width * n)
            if guided:  # rank by SID log-prob + the item head's log-mass under the prefix; carry the SID part
                ranked = candidates.view(batch, -1) + node_guide.gather(1, child_nodes.clamp(min=0).view(batch, -1))
                score, flat = ranked.topk(k, dim=-1)
                if not last:
                    score = candidates.view(batch, -1).gather(1, flat)
            else:
                score, flat = candidates.view(batch, -1).topk(k, dim=-1)  # exact top-k of (width * n) per prompt
            node = child_nodes.view(batch, -1).gather(1, flat)
            alive = allowed.view(batch, -1).gather(1, flat)
            if last:
                break
            tokens = child_tokens.view(batch, -1).gather(1, flat)  # (batch, k)
            position = sid_position + level  # the position of every beam's token, broadcast over the beams
            if tree:
                beam_tree.follow(flat // n)
                hidden = model.model(input_ids=tokens, position_ids=position, use_cache=False,
                                     beam_tree=beam_tree).last_hidden_state
                features, head = hidden.reshape(batch * k, -1), model.lm_head  # (batch * k, hidden)
                continue
            ancestors = ancestors[rows, flat // n]  # (batch, k, level): the path of the beam each extends
            out = model(input_ids=tokens, attention_mask=_tree_mask(attention_mask, ancestors, past, dtype),
                        position_ids=position.expand(batch, k), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            features = out.logits.reshape(batch * k, -1)  # (batch * k, V)
            del out
            ancestors = torch.cat([ancestors, (past + torch.arange(k, device=device)).expand(batch, k)[..., None]],
                                  -1)
            past += k
    items = sid_table.trie(device).leaf_item(node).masked_fill(~alive, -1)
    if return_hidden:
        return items, score.masked_fill(~alive, float("-inf")), prompt_hidden
    return items, score.masked_fill(~alive, float("-inf"))


def recommend_torch(model, tokenizer, prompts: Sequence[str], sid_table: SidTable, beams: int = 50,
                    topk: int = 20, batch_size: int = 16, progress: bool = False, level_softmax: bool = False,
                    item_weight: float = 0.0, item_pool: int | None = None, item_search: str = "rerank"
                    ) -> list[list[tuple[str, float]]]:
    """Top-``topk`` items with SID log-probabilities for each prompt, best first (see :func:`beam_search_batch`).

    ``item_weight`` > 0 (a model trained with the item head, :mod:`sidrec.item_head`): items are ranked by ``SID
    log-prob + item_weight * item-head log-prob`` (the returned score). ``item_search`` ``rerank``: the SID beam
    search keeps its best ``item_pool`` candidates (default ``max(topk, beams)``), which are re-ranked by that sum;
    ``guided``: every level of the beam search ranks prefixes by their SID log-prob plus ``item_weight`` x the log
    of the item head's mass under them, so prefixes that only the item head favours stay in the beam.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    token_ids = cached_token_ids(sid_table, tokenizer, device)
    rerank = item_weight > 0
    if rerank:
        from sidrec.item_head import item_embeddings, item_token_ids

        with torch.inference_mode():
            item_vectors = item_embeddings(model.get_output_embeddings().weight,
                                           item_token_ids(sid_table, tokenizer, token_ids))
        pool = max(topk, item_pool or beams)
    token_lists = tokenize_prompts(tokenizer, prompts)
    pad = pad_id_of(tokenizer)
    results: list[list[tuple[str, float]]] = [[] for _ in prompts]
    batches = length_sorted_batches([len(t) for t in token_lists], batch_size)
    for index in tqdm(batches, desc="decode (torch)", disable=not progress):
        ids, mask = left_pad([token_lists[i] for i in index], pad)
        if rerank and item_search == "guided":
            items, scores = beam_search_batch(model, ids.to(device), mask.to(device), sid_table, token_ids, beams,
                                              topk, level_softmax=level_softmax, item_vectors=item_vectors,
                                              item_weight=item_weight)
        elif rerank:
            items, scores, hidden = beam_search_batch(model, ids.to(device), mask.to(device), sid_table, token_ids,
                                                      beams, pool, level_softmax=level_softmax, return_hidden=True)
            with torch.inference_mode():
                item_scores = (hidden @ item_vectors.t()).float().log_softmax(-1)
                scores = scores + item_weight * item_scores.gather(1, items.clamp(min=0))
                scores, order = scores.masked_fill(items < 0, float("-inf")).topk(min(topk, scores.shape[1]), -1)
                items = items.gather(1, order)
        else:
            items, scores = beam_search_batch(model, ids.to(device), mask.to(device), sid_table, token_ids, beams,
                                              topk, level_softmax=level_softmax)
        for row, i in enumerate(index):
            results[i] = [(sid_table.item_ids[it], sc) for it, sc in zip(items[row].tolist(), scores[row].tolist())
                          if it >= 0]
    return results
