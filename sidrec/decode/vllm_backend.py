"""The vllm backend: vLLM's V1 engine + a batch-level trie logits processor, driving exact SID beam search.

What vLLM offers, and why this backend does not use it as is (STACK_NOTES, vLLM on CPU):

- ``LLM.beam_search`` takes no logits processor, and with structured outputs (a regex of all SIDs) it filters the
  top *unconstrained* candidates: valid SIDs, but not the exact constrained beam search (39/40 valid seen here).
- Sampling / greedy decoding with a custom logits processor guarantees valid SIDs, but is one sequence per
  request, not a ranked top-K.

So this backend runs the same level-synchronous beam search as the torch backend, with vLLM computing the
next-token distributions: for each SID level, one ``max_tokens=1`` request per live beam (prompt + the beam's SID
prefix; prefix caching makes the shared prompt a cache hit after the first level), with
:class:`SidTrieVllmProcessor` switched on per request through ``SamplingParams.extra_args``. The processor masks
every token but the trie node's children, and (``sid_logprobs``) writes the full-vocabulary log-probability into
the allowed logits; the engine runs with ``logprobs_mode="processed_logits"``, so the returned top logprobs are
exactly the candidates' log-probabilities. The top-``beams`` selection happens here, vectorised per level.
Exact like the torch backend (up to kernel numerics), at the cost of ``n_levels`` engine round trips.

The same processor serves constrained *sampling* with vLLM (e.g. GRPO rollouts through TRL's vLLM mode): pass
``extra_args={"sid_trie": path}`` (see :func:`write_trie_file`) and the generated tokens are walked through the
trie; after a complete SID only the EOS token is allowed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sidrec.decode.torch_backend import tokenize_prompts
from sidrec.sid import SidTable, SidTrie

if TYPE_CHECKING:
    from vllm import LLM

try:  # the processor must subclass vLLM's interface; without vllm the rest of sidrec still imports this module
    from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
    from vllm.v1.sample.logits_processor.builtin import process_dict_updates
except ImportError:  # pragma: no cover - exercised only where vllm is absent
    LogitsProcessor = object  # type: ignore[assignment,misc]
    BatchUpdate = Any  # type: ignore[assignment,misc]
    process_dict_updates = None


def write_trie_file(sid_table: SidTable, tokenizer, path: str | Path | None = None) -> str:
    """Save the trie and the SID token ids for :class:`SidTrieVllmProcessor` (which runs in the engine process);
    returns the file path to put in ``SamplingParams(extra_args={"sid_trie": path})``."""
    if path is None:
        fd, path = tempfile.mkstemp(prefix="sid_trie-", suffix=".pt")
        import os

        os.close(fd)
    trie = sid_table.trie()
    eos = tokenizer.eos_token_id
    torch.save({"children": trie.children, "depth": trie.depth, "codebook_sizes": trie.codebook_sizes,
                "sid_token_ids": sid_table.token_ids(tokenizer), "eos": -1 if eos is None else int(eos)}, path)
    return str(path)


@lru_cache(maxsize=8)
def _load_trie(path: str, device: str) -> tuple[SidTrie, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(trie, sid_token_ids, code_of_token, eos) on ``device``, cached per file."""
    blob = torch.load(path, weights_only=True)
    trie = SidTrie(blob["children"], blob["depth"], list(blob["codebook_sizes"])).to(device)
    sid_token_ids = blob["sid_token_ids"].to(device)
    code_of_token = torch.full((int(sid_token_ids.max()) + 1,), -1, dtype=torch.long)
    valid = blob["sid_token_ids"] >= 0
    code_of_token[blob["sid_token_ids"][valid]] = torch.nonzero(valid)[:, 1]
    eos = torch.tensor([blob["eos"]] if blob["eos"] >= 0 else [], dtype=torch.long, device=device)
    return trie, sid_token_ids, code_of_token, eos


