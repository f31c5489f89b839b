"""Item indexing and batching for the sequential baselines.

Model item index = row of the canonical item table + 1; index 0 is padding. Sequences are left-padded (the most
recent item sits in the last position), as in SASRec and BSARec.
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
    """(user ids, encoded training sequences) for users with at least two training interactions."""
    users, seqs = [], []
    index = data.item_index
    for user, items in zip(data.train_sequences["user_id"], data.train_sequences["item_ids"], strict=True):
        if len(items) >= 2:
            users.append(user)
            seqs.append(encode(index, items))
    return users, seqs


def sequence_rows(seqs: list[list[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SASRec-style rows: input = seq[:-1], labels = seq[1:] (both the last ``max_len``), left-padded.

    Long sequences are cut into consecutive windows so no training interaction is lost.
    Returns (inputs, labels), each (n_rows, max_len); label 0 = no loss.
    """
    inputs, labels = [], []
    for seq in seqs:
        end = len(seq)
        while end > 1:
            start = max(0, end - 1 - max_len)
            inputs.append(seq[start:end - 1])
            labels.append(seq[start + 1:end])
            end = start + 1 if start > 0 else 0
    return left_pad(inputs, max_len), left_pad(labels, max_len)


def prefix_rows(seqs: list[list[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BSARec/FMLP-Rec rows: one per (prefix -> next item) pair of each training sequence.

    Returns (inputs (n, max_len) left-padded, targets (n,)).
    """
    inputs, targets = [], []
    for seq in seqs:
        for t in range(1, len(seq)):
            inputs.append(seq[max(0, t - max_len):t])
            targets.append(seq[t])
    return left_pad(inputs, max_len), torch.tensor(targets, dtype=torch.int64)


def eval_samples(data: CanonicalData, split: str, max_len: int) -> EvalSamples:
    """A split's samples (history already truncated by ``prepare``) as padded tensors."""
    samples = data.split(split)
    index = data.item_index
    histories = [encode(index, h) for h in samples["history"]]
    targets = list(samples["target"])
    return EvalSamples(sample_id=[int(s) for s in samples["sample_id"]], user_id=list(samples["user_id"]),
                       target=targets, history=left_pad(histories, max_len),
                       target_index=torch.tensor(encode(index, targets), dtype=torch.int64))
