"""Semantic IDs: the SID table (item <-> code tuple <-> token strings) and the dense trie of valid SIDs.

A SID is a tuple of codes, one per level; its token string spells each code with the level's letter, e.g.
``<a_12><b_201><c_7>`` (DESIGN: Semantic IDs). ``RUN/sids/sids.json`` maps ``item_id -> [c1, c2, c3, ...]``.

This module is shared by every decoder backend (``sidrec.decode``), the SFT validation callback and the GRPO
rollouts. Its public surface:

- :class:`SidTable` -- ``SidTable.load(path)``, ``.tokens()``, ``.item_sid_string(item)``, ``.parse(text)``,
  ``.token_ids(tokenizer)``, ``.trie()``.
- :class:`SidTrie` -- the trie as dense tensors: ``children[node, code] -> child node`` (``-1`` = invalid),
  ``allowed[node, code]`` (bool), node depth, and leaf -> item. Internal nodes are numbered level by level (root
  is 0); leaf ``n_internal + i`` is item ``i`` of the table.
- :class:`SidLogitsProcessor` -- a vectorised, transformers-compatible logits processor that masks every token
  but the SID tokens the trie allows after the already generated suffix (``generate(logits_processor=[...])``,
  GRPO rollouts).
  ``SidTable.logits_processor(tokenizer, prompt_length)`` builds one.
- :meth:`SidTable.prefix_allowed_tokens_fn` -- the reference constraint for ``generate(prefix_allowed_tokens_fn=)``
  on a plain Python dict trie (slow, independent of the dense tensors: used to cross-check them).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidrec.errors import InputError

LEVEL_LETTERS = string.ascii_lowercase
SID_TOKEN_RE = re.compile(r"<([a-z])_(\d+)>")
SIDS_FILE = "sids.json"


def sid_token(level: int, code: int) -> str:
    """The token string of ``code`` at ``level`` (0-based): ``sid_token(1, 201) == "<b_201>"``."""
    return f"<{LEVEL_LETTERS[level]}_{int(code)}>"


def _parse_code(value: Any, level: int) -> int:
    """One code of sids.json: an int (``12``) or its token string (``"<a_12>"``, MiniOneRec's index.json)."""
    if isinstance(value, bool):
        raise ValueError(f"level {level}: expected an integer code, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str):
        m = SID_TOKEN_RE.fullmatch(value.strip())
        if m and m.group(1) == LEVEL_LETTERS[level]:
            return int(m.group(2))
    raise ValueError(f"level {level}: expected an integer code or '{sid_token(level, 0)}'-style token, got {value!r}")


class SidTable:
    """Items and their SIDs, in a fixed item order (the order of ``sids.json``).

    ``codes[i]`` is the SID of ``item_ids[i]``; ``codebook_sizes[l]`` is the number of codes at level ``l`` (by
    default ``max code + 1``; a quantizer's ``stats.json`` with ``codebook_sizes`` / ``codebook_size`` overrides
    it so the token vocabulary covers unused codes too).
    """

    def __init__(self, item_ids: Sequence[str], codes: np.ndarray | Sequence[Sequence[int]],
                 codebook_sizes: Sequence[int] | None = None, source: str | None = None):
        self.source = source or "<memory>"
        self.item_ids: list[str] = [str(i) for i in item_ids]
        self.codes = np.asarray(codes, dtype=np.int64).reshape(len(self.item_ids), -1)  # (n_items, n_levels)
        if len(self.item_ids) == 0:
            raise InputError("SID table is empty", self.source)
        if self.codes.shape[1] == 0 or self.codes.shape[1] > len(LEVEL_LETTERS):
            raise InputError(f"SIDs must have 1 to {len(LEVEL_LETTERS)} levels, got {self.codes.shape[1]}",
                             self.source)
        if (self.codes < 0).any():
            bad = self.item_ids[int(np.argwhere(self.codes < 0)[0, 0])]
            raise InputError(f"item {bad!r} has a negative code", self.source)
        if len(set(self.item_ids)) != len(self.item_ids):
            raise InputError("duplicate item ids in the SID table", self.source)
        observed = (self.codes.max(axis=0) + 1).tolist()
        sizes = list(observed) if codebook_sizes is None else [int(s) for s in codebook_sizes]
        if len(sizes) != self.n_levels or any(s < o for s, o in zip(sizes, observed)):
            raise InputError(f"codebook sizes {sizes} do not cover the codes (need >= {observed} per level)",
                             self.source)
        self.codebook_sizes: list[int] = sizes
        _, first, counts = np.unique(self.codes, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = self.codes[first[np.argmax(counts > 1)]]
            items = [self.item_ids[i] for i in np.flatnonzero((self.codes == dup).all(axis=1))[:5]]
            raise InputError(f"SID {self._sid_string(dup)} is shared by items {items}: SIDs must be unique "
                             f"(the quantizer should add a disambiguation level)", self.source)

    # ---------------------------------------------------------------- construction
    @classmethod
    def load(cls, path: str | Path) -> SidTable:
        """Load ``RUN/sids`` (a folder holding ``sids.json``) or a ``sids.json`` file.

        ``sids.json`` is ``{item_id: [c1, c2, ...]}`` with integer codes (token strings such as ``"<a_12>"`` are
        accepted too). A ``stats.json`` beside it may give ``codebook_sizes`` (list) or ``codebook_size`` (int).
        Raises :class:`InputError` naming the file and item for a malformed entry.
        """
        path = Path(path)
        file = path / SIDS_FILE if path.is_dir() else path
        if not file.is_file():
            raise InputError(f"SID file not found (expected {SIDS_FILE} from `sidrec quantize`)", file)
        try:
            mapping = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON ({e.msg})", file, e.lineno) from None
        if not isinstance(mapping, dict):
            raise InputError("expected a JSON object {item_id: [codes]}", file)
        sizes = None
        stats_file = file.parent / "stats.json"
        if stats_file.is_file():
            try:
                stats = json.loads(stats_file.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                stats = {}
            if isinstance(stats.get("codebook_sizes"), list):
                sizes = stats["codebook_sizes"]
            elif isinstance(stats.get("codebook_size"), int):
                sizes = None if not mapping else [stats["codebook_size"]] * len(next(iter(mapping.values())))
        return cls.from_mapping(mapping, codebook_sizes=sizes, source=str(file))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Sequence[Any]], codebook_sizes: Sequence[int] | None = None,
                     source: str | None = None) -> SidTable:
        """Build from ``{item_id: [codes]}`` (codes as ints or level token strings)."""
        if not mapping:
            raise InputError("SID table is empty", source)
        n_levels = None
        rows = []
        for item, sid in mapping.items():
            if not isinstance(sid, (list, tuple)) or not sid:
                raise InputError(f"item {item!r}: expected a non-empty list of codes, got {sid!r}", source)
            if n_levels is None:
                n_levels = len(sid)
            elif len(sid) != n_levels:
                raise InputError(f"item {item!r}: {len(sid)} codes, but earlier items have {n_levels}", source)
            try:
                rows.append([_parse_code(c, level) for level, c in enumerate(sid)])
            except ValueError as e:
                raise InputError(f"item {item!r}: {e}", source) from None
        return cls(list(mapping), np.asarray(rows, dtype=np.int64), codebook_sizes, source)

    # ---------------------------------------------------------------- item <-> SID
    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_levels(self) -> int:
        return int(self.codes.shape[1])

    @cached_property
    def item_index(self) -> dict[str, int]:
        """item_id -> row of ``codes``."""
        return {item: i for i, item in enumerate(self.item_ids)}

    @cached_property
    def sid_to_item(self) -> dict[tuple[int, ...], str]:
        """SID code tuple -> item_id."""
        return {tuple(int(c) for c in row): item for item, row in zip(self.item_ids, self.codes)}

    def tokens(self) -> list[str]:
        """Every SID token string, level by level, codes in order: ``<a_0> ... <a_{K-1}> <b_0> ...``.

        This is the list to add to a tokenizer (all codebook entries, used or not, so the vocabulary is stable).
        """
        return [sid_token(level, code) for level, size in enumerate(self.codebook_sizes) for code in range(size)]

    def _sid_string(self, codes: Sequence[int]) -> str:
        return "".join(sid_token(level, c) for level, c in enumerate(codes))

    def item_sid(self, item_id: str) -> tuple[int, ...]:
        """The code tuple of ``item_id`` (KeyError naming the item if absent)."""
        try:
            return tuple(int(c) for c in self.codes[self.item_index[item_id]])
        except KeyError:
            raise KeyError(f"item {item_id!r} has no SID in {self.source}") from None

    def item_sid_string(self, item_id: str) -> str:
        """``"<a_12><b_201><c_7>"`` for ``item_id``."""
        return self._sid_string(self.item_sid(item_id))

    def item_tokens(self, item_id: str) -> list[str]:
        """``["<a_12>", "<b_201>", "<c_7>"]`` for ``item_id``."""
        return [sid_token(level, c) for level, c in enumerate(self.item_sid(item_id))]

    def parse(self, text: str) -> str | None:
        """The item whose full SID appears first in ``text`` (its tokens in level order, adjacent or separated by
        whitespace), or None when the text holds no complete, known SID.

        >>> t = SidTable(["x", "y"], [[1, 2], [1, 3]])
        >>> t.parse(" <a_1><b_3></s>"), t.parse("<a_1> <b_3>"), t.parse("<a_1><b_9>"), t.parse("<a_1>")
        ('y', 'y', None, None)
        """
        matches = list(SID_TOKEN_RE.finditer(text))
        for start, m in enumerate(matches):
            if m.group(1) != LEVEL_LETTERS[0] or start + self.n_levels > len(matches):
                continue
            window = matches[start:start + self.n_levels]
            ok = all(w.group(1) == LEVEL_LETTERS[level] for level, w in enumerate(window))
            ok = ok and all(not text[a.end():b.start()].strip() for a, b in zip(window, window[1:]))
            if ok:
                return self.sid_to_item.get(tuple(int(w.group(2)) for w in window))
        return None

    # ---------------------------------------------------------------- tokenizer and trie
    def token_ids(self, tokenizer) -> torch.Tensor:
        """Vocabulary ids of the SID tokens, ``(n_levels, max_codebook_size)`` int64, ``-1`` past a level's size.

        Raises :class:`InputError` when the tokenizer lacks SID tokens or splits one into several pieces (the
        align stage must add ``tokens()`` to the tokenizer).
        """
        sizes = self.codebook_sizes
        table = torch.full((self.n_levels, max(sizes)), -1, dtype=torch.long)
        vocab = tokenizer.get_vocab()
        missing = []
        for level, size in enumerate(sizes):
            for code in range(size):
                tok = sid_token(level, code)
                idx = vocab.get(tok)
                if idx is None:
                    missing.append(tok)
                else:
                    table[level, code] = idx
        if missing:
            raise InputError(f"the tokenizer lacks {len(missing)} of {sum(sizes)} SID tokens (e.g. {missing[:3]}); "
                             f"add SidTable.tokens() to it (sidrec align) before decoding", self.source)
        return table

    def logits_processor(self, tokenizer, prompt_length: int, eos_token_id: int | Sequence[int] | None = None
                         ) -> SidLogitsProcessor:
        """The vectorised trie constraint for ``model.generate(logits_processor=[...])`` (beam search, sampling,
        GRPO rollouts): see :class:`SidLogitsProcessor`. ``prompt_length`` is ``input_ids.shape[1]`` of the
        (left-padded) prompt batch."""
        return SidLogitsProcessor(self.trie(), self.token_ids(tokenizer), prompt_length, eos_token_id)

    def prefix_allowed_tokens_fn(self, tokenizer, prompt_length: int,
                                 eos_token_id: int | Sequence[int] | None = None
                                 ) -> Callable[[int, torch.Tensor], list[int]]:
        """The reference constraint for ``generate(prefix_allowed_tokens_fn=...)``: a plain Python dict trie.

        Tokens after ``prompt_length`` are the generated SID suffix; a complete SID allows only ``eos_token_id``
        (none when not given). Built from ``codes`` directly, independently of :class:`SidTrie`, so tests can
        cross-check the two. Slow (a Python lookup per row per step, the usual MiniOneRec-style constraint): the
        vectorised :class:`SidLogitsProcessor` is what the backends use.
        """
        token_ids = self.token_ids(tokenizer).tolist()
        allowed: dict[tuple[int, ...], set[int]] = {}
        for row in self.codes.tolist():
            ids = tuple(token_ids[level][c] for level, c in enumerate(row))
            for d in range(len(ids)):
                allowed.setdefault(ids[:d], set()).add(ids[d])
        table = {prefix: sorted(nxt) for prefix, nxt in allowed.items()}
        done = [] if eos_token_id is None else (
            [eos_token_id] if isinstance(eos_token_id, int) else sorted(eos_token_id))
        n_levels = self.n_levels

        def fn(batch_id: int, input_ids: torch.Tensor) -> list[int]:
            suffix = tuple(input_ids[prompt_length:].tolist())
            if len(suffix) >= n_levels:
                return done
            return table.get(suffix, done)

        return fn

    def trie(self, device: torch.device | str | None = None) -> SidTrie:
        """The dense trie of this table's SIDs, on ``device`` (default CPU); cached per device."""
        key = str(torch.device(device)) if device is not None else "cpu"
        if key not in self._tries:
            self._tries[key] = self.trie().to(key) if key != "cpu" else SidTrie.from_codes(self.codes,
                                                                                           self.codebook_sizes)
        return self._tries[key]

    @cached_property
    def _tries(self) -> dict[str, SidTrie]:
        return {}

    def __repr__(self) -> str:
        return f"SidTable({self.n_items} items, {self.n_levels} levels, codebooks {self.codebook_sizes})"


@dataclass
class SidTrie:
    """The trie of valid SIDs as dense tensors (CPU; ``.to(device)`` moves them).

    Internal nodes (depth 0 .. n_levels-1) are numbered level by level, root = 0; ``children[node, code]`` is
    the child node, or ``-1`` when ``code`` is not valid after that prefix. A child of a depth ``n_levels-1`` node
    is a leaf, numbered ``n_internal + item_index``. Walking from the root with an item's codes ends at its leaf.
    """

    children: torch.Tensor  # (n_internal, max_codebook_size) int64; -1 = invalid
    depth: torch.Tensor  # (n_internal,) int64, the level whose code a node's children consume
    codebook_sizes: list[int]

    @classmethod
    def from_codes(cls, codes: np.ndarray, codebook_sizes: Sequence[int]) -> SidTrie:
        """Build from ``codes`` (n_items, n_levels), vectorised per level (no loop over items)."""
        codes = np.asarray(codes, dtype=np.int64)
        n_items, n_levels = codes.shape
        # prefix_node[d][i] = id of the depth-d node on item i's path (depth 0 = root).
        prefix_node = [np.zeros(n_items, dtype=np.int64)]
        offset = 1
        for d in range(1, n_levels):
            _, inverse = np.unique(codes[:, :d], axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            prefix_node.append(offset + inverse)
            offset += int(inverse.max()) + 1
        n_internal = offset
        children = np.full((n_internal, max(codebook_sizes)), -1, dtype=np.int64)
        depth = np.zeros(n_internal, dtype=np.int64)
        for d in range(n_levels):
            child = prefix_node[d + 1] if d + 1 < n_levels else n_internal + np.arange(n_items)
            children[prefix_node[d], codes[:, d]] = child
            depth[prefix_node[d]] = d
        return cls(torch.from_numpy(children), torch.from_numpy(depth), list(codebook_sizes))

    @property
    def n_levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def n_internal(self) -> int:
        return int(self.children.shape[0])

    @property
    def allowed(self) -> torch.Tensor:
        """``(n_internal, max_codebook_size)`` bool: which codes may follow each internal node."""
        return self.children >= 0

    def to(self, device: torch.device | str) -> SidTrie:
        return SidTrie(self.children.to(device), self.depth.to(device), self.codebook_sizes)

    def step(self, node: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Children of ``node`` (any shape) through ``code`` (same shape); ``-1`` where invalid or ``node`` is not
        an internal node (a leaf or ``-1``)."""
        internal = (node >= 0) & (node < self.n_internal) & (code >= 0) & (code < self.children.shape[1])
        child = self.children[node.clamp(0, self.n_internal - 1), code.clamp(0, self.children.shape[1] - 1)]
        return torch.where(internal, child, torch.full_like(child, -1))

    def walk(self, codes: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """Node reached from ``start`` (default: root) after ``codes`` (rows, t); ``-1`` once a code is invalid."""
        node = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device) if start is None else start
        for t in range(codes.shape[1]):
            node = self.step(node, codes[:, t])
        return node

    def leaf_item(self, node: torch.Tensor) -> torch.Tensor:
        """Item index of leaf nodes; ``-1`` for anything else."""
        item = node - self.n_internal
        return torch.where(item >= 0, item, torch.full_like(item, -1))

    def vocab_mask(self, node: torch.Tensor, sid_token_ids: torch.Tensor, vocab_size: int,
                   eos: torch.Tensor | None = None) -> torch.Tensor:
        """``(rows, vocab_size)`` bool: the tokens allowed after each row's trie ``node`` ``(rows,)``.

        Internal nodes allow their children's SID tokens (``sid_token_ids``: ``(n_levels, max_codebook)`` vocab
        ids, same device); leaves and ``-1`` (a complete or invalid SID) allow only ``eos`` (nothing without it).
        """
        rows = node.shape[0]
        internal = (node >= 0) & (node < self.n_internal)
        safe = node.clamp(0, self.n_internal - 1)
        token = sid_token_ids[self.depth[safe]]  # (rows, C) vocab ids, -1 past the level's size
        allowed = (self.children[safe] >= 0) & (token >= 0) & internal[:, None]
        # Scatter into one extra column so masked/padded entries never collide with a real token.
        keep = torch.zeros(rows, vocab_size + 1, dtype=torch.bool, device=node.device)
        keep.scatter_(1, torch.where(allowed, token, torch.full_like(token, vocab_size)), True)
        keep = keep[:, :vocab_size]
        if eos is not None and eos.numel():
            keep[:, eos] |= ~internal[:, None]
        return keep


class SidLogitsProcessor:
    """Mask all tokens but the SID tokens the trie allows after the generated suffix; vectorised over rows.

    Call signature is transformers' ``LogitsProcessor`` (``(input_ids, scores) -> scores``), so it goes into
    ``generate(logits_processor=[...])`` for beam search, greedy decoding or sampling (GRPO rollouts). The
    generated suffix is ``input_ids[:, prompt_length:]``; the node it reaches is recomputed each step (at most
    ``n_levels`` gathers, no Python loop over rows). Allowed tokens keep their scores; everything else is -inf.
    After a complete SID only ``eos_token_id`` is allowed (without one, every token is masked: the caller must stop
    at ``max_new_tokens = n_levels``). A row whose suffix left the trie (not possible when this
    processor is applied from the first generated token) also gets only EOS.

    Note that masking after ``log_softmax`` (what beam search does) keeps the full-vocabulary normalisation: the
    beam scores are the model's true SID log-probabilities, as in the torch backend.
    """

    def __init__(self, trie: SidTrie, sid_token_ids: torch.Tensor, prompt_length: int,
                 eos_token_id: int | Sequence[int] | None = None):
        self.trie = trie
        self.prompt_length = int(prompt_length)
        self.sid_token_ids = sid_token_ids  # (n_levels, max_codebook_size), -1 past a level's size
        vocab_needed = int(sid_token_ids.max()) + 1
        self._code_of_token = torch.full((vocab_needed,), -1, dtype=torch.long)
        valid = sid_token_ids >= 0
        self._code_of_token[sid_token_ids[valid]] = torch.nonzero(valid)[:, 1]
        if eos_token_id is None:
            self.eos = torch.zeros(0, dtype=torch.long)
        else:
            self.eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id),
                                    dtype=torch.long)
        self._device: torch.device | None = None

    def _to(self, device: torch.device) -> None:
        if self._device != device:
            self.trie = self.trie.to(device)
            self.sid_token_ids = self.sid_token_ids.to(device)
            self._code_of_token = self._code_of_token.to(device)
            self.eos = self.eos.to(device)
            self._device = device

    def nodes(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Trie node reached by each row's generated suffix, ``(rows,)``; -1 when it left the trie."""
        self._to(input_ids.device)
        suffix = input_ids[:, self.prompt_length:]  # (rows, t)
        in_range = suffix < self._code_of_token.numel()
        codes = torch.where(in_range, self._code_of_token[suffix.clamp(max=self._code_of_token.numel() - 1)],
                            torch.full_like(suffix, -1))
        return self.trie.walk(codes)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        keep = self.trie.vocab_mask(self.nodes(input_ids), self.sid_token_ids, scores.shape[1], self.eos)
        return scores.masked_fill(~keep, float("-inf"))
