"""Make every item's SID unique.

Three strategies (``--collision``):

- ``extra_level`` (TIGER): append one more level; items sharing a SID get 0, 1, 2, ... in order of how well the
  SID reconstructs them (unique items get 0). The extra level's size is the largest group.
- ``reassign``: within a group sharing a SID, the best-reconstructed item keeps it; every other item moves to the
  free SID with the smallest quantization error that differs only in the last two levels (the nearest free
  last-level code first, since changing only the last code costs least). No extra level, but a moved item's last
  codes are less faithful; how many moved and their extra error are reported.
- ``item_level``: append a level that names every item: its code is the item's own index, so the level's size is
  the number of items. The earlier levels stay the quantizer's (semantic prefixes, shared by similar items); the last
  token is one item's alone, so a generative model learns an input and an output embedding per item, as an ID-based
  sequential recommender does, under the prefixes' hierarchy (a smaller ``--levels`` then keeps SIDs short). New items
  need new tokens, so :func:`sidrec.quantize.assign_sids` cannot place them without retraining.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from sidrec.errors import InputError


def group_sizes(codes: np.ndarray) -> np.ndarray:
    """For each row, how many rows share its code tuple."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)]


def quantization_error(z: torch.Tensor, codebooks: list[torch.Tensor], codes: np.ndarray) -> np.ndarray:
    """``||z - sum_l C_l[code_l]||^2`` per row."""
    recon = sum(book[torch.from_numpy(codes[:, level])] for level, book in enumerate(codebooks))
    return ((z - recon) ** 2).sum(-1).numpy()


def candidate_sids(z: torch.Tensor, codebooks: list[torch.Tensor], prefix: tuple[int, ...]) -> tuple[np.ndarray,
                                                                                                    np.ndarray]:
    """All SIDs sharing ``prefix`` (the first L-2 codes; L-1 when L == 1: nothing) ranked by error for one latent.

    Returns (codes ``(m, L)``, errors ``(m,)``), best first.
    """
    n_levels = len(codebooks)
    fixed = max(n_levels - 2, 0)
    residual = z - sum((codebooks[lv][prefix[lv]] for lv in range(fixed)), torch.zeros_like(z))
    if n_levels == 1:
        err = ((residual[None] - codebooks[0]) ** 2).sum(-1)
        order = torch.argsort(err)
        return order.numpy()[:, None], err[order].numpy()
    second, last = codebooks[-2], codebooks[-1]
    r2 = residual[None] - second  # (K2, dim)
    err = ((r2[:, None, :] - last[None]) ** 2).sum(-1)  # (K2, K3)
    flat = torch.argsort(err.reshape(-1))
    c2, c3 = flat // last.shape[0], flat % last.shape[0]
    codes = np.concatenate([np.tile(np.array(prefix[:fixed], dtype=np.int64), (len(flat), 1)),
                            c2.numpy()[:, None], c3.numpy()[:, None]], axis=1)
    return codes, err.reshape(-1)[flat].numpy()


