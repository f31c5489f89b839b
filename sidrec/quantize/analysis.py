"""Statistics of a SID assignment: uniqueness, collisions, code usage, and whether codes group similar items.

Works on any ``(n_items, n_levels)`` code array, ours or another system's (MiniOneRec's index.json), so the two
can be compared side by side (``scripts/bench_sids.py``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np


def _perplexity(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(math.exp(-(p * np.log(p)).sum()))


def pair_cosine_by_code(emb: np.ndarray, first_codes: np.ndarray) -> dict[str, float]:
    """Mean cosine over all item pairs that share ``first_codes`` vs over all item pairs (exact, no sampling).

    For unit rows, the cosines summed over the pairs of a group of size g with sum vector s are
    ``(|s|^2 - g) / 2``.
    """
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    same_sum, same_pairs = 0.0, 0
    for code in np.unique(first_codes):
        rows = emb[first_codes == code]
        g = len(rows)
        if g > 1:
            s = rows.sum(0)
            same_sum += (float(s @ s) - g) / 2
            same_pairs += g * (g - 1) // 2
    n = len(emb)
    s = emb.sum(0)
    all_pairs = n * (n - 1) // 2
    random_mean = (float(s @ s) - n) / 2 / max(all_pairs, 1)
    same_mean = same_sum / same_pairs if same_pairs else float("nan")
    return {"same_first_code_cosine": same_mean, "random_pair_cosine": random_mean,
            "same_first_code_pairs": same_pairs, "lift": same_mean - random_mean}


def sid_stats(codes: np.ndarray, codebook_sizes: Sequence[int] | None = None,
              text_emb: np.ndarray | None = None) -> dict:
    """Uniqueness, collision rate, per-level usage / perplexity, largest prefix groups, same-code cosine."""
    codes = np.asarray(codes, dtype=np.int64)
    n, n_levels = codes.shape
    sizes = list(codebook_sizes) if codebook_sizes is not None else [int(codes[:, lv].max()) + 1
                                                                       for lv in range(n_levels)]
    _, counts = np.unique(codes, axis=0, return_counts=True)
    colliding = int(counts[counts > 1].sum())
    levels = []
    for lv in range(n_levels):
        c = np.bincount(codes[:, lv], minlength=sizes[lv])
        _, prefix_counts = np.unique(codes[:, : lv + 1], axis=0, return_counts=True)
        levels.append({"codebook_size": sizes[lv], "used_codes": int((c > 0).sum()),
                       "usage": float((c > 0).sum() / sizes[lv]), "perplexity": _perplexity(c),
                       "n_prefixes": int(len(prefix_counts)),
                       "largest_prefix_group": int(prefix_counts.max()),
                       "mean_items_per_prefix": float(prefix_counts.mean())})
    out = {"n_items": int(n), "n_levels": int(n_levels), "codebook_sizes": sizes,
           "unique_sids": int(len(counts)), "unique_fraction": float(len(counts) / n),
           "collision_rate": float(colliding / n), "colliding_groups": int((counts > 1).sum()),
           "largest_collision_group": int(counts.max()), "levels": levels}
    if text_emb is not None:
        out["text_cosine"] = pair_cosine_by_code(text_emb, codes[:, 0])
    return out


_WORD = re.compile(r"[a-z][a-z0-9\-]{2,}")
_STOP = frozenset("""the and for with from this that are was has have its not but you your our all any can will
into per each one two set pack inch inches use used using new made more most other than also which when where
what who how very about over only such both these those they their them then there""".split())


def shared_keywords(group_texts: Sequence[str], all_texts: Sequence[str], top: int = 10,
                    min_share: float = 0.3) -> list[tuple[str, float]]:
    """Words frequent in ``group_texts`` and rare in the catalogue: (word, share of the group's items), ranked by
    share x idf; only words present in at least ``min_share`` of the group (and in two items at least)."""
    def words(text: str) -> set[str]:
        return {w for w in _WORD.findall(text.lower()) if w not in _STOP}

    df = Counter(w for t in all_texts for w in words(t))
    g = Counter(w for t in group_texts for w in words(t))
    n_all, n_g = max(len(all_texts), 1), max(len(group_texts), 1)
    scored = [(w, c / n_g, c / n_g * math.log(n_all / df[w])) for w, c in g.items()
              if c >= min(2, n_g) and c / n_g >= min_share]
    # Ties broken by the word: the counts were filled from sets, whose order changes with the hash seed.
    return [(w, share) for w, share, _ in sorted(scored, key=lambda x: (-x[2], x[0]))[:top]]
