"""Deterministic BPE / WordPiece vocabularies for the two tokenizers sidrec trains on a catalogue (the tiny Qwen2's
byte-level BPE, sidrec/align/tiny.py, and the sensory student's WordPiece, sidrec/semantics/student.py).

Why not ``tokenizers``' own trainers: they count pairs in Rust hash maps whose seed is random per process, so two
runs on the same texts break ties between equally frequent pairs differently and learn different vocabularies (seen
here: the student's vocabulary, and from it every downstream artifact, changed from run to run). This is the same
algorithm (Sennrich et al., 2016: repeatedly merge the most frequent adjacent pair of symbols inside words) with
ties broken by the pair's strings, so the result depends on the texts alone. The vocabularies it returns are loaded
into ``tokenizers`` models, which then tokenize as before.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence


def count_words(texts: Iterable[str], normalizer, pre_tokenizer) -> Counter:
    """Pre-tokenized words of ``texts`` and their counts, using a ``tokenizers`` normaliser (or ``None``) and
    pre-tokenizer, exactly as the finished tokenizer will split them."""
    words: Counter = Counter()
    for text in texts:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        words.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(text))
    return words


def learn_bpe(word_counts: Counter, vocab_size: int, special_tokens: Sequence[str] = (),
              initial_alphabet: Iterable[str] = (), continuing_prefix: str = "",
              min_frequency: int = 1) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn merges until the vocabulary holds ``vocab_size`` tokens or no pair occurs ``min_frequency`` times.

    Returns ``(vocab, merges)``: ``vocab`` maps token -> id (special tokens first, then the sorted alphabet, then
    merged tokens in the order they were learnt); ``merges`` lists the merged pairs in order. With
    ``continuing_prefix`` (WordPiece's ``"##"``) every symbol but a word's first carries the prefix. Among equally
    frequent pairs the smallest ``(left, right)`` by string order wins, so the result depends on the words alone.
    """
    # Words as symbol lists, in a fixed order (sorted: a Counter built from the same texts has the same order
    # anyway, but sorting makes the result independent of how the counts were assembled).
    entries = sorted(word_counts.items())
    words = [[w[0]] + [continuing_prefix + c for c in w[1:]] for w, _ in entries]
    freqs = [n for _, n in entries]
    alphabet = set(initial_alphabet) | {s for w in words for s in w}
    vocab: dict[str, int] = {}
    for token in [*special_tokens, *sorted(alphabet)]:
        vocab.setdefault(token, len(vocab))

    pair_counts: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for i, (w, n) in enumerate(zip(words, freqs)):
        for pair in zip(w, w[1:]):
            pair_counts[pair] += n
            where.setdefault(pair, set()).add(i)
    heap = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg:  # stale entry: the count changed since it was pushed
            continue
        if -neg < min_frequency:
            break
        left, right = pair
        merged = left + right[len(continuing_prefix):] if continuing_prefix and right.startswith(
            continuing_prefix) else left + right
        merges.append(pair)
        vocab.setdefault(merged, len(vocab))
        changed: set[tuple[str, str]] = set()
        for i in sorted(where.pop(pair, ())):
            w, n = words[i], freqs[i]
            for p in zip(w, w[1:]):
                pair_counts[p] -= n
                changed.add(p)
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == left and w[j + 1] == right:
                    out.append(merged)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for p in zip(out, out[1:]):
                pair_counts[p] += n
                where.setdefault(p, set()).add(i)
                changed.add(p)
        for p in sorted(changed):
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
            else:
                del pair_counts[p]
                where.pop(p, None)
    return vocab, merges