def reassign(z: torch.Tensor, codebooks: list[torch.Tensor], codes: np.ndarray,
             taken: Iterable[tuple[int, ...]] = (), movable: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Resolve collisions by moving items to the nearest free SID (see module docstring).

    ``taken`` are SIDs already owned by other items (cold start); ``movable`` limits which rows may move (default:
    all). Returns the new codes and a report.
    """
    codes = codes.copy()
    error = quantization_error(z, codebooks, codes)
    owner: set[tuple[int, ...]] = set(map(tuple, taken))
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for row, sid in enumerate(map(tuple, codes)):
        groups[sid].append(row)
    movers: list[int] = []
    for sid, rows in groups.items():
        rows = sorted(rows, key=lambda r: error[r])
        if movable is not None:
            rows = sorted(rows, key=lambda r: (bool(movable[r]), error[r]))
        if sid in owner:  # already owned by an existing item: everyone here moves
            movers += rows
        else:
            owner.add(sid)
            movers += rows[1:]
    extra_error = []
    for row in sorted(movers, key=lambda r: error[r]):
        if movable is not None and not movable[row]:
            raise InputError(f"row {row}: its SID {tuple(codes[row])} collides and it may not move")
        cand, cand_err = candidate_sids(z[row], codebooks, tuple(int(c) for c in codes[row]))
        for sid, e in zip(map(tuple, cand), cand_err):
            if sid not in owner:
                owner.add(sid)
                codes[row] = sid
                extra_error.append(float(e) - float(error[row]))
                break
        else:
            raise InputError(f"no free SID left under prefix {tuple(codes[row][:-2])}: more items share it than "
                             "the last two levels can hold; use --collision extra_level or larger codebooks")
    return codes, {"strategy": "reassign", "moved_items": len(movers),
                   "mean_extra_quantization_error": float(np.mean(extra_error)) if extra_error else 0.0}


def extra_level(z: torch.Tensor, codebooks: list[torch.Tensor], codes: np.ndarray) -> tuple[np.ndarray, dict]:
    """Append a disambiguation level (0 for the best-reconstructed item of each group, then 1, 2, ...)."""
    error = quantization_error(z, codebooks, codes)
    extra = np.zeros(len(codes), dtype=np.int64)
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for row, sid in enumerate(map(tuple, codes)):
        groups[sid].append(row)
    for rows in groups.values():
        for rank, row in enumerate(sorted(rows, key=lambda r: error[r])):
            extra[row] = rank
    size = int(extra.max()) + 1
    return np.concatenate([codes, extra[:, None]], axis=1), {"strategy": "extra_level", "extra_level_size": size,
                                                             "items_with_nonzero_extra": int((extra > 0).sum())}


def item_level(codes: np.ndarray) -> tuple[np.ndarray, dict]:
    """Append a level whose code is each row's index: every SID unique, one last-level token per item."""
    n = len(codes)
    return np.concatenate([codes, np.arange(n, dtype=np.int64)[:, None]], axis=1), {
        "strategy": "item_level", "extra_level_size": n, "items_with_nonzero_extra": max(n - 1, 0)}


def fill_extra_level(z: torch.Tensor, codebooks: list[torch.Tensor], codes: np.ndarray,
                     taken: Iterable[Sequence[int]], extra_size: int) -> np.ndarray:
    """Cold start under ``extra_level``: give each new row a free disambiguation code below ``extra_size``.

    The extra level's size is part of the token vocabulary a model was trained with, so it never grows: a row
    whose SID already holds ``extra_size`` items moves to the nearest SID (as :func:`reassign` ranks them) that
    still has a free slot. ``taken`` are the existing full SIDs (``L + 1`` codes). Returns ``(n, L + 1)`` codes.
    """
    n_levels = len(codebooks)
    used: dict[tuple[int, ...], set[int]] = defaultdict(set)
    for sid in taken:
        used[tuple(int(c) for c in sid[:n_levels])].add(int(sid[n_levels]))

    def free_slot(prefix: tuple[int, ...]) -> int | None:
        return next((k for k in range(extra_size) if k not in used[prefix]), None)

    out = np.zeros((len(codes), n_levels + 1), dtype=np.int64)
    for row in range(len(codes)):
        prefix = tuple(int(c) for c in codes[row])
        slot = free_slot(prefix)
        if slot is None:
            for cand in candidate_sids(z[row], codebooks, prefix)[0]:
                prefix = tuple(int(c) for c in cand)
                slot = free_slot(prefix)
                if slot is not None:
                    break
            else:
                raise InputError(f"no free SID left near {prefix}: every SID sharing its first "
                                 f"{max(n_levels - 2, 0)} codes holds {extra_size} items")
        used[prefix].add(slot)
        out[row] = [*prefix, slot]
    return out
