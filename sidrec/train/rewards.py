"""GRPO rewards for next-item recommendation with semantic IDs.

Every reward is a plain function ``(completions, **kwargs) -> list[float]`` in TRL's calling convention
(``f(prompts=..., completions=..., completion_ids=..., **dataset_columns)``; completions are decoded strings such
as ``"<a_3><b_1><c_7>"``). The dataset column ``target_sid`` holds the target item's SID string. Rollouts add
``rollout_group`` (the prompt's group within the batch) and ``rollout_rank`` (0 = best: beam order, or the
sequence log-probability order of sampled completions) for the ranking-aware reward.

Rewards are combined by TRL with ``GRPOConfig.reward_weights`` (one weight per name in ``GrpoArgs.rewards``); a
reward that is the same for every completion of a group adds nothing to the group-normalised advantage.

- :func:`exact_hit_reward`  1 when the completion is the target's SID.
- :func:`ndcg_reward`       rank-aware (MiniOneRec, Kong et al. 2025, §3.3 "ranking reward"): in a group that
  contains the target, a wrong item is penalised by its rank's NDCG discount, so a wrong item ranked high costs
  more.
- :func:`prefix_reward`     partial credit: the fraction of SID levels shared with the target as a prefix. An
  exact-hit-only reward gives a small model identical scores in most groups (zero advantage); shared-prefix credit
  restores the signal (STACK_NOTES).
- :func:`make_validity_reward`  1 when the completion is exactly one SID of the catalogue.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sidrec.sid import SID_TOKEN_RE

RewardFunc = Callable[..., list[float]]


def sid_tokens(text: str) -> tuple[str, ...]:
    """The SID tokens of ``text`` in order: ``sid_tokens("<a_1> <b_2></s>") == ("<a_1>", "<b_2>")``."""
    return tuple(m.group(0) for m in SID_TOKEN_RE.finditer(text))


def exact_hit_reward(completions: Sequence[str], target_sid: Sequence[str], **kwargs: Any) -> list[float]:
    """1.0 when a completion spells exactly the target's SID, else 0.0.

    >>> exact_hit_reward(["<a_1><b_2>", "<a_1><b_3>", ""], target_sid=["<a_1><b_2>"] * 3)
    [1.0, 0.0, 0.0]
    """
    return [float(sid_tokens(c) == sid_tokens(t)) for c, t in zip(completions, target_sid, strict=True)]


def prefix_reward(completions: Sequence[str], target_sid: Sequence[str], **kwargs: Any) -> list[float]:
    """Fraction of the target's SID levels that the completion shares with it as a prefix (partial credit).

    >>> prefix_reward(["<a_1><b_2><c_3>", "<a_1><b_2><c_9>", "<a_1><b_7><c_3>", "<a_4><b_2><c_3>"],
    ...               target_sid=["<a_1><b_2><c_3>"] * 4)
    [1.0, 0.6666666666666666, 0.3333333333333333, 0.0]
    """
    rewards = []
    for completion, target in zip(completions, target_sid, strict=True):
        got, want = sid_tokens(completion), sid_tokens(target)
        shared = 0
        for a, b in zip(got, want):
            if a != b:
                break
            shared += 1
        rewards.append(shared / max(1, len(want)))
    return rewards


def rank_discounts(group_size: int) -> list[float]:
    """NDCG discounts ``1/log2(rank+2)`` of ranks ``0..group_size-1``, normalised to sum to 1.

    >>> [round(d, 3) for d in rank_discounts(3)]
    [0.469, 0.296, 0.235]
    """
    raw = [1.0 / math.log2(rank + 2) for rank in range(group_size)]
    total = sum(raw)
    return [d / total for d in raw]


def ndcg_reward(completions: Sequence[str], target_sid: Sequence[str], rollout_group: Sequence[int],
                rollout_rank: Sequence[int], **kwargs: Any) -> list[float]:
    """NDCG-shaped ranking reward over each rollout group (MiniOneRec's rank-aware reward).

    In a group that contains the target, the hit gets 0 and a wrong item at rank ``r`` (0 = best) gets
    ``-discount(r)`` (:func:`rank_discounts` over the group's size): the higher a wrong item is ranked, the larger
    its penalty. A group without a hit says nothing about the order and gets 0 throughout.

    >>> target = ["<a_1><b_2>"] * 6
    >>> out = ndcg_reward(["<a_0><b_0>", "<a_1><b_2>", "<a_3><b_0>", "<a_5><b_5>", "<a_6><b_6>", "<a_7><b_7>"],
    ...                   target, rollout_group=[0, 0, 0, 1, 1, 1], rollout_rank=[0, 1, 2, 0, 1, 2])
    >>> [round(r, 3) for r in out]
    [-0.469, 0.0, -0.235, 0.0, 0.0, 0.0]
    """
    hits = exact_hit_reward(completions, target_sid)
    members: dict[int, list[int]] = defaultdict(list)
    for row, group in enumerate(rollout_group):
        members[int(group)].append(row)
    rewards = [0.0] * len(completions)
    for rows in members.values():
        if not any(hits[r] for r in rows):
            continue
        discounts = rank_discounts(len(rows))
        for r in rows:
            rank = min(int(rollout_rank[r]), len(rows) - 1)
            rewards[r] = 0.0 if hits[r] else -discounts[rank]
    return rewards


def make_validity_reward(valid_sids: Iterable[str]) -> RewardFunc:
    """A reward that is 1.0 when a completion is exactly one SID of ``valid_sids`` (whitespace aside), else 0.0.

    >>> validity = make_validity_reward(["<a_1><b_2>", "<a_1><b_3>"])
    >>> validity(["<a_1><b_3>", "<a_1><b_4>", "<a_1>", "<a_1><b_2> extra", " <a_1> <b_2> "])
    [1.0, 0.0, 0.0, 0.0, 1.0]
    """
    known = frozenset(sid_tokens(s) for s in valid_sids)

    def validity_reward(completions: Sequence[str], **kwargs: Any) -> list[float]:
        rewards = []
        for completion in completions:
            tokens = sid_tokens(completion)
            only_sid = "".join(tokens) == "".join(completion.split())
            rewards.append(float(only_sid and tokens in known))
        return rewards

    return validity_reward


REWARD_NAMES = ("exact", "ndcg", "prefix", "validity")


def build_reward_funcs(names: Sequence[str], valid_sids: Iterable[str]) -> list[RewardFunc]:
    """The reward functions named in ``names`` (any of :data:`REWARD_NAMES`), in that order, for GRPOTrainer.

    >>> [f.__name__ for f in build_reward_funcs(["exact", "validity"], ["<a_1>"])]
    ['exact_hit_reward', 'validity_reward']
    """
    unknown = [n for n in names if n not in REWARD_NAMES]
    if unknown:
        raise ValueError(f"unknown reward(s) {unknown}; known: {list(REWARD_NAMES)}")
    table: dict[str, RewardFunc] = {"exact": exact_hit_reward, "ndcg": ndcg_reward, "prefix": prefix_reward}
    if "validity" in names:
        table["validity"] = make_validity_reward(valid_sids)
    return [table[n] for n in names]
