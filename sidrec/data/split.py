"""k-core filtering and the two split protocols: per-user leave-one-out and global time-based samples.

A *sample* is ``(sample_id, user_id, history, target)``; ``history`` holds at most ``max_history`` most recent
items before the target. ``train_sequences`` hold, per user, the interactions a model may train on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sidrec.errors import InputError


@dataclass
class UserSequence:
    user_id: str
    item_ids: list[str]
    timestamps: list[int]


@dataclass
class Samples:
    """Column-oriented samples of one split (ready for ``datasets.Dataset.from_dict``)."""

    sample_id: list[int]
    user_id: list[str]
    history: list[list[str]]
    target: list[str]

    @classmethod
    def empty(cls) -> Samples:
        return cls([], [], [], [])

    def add(self, user_id: str, history: list[str], target: str, max_history: int) -> None:
        self.sample_id.append(len(self.sample_id))
        self.user_id.append(user_id)
        self.history.append(list(history[-max_history:]) if max_history > 0 else list(history))
        self.target.append(target)

    def __len__(self) -> int:
        return len(self.target)

    def as_dict(self) -> dict[str, list]:
        return {"sample_id": self.sample_id, "user_id": self.user_id, "history": self.history,
                "target": self.target}


def k_core(sequences: list[UserSequence], k: int) -> list[UserSequence]:
    """Iteratively drop users and items with fewer than ``k`` interactions until both sides hold."""
    if k <= 1:
        return sequences
    seqs = sequences
    while True:
        item_count = Counter(i for s in seqs for i in s.item_ids)
        kept: list[UserSequence] = []
        changed = False
        for s in seqs:
            keep = [j for j, i in enumerate(s.item_ids) if item_count[i] >= k]
            if len(keep) != len(s.item_ids):
                changed = True
            if len(keep) >= k:
                kept.append(UserSequence(s.user_id, [s.item_ids[j] for j in keep], [s.timestamps[j] for j in keep]))
            else:
                changed = True
        seqs = kept
        if not changed:
            return seqs


def leave_one_out(sequences: list[UserSequence], max_history: int
                  ) -> tuple[dict[str, Samples], dict[str, list[str]]]:
    """Per-user leave-one-out: last item = test, second to last = valid, every earlier prefix -> next = train.

    Users with fewer than 3 interactions cannot be split and raise an error (k-core with k >= 3 prevents it).
    """
    splits = {name: Samples.empty() for name in ("train", "valid", "test")}
    train_sequences: dict[str, list[str]] = {}
    for s in sequences:
        items = s.item_ids
        if len(items) < 3:
            raise InputError(f"user {s.user_id!r} has {len(items)} interactions; leave-one-out needs at least 3 "
                             "(raise --k-core to 3 or more)")
        train_part = items[:-2]
        train_sequences[s.user_id] = train_part
        for t in range(1, len(train_part)):
            splits["train"].add(s.user_id, train_part[:t], train_part[t], max_history)
        splits["valid"].add(s.user_id, items[:-2], items[-2], max_history)
        splits["test"].add(s.user_id, items[:-1], items[-1], max_history)
    return splits, train_sequences


def time_split(sequences: list[UserSequence], max_history: int, valid_frac: float, test_frac: float
               ) -> tuple[dict[str, Samples], dict[str, list[str]]]:
    """Global time-based split (MiniOneRec protocol): interactions in the last ``test_frac`` of time are test
    samples, the ``valid_frac`` before them validation samples, the rest training; each sample's history is the
    user's preceding interactions, whatever window they fall in. Samples are ordered by (timestamp, user)."""
    all_ts = sorted(t for s in sequences for t in s.timestamps)
    if not all_ts:
        raise InputError("no interactions to split")
    n = len(all_ts)
    test_start = all_ts[min(n - 1, int(n * (1 - test_frac)))]
    valid_start = all_ts[min(n - 1, int(n * (1 - test_frac - valid_frac)))]
    events: dict[str, list[tuple[int, str, list[str], str]]] = {"train": [], "valid": [], "test": []}
    train_sequences: dict[str, list[str]] = {}
    for s in sequences:
        train_sequences[s.user_id] = [i for i, t in zip(s.item_ids, s.timestamps) if t < valid_start]
        for j in range(1, len(s.item_ids)):
            t = s.timestamps[j]
            name = "test" if t >= test_start else "valid" if t >= valid_start else "train"
            events[name].append((t, s.user_id, s.item_ids[:j], s.item_ids[j]))
    splits = {}
    for name, rows in events.items():
        rows.sort(key=lambda r: (r[0], r[1]))
        samples = Samples.empty()
        for _, user, history, target in rows:
            samples.add(user, history, target, max_history)
        splits[name] = samples
    return splits, train_sequences