class SidTrieVllmProcessor(LogitsProcessor):
    """vLLM V1 logits processor: trie-constrained SIDs for the requests that ask for it.

    Per-request switches (``SamplingParams.extra_args``):

    - ``sid_trie`` (str, required to switch it on): a file from :func:`write_trie_file`.
    - ``sid_node`` (int, default 0 = root): trie node the request starts from (its prompt already ends with that
      node's SID prefix; the beam search driver uses this).
    - ``sid_logprobs`` (bool or ``"level"``): replace allowed logits by full-vocabulary log-probabilities (use
      with ``logprobs_mode="processed_logits"`` to read exact candidate log-probs); ``"level"``: by their
      log-softmax among the SID level's codebook tokens (a model trained with ``sid_softmax: level``).

    The mask itself is one vectorised :meth:`SidTrie.vocab_mask` over the constrained rows; finding each row's
    node walks its (at most ``n_levels``) generated tokens.
    """

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.device = device
        # batch index -> (trie file, start node, normalise?, output token ids (live reference))
        self.requests: dict[int, tuple[str, int, bool, list[int]]] = {}

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        extra = sampling_params.extra_args or {}
        if "sid_trie" in extra and not Path(str(extra["sid_trie"])).is_file():
            raise ValueError(f"extra_args['sid_trie']: trie file not found: {extra['sid_trie']}")

    def is_argmax_invariant(self) -> bool:
        return False  # masking changes the argmax

    @staticmethod
    def _new_state(params, prompt_tok_ids, output_tok_ids):
        extra = params.extra_args or {}
        if "sid_trie" not in extra:
            return None
        mode = extra.get("sid_logprobs", False)
        return (str(extra["sid_trie"]), int(extra.get("sid_node", 0)), "level" if mode == "level" else bool(mode),
                output_tok_ids)

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.requests, batch_update, self._new_state)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.requests:
            return logits
        by_trie: dict[str, list[tuple[int, int, bool, list[int]]]] = {}
        for index, (path, node, normalise, output) in self.requests.items():
            by_trie.setdefault(path, []).append((index, node, normalise, output))
        for path, entries in by_trie.items():
            trie, sid_token_ids, code_of_token, eos = _load_trie(path, str(logits.device))
            rows = torch.tensor([e[0] for e in entries], dtype=torch.long, device=logits.device)
            start = torch.tensor([e[1] for e in entries], dtype=torch.long, device=logits.device)
            steps = max(len(e[3]) for e in entries)
            if steps:  # walk generated tokens (padded with -1 = "no step" handled by masking below)
                generated = torch.full((len(entries), steps), -1, dtype=torch.long)
                for r, e in enumerate(entries):
                    if e[3]:
                        generated[r, :len(e[3])] = torch.as_tensor(e[3][:steps])
                known = (generated >= 0) & (generated < code_of_token.numel())
                codes = torch.where(known, code_of_token[generated.clamp(0, code_of_token.numel() - 1)],
                                    torch.full_like(generated, -1)).to(logits.device)
                node = start
                lengths = torch.tensor([len(e[3]) for e in entries], device=logits.device)
                for t in range(steps):
                    stepped = trie.step(node, codes[:, t])
                    node = torch.where(t < lengths, stepped, node)
            else:
                node = start
            block = logits[rows]  # (rows, V)
            keep = trie.vocab_mask(node, sid_token_ids, block.shape[1], eos)
            normalise = torch.tensor([e[2] is True for e in entries], device=logits.device)
            if normalise.any():
                block = torch.where(normalise[:, None], block - torch.logsumexp(block, -1, keepdim=True), block)
            by_level = torch.tensor([e[2] == "level" for e in entries], device=logits.device)
            if by_level.any():  # each row's softmax among its next SID level's codes
                depth = trie.depth[node].masked_fill(~by_level, -1)
                for d in depth.unique().tolist():
                    if 0 <= d < len(trie.codebook_sizes):
                        at = depth == d
                        tokens = sid_token_ids[d, :trie.codebook_sizes[d]]
                        block[at] = block[at] - torch.logsumexp(block[at][:, tokens], -1, keepdim=True)
            logits[rows] = block.masked_fill(~keep, float("-inf"))
        return logits


def make_llm(model_path: str, dtype: str = "auto", max_logprobs: int = 512, eager: bool | None = None,
             **kwargs) -> LLM:
    """A ``vllm.LLM`` set up for :func:`recommend_vllm`: trie processor registered, processed logits returned,
    prefix caching on. Extra keyword arguments go to ``vllm.LLM``.

    ``eager`` (default: True without CUDA) skips torch.compile: on CPU compiling takes ~90 s, longer than a
    test or a small decode runs. Without CUDA, ``gpu_memory_utilization`` (on CPU: the fraction of host memory
    reserved for the KV cache) defaults to 0.25 instead of vLLM's 0.92, which fails on a shared machine.
    """
    import torch
    from vllm import LLM

    on_gpu = torch.cuda.is_available()
    options: dict[str, Any] = {"model": str(model_path), "dtype": dtype, "logits_processors": [SidTrieVllmProcessor],
                               "logprobs_mode": "processed_logits", "max_logprobs": max_logprobs,
                               "enable_prefix_caching": True, "seed": 0}
    if not on_gpu:
        options["gpu_memory_utilization"] = 0.25
    if eager if eager is not None else not on_gpu:
        options.update(enforce_eager=True, compilation_config={"mode": 0})
    options.update(kwargs)
    return LLM(**options)


