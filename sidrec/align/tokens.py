"""SID tokens in the vocabulary, and SA-Init (TS-Rec §3.2, "semantic-aware initialisation").

:func:`add_sid_tokens` adds one ordinary (non-special) token per ``(level, code)`` of the codebooks, so SID tokens
never split, survive ``decode(..., skip_special_tokens=True)`` and reload with the tokenizer, and resizes the
model's embeddings. :func:`sa_init` then sets each SID token's input embedding (and output embedding when the LM
head is not tied) to the mean of the model's own embeddings of its keywords' sub-tokens, instead of the random
vectors ``resize_token_embeddings`` gives.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch

from sidrec.sid import SidTable

log = logging.getLogger(__name__)


def add_sid_tokens(model, tokenizer, sid_table: SidTable, pad_to_multiple_of: int | None = None) -> int:
    """Add every SID token of ``sid_table``'s codebooks to ``tokenizer`` and resize ``model``'s embeddings.

    Returns the number of tokens added (0 when they were all there already). New rows start from the mean of the
    existing embeddings plus small noise (transformers' mean resizing); :func:`sa_init` overwrites them.
    """
    tokens = sid_table.tokens()
    vocab = tokenizer.get_vocab()
    new = [t for t in tokens if t not in vocab]
    if new:
        added = tokenizer.add_tokens(new, special_tokens=False)
        if added != len(new):
            raise RuntimeError(f"the tokenizer accepted {added} of {len(new)} SID tokens")
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer) or new:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to_multiple_of, mean_resizing=True)
    log.info("SID tokens: %d in the codebooks, %d added; vocabulary %d", len(tokens), len(new), len(tokenizer))
    return len(new)


def keyword_token_ids(tokenizer, keywords: Sequence[str]) -> list[int]:
    """Sub-token ids of ``keywords``, flattened in order. Each keyword is encoded as it appears inside a sentence
    (after a space), which is how the model has seen it: ``" vanilla"`` is one piece where ``"vanilla"`` may be
    several."""
    ids: list[int] = []
    for kw in keywords:
        ids += tokenizer.encode(" " + kw.strip(), add_special_tokens=False)
    return ids


@torch.no_grad()
def sa_init(model, tokenizer, keywords: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """SA-Init: ``E[tok] = mean(E[keyword sub-tokens])`` for every SID token with keywords (TS-Rec §3.2).

    ``keywords`` maps a SID token string (``"<a_3>"``) to its keywords. The same is done for the output
    embedding (LM head) when it is not tied to the input embedding. Tokens without keywords (unused codes) keep
    their resized values. Sub-tokens that are themselves SID tokens are ignored. Returns ``{"initialised": n,
    "skipped": m}``.
    """
    vocab = tokenizer.get_vocab()
    emb_in = model.get_input_embeddings().weight
    out_layer = model.get_output_embeddings()
    emb_out = None
    if out_layer is not None and out_layer.weight.data_ptr() != emb_in.data_ptr():
        emb_out = out_layer.weight
    sid_ids = {vocab[t] for t in keywords if t in vocab}
    done = skipped = 0
    for token, words in keywords.items():
        tid = vocab.get(token)
        if tid is None:
            raise KeyError(f"SID token {token!r} is not in the tokenizer: call add_sid_tokens first")
        ids = [i for i in keyword_token_ids(tokenizer, words) if i not in sid_ids]
        if not ids:
            skipped += 1
            continue
        index = torch.tensor(ids, device=emb_in.device)
        emb_in[tid] = emb_in[index].mean(dim=0)
        if emb_out is not None:
            emb_out[tid] = emb_out[index.to(emb_out.device)].mean(dim=0)
        done += 1
    log.info("SA-Init: %d SID tokens initialised from their keywords, %d without keywords", done, skipped)
    return {"initialised": done, "skipped": skipped}
