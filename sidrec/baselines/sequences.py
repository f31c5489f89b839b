"""Item indexing and training/evaluation tensors for the sequential baselines.

Model item index = row of the canonical item table + 1; index 0 is padding. Sequences are left-padded (the most
recent item sits in the last position), as in SASRec and BSARec. Every training tensor holds ``labels`` (rows, L):
the item to predict at each position, 0 where there is no loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sidrec.data.store import CanonicalData

PAD = 0


@dataclass
class EvalSamples:
    """One split's samples as padded index tensors, in split order."""

    sample_id: list[int]
    user_id: list[str]
    target: list[str]
    history: torch.Tensor  # (n, max_len) int64, left-padded
    target_index: torch.Tensor  # (n,) int64

    def __len__(self) -> int:
        return len(self.target)


@dataclass
class TrainRows:
    """Training rows: ``inputs`` and ``labels`` (rows, L), ``users`` (rows,) index into the training users."""

    inputs: torch.Tensor
    labels: torch.Tensor
    users: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)


def encode(item_index: dict[str, int], items: list[str]) -> list[int]:
    """Item ids -> model indices (table row + 1)."""
    return [item_index[i] + 1 for i in items]


def left_pad(rows: list[list[int]], max_len: int) -> torch.Tensor:
    """Keep the last ``max_len`` entries of each row and left-pad with 0. Shape (len(rows), max_len)."""
    out = np.zeros((len(rows), max_len), dtype=np.int64)
    for r, seq in enumerate(rows):
        seq = seq[-max_len:]
        if seq:
            out[r, max_len - len(seq):] = seq
    return torch.from_numpy(out)


def train_sequences(data: CanonicalData) -> tuple[list[str], list[list[int]]]:
    """(user ids, encoded training sequences) of every user with at least one training interaction."""
    users, seqs = [], []
    index = data.item_index
    for user, items in zip(data.train_sequences["user_id"], data.train_sequences["item_ids"], strict=True):
        if items:
            users.append(user)
            seqs.append(encode(index, items))
    return users, seqs


def sequence_rows(seqs: list[list[int]], max_len: int) -> TrainRows:
    """SASRec / GRU4Rec rows: input = seq[:-1], labels = seq[1:], loss at every position.

    Sequences longer than ``max_len + 1`` are cut into consecutive windows so no training interaction is lost.
    """
    inputs, labels, users = [], [], []
    for u, seq in enumerate(seqs):
        end = len(seq)
        while end > 1:
            start = max(0, end - 1 - max_len)
            inputs.append(seq[start:end - 1])
            labels.append(seq[start + 1:end])
            users.append(u)
            end = start + 1 if start > 0 else 0
    return TrainRows(left_pad(inputs, max_len), left_pad(labels, max_len), torch.tensor(users, dtype=torch.int64))


def prefix_rows(seqs: list[list[int]], max_len: int) -> TrainRows:
    """BSARec / FMLP-Rec rows: one per (prefix -> next item) pair, loss at the last position only."""
    inputs, targets, users = [], [], []
    for u, seq in enumerate(seqs):
        for t in range(1, len(seq)):
            inputs.append(seq[max(0, t - max_len):t])
            targets.append(seq[t])
            users.append(u)
    labels = torch.zeros(len(targets), max_len, dtype=torch.int64)
    labels[:, -1] = torch.tensor(targets, dtype=torch.int64)
    return TrainRows(left_pad(inputs, max_len), labels, torch.tensor(users, dtype=torch.int64))


def cloze_rows(seqs: list[list[int]], max_len: int) -> TrainRows:
    """BERT4Rec rows: windows of the whole sequence; labels are chosen per batch by :func:`cloze_mask`."""
    windows, users = [], []
    for u, seq in enumerate(seqs):
        if len(seq) < 2:
            continue
        end = len(seq)
        while end > 0:
            windows.append(seq[max(0, end - max_len):end])
            users.append(u)
            end -= max_len
    padded = left_pad(windows, max_len)
    return TrainRows(padded, padded.clone(), torch.tensor(users, dtype=torch.int64))


def cloze_mask(items: torch.Tensor, mask_prob: float, mask_index: int, generator: torch.Generator,
               last_only_prob: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask real items with probability ``mask_prob`` (at least one per row: the last, the next-item case).

    A ``last_only_prob`` share of rows masks only its last item instead: the exact task BERT4Rec faces at
    inference (a [MASK] appended after the history), which short sequences otherwise rarely train.
    Returns (inputs with [MASK], labels: the hidden item at masked positions, 0 elsewhere).
    """
    real = items != PAD
    chosen = (torch.rand(items.shape, generator=generator) < mask_prob) & real
    if last_only_prob > 0:
        last_only = torch.rand(items.shape[0], generator=generator) < last_only_prob
        chosen[last_only] = False
        chosen[last_only, -1] = real[last_only, -1]
    chosen[:, -1] |= ~chosen.any(1) & real[:, -1]
    inputs = items.masked_fill(chosen, mask_index)
    labels = items.masked_fill(~chosen, 0)
    return inputs, labels


def eval_samples(data: CanonicalData, split: str, max_len: int) -> EvalSamples:
    """A split's samples (history already truncated by ``prepare``) as padded tensors."""
    samples = data.split(split)
    index = data.item_index
    histories = [encode(index, h) for h in samples["history"]]
    targets = list(samples["target"])
    return EvalSamples(sample_id=[int(s) for s in samples["sample_id"]], user_id=list(samples["user_id"]),
                       target=targets, history=left_pad(histories, max_len),
                       target_index=torch.tensor(encode(index, targets), dtype=torch.int64))