def recommend_vllm(llm, tokenizer, prompts: Sequence[str], sid_table: SidTable, beams: int = 50, topk: int = 20,
                   progress: bool = False, level_softmax: bool = False) -> list[list[tuple[str, float]]]:
    """Top-``topk`` items per prompt by exact level-synchronous beam search on a vLLM engine (see module doc).
    ``level_softmax``: candidates scored by their softmax within their SID level (``sid_logprobs: "level"``).

    ``llm``: a ``vllm.LLM`` from :func:`make_llm`, or a model folder path (an engine is started, ~20 s on CPU).
    """
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    if isinstance(llm, (str, Path)):
        llm = make_llm(str(llm))
    trie_file = write_trie_file(sid_table, tokenizer)
    trie = sid_table.trie()
    sid_token_ids = sid_table.token_ids(tokenizer)
    n_prompts = len(prompts)
    prompt_ids = tokenize_prompts(tokenizer, prompts)
    # Beams per prompt: (n_prompts, width) node, score, alive, and the SID token prefix of each beam.
    node = torch.zeros(n_prompts, 1, dtype=torch.long)
    score = torch.zeros(n_prompts, 1)
    alive = torch.ones(n_prompts, 1, dtype=torch.bool)
    prefixes: list[list[list[int]]] = [[[]] for _ in range(n_prompts)]
    max_children = [int(trie.allowed[trie.depth == d].sum(-1).max()) for d in range(sid_table.n_levels)]
    try:
        for level, size in enumerate(sid_table.codebook_sizes):
            width = node.shape[1]
            live = [(p, b) for p in range(n_prompts) for b in range(width) if alive[p, b]]
            requests = [TokensPrompt(prompt_token_ids=prompt_ids[p] + prefixes[p][b]) for p, b in live]
            params = [SamplingParams(max_tokens=1, temperature=0.0, logprobs=max_children[level],
                                     extra_args={"sid_trie": trie_file, "sid_node": int(node[p, b]),
                                                 "sid_logprobs": "level" if level_softmax else True})
                      for p, b in live]
            outputs = llm.generate(requests, params, use_tqdm=progress)
            log_probs = torch.full((n_prompts, width, size), float("-inf"))  # (prompt, beam, code)
            code_of = {int(t): c for c, t in enumerate(sid_token_ids[level, :size].tolist())}
            for (p, b), out in zip(live, outputs):
                for token_id, lp in out.outputs[0].logprobs[0].items():
                    code = code_of.get(int(token_id))
                    if code is not None and lp.logprob > float("-inf"):
                        log_probs[p, b, code] = lp.logprob
            child = trie.children[node.clamp(min=0).view(-1), :size].view(n_prompts, width, size)
            allowed = (child >= 0) & alive[..., None] & torch.isfinite(log_probs)
            candidates = (score[..., None] + log_probs).masked_fill(~allowed, float("-inf")).view(n_prompts, -1)
            last = level == sid_table.n_levels - 1
            k = min(topk if last else beams, width * size)
            score, flat = candidates.topk(k, dim=-1)
            node = child.view(n_prompts, -1).gather(1, flat)
            alive = allowed.view(n_prompts, -1).gather(1, flat)
            if not last:
                level_tokens = sid_token_ids[level]
                prefixes = [[prefixes[p][int(f) // size] + [int(level_tokens[int(f) % size])] for f in flat[p]]
                            for p in range(n_prompts)]
    finally:
        Path(trie_file).unlink(missing_ok=True)
    items = trie.leaf_item(node).masked_fill(~alive, -1)
    return [[(sid_table.item_ids[it], sc) for it, sc in zip(items[p].tolist(), score[p].tolist()) if it >= 0]
            for p in range(n_prompts)]
