"""GRPO rewards: doctests, exact values, and properties the trainer relies on."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidrec.train import rewards
from sidrec.train.rewards import (
    build_reward_funcs,
    exact_hit_reward,
    make_validity_reward,
    ndcg_reward,
    prefix_reward,
    rank_discounts,
)

TARGET = "<a_1><b_2><c_3>"


def test_doctests():
    result = doctest.testmod(rewards)
    assert result.attempted >= 6 and result.failed == 0


def test_exact_and_prefix_values():
    completions = [TARGET, "<a_1><b_2><c_4>", "<a_1><b_0><c_3>", "<a_9><b_2><c_3>", "nonsense", " <a_1> <b_2> <c_3>"]
    target = [TARGET] * len(completions)
    assert exact_hit_reward(completions, target) == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert prefix_reward(completions, target) == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0, 0.0, 1.0])


def test_ndcg_penalises_higher_ranked_misses_more():
    # One group of four, target at rank 2: misses at ranks 0, 1, 3 are penalised by decreasing amounts.
    completions = ["<a_0><b_0><c_0>", "<a_0><b_0><c_1>", TARGET, "<a_0><b_0><c_2>"]
    out = ndcg_reward(completions, [TARGET] * 4, rollout_group=[0] * 4, rollout_rank=[0, 1, 2, 3])
    assert out[2] == 0.0
    assert out[0] < out[1] < out[3] < 0
    assert sum(out) == pytest.approx(-(1 - rank_discounts(4)[2]))


def test_ndcg_uses_rank_not_row_order_and_groups_separately():
    completions = [TARGET, "<a_0><b_0><c_0>", "<a_0><b_0><c_1>", "<a_5><b_5><c_5>", "<a_6><b_6><c_6>"]
    out = ndcg_reward(completions, [TARGET] * 3 + ["<a_7><b_7><c_7>"] * 2,
                      rollout_group=[4, 4, 4, 9, 9], rollout_rank=[1, 2, 0, 0, 1])
    d = rank_discounts(3)
    assert out[:3] == pytest.approx([0.0, -d[2], -d[0]])
    assert out[3:] == [0.0, 0.0]  # no hit in group 9: no ranking signal


def test_validity_needs_a_catalogue_sid_and_nothing_else():
    validity = make_validity_reward([TARGET])
    assert validity([TARGET, "<a_1><b_2>", "<a_1><b_2><c_3><c_3>", "x" + TARGET, "<a_1><b_2><c_9>"]) == [
        1.0, 0.0, 0.0, 0.0, 0.0]


def test_build_reward_funcs_order_and_unknown():
    funcs = build_reward_funcs(["prefix", "exact", "ndcg"], [TARGET])
    assert [f.__name__ for f in funcs] == ["prefix_reward", "exact_hit_reward", "ndcg_reward"]
    with pytest.raises(ValueError, match="unknown reward"):
        build_reward_funcs(["exact", "hit"], [TARGET])


sids = st.lists(st.integers(0, 3), min_size=3, max_size=3).map(
    lambda c: "".join(f"<{lvl}_{x}>" for lvl, x in zip("abc", c)))


@given(st.lists(sids, min_size=1, max_size=8), sids)
def test_reward_ranges_and_consistency(completions, target):
    targets = [target] * len(completions)
    exact = exact_hit_reward(completions, targets)
    prefix = prefix_reward(completions, targets)
    ndcg = ndcg_reward(completions, targets, rollout_group=[0] * len(completions),
                       rollout_rank=list(range(len(completions))))
    for e, p, n in zip(exact, prefix, ndcg):
        assert 0.0 <= p <= 1.0 and -1.0 <= n <= 0.0
        assert (e == 1.0) == (p == 1.0)  # full prefix credit only for the exact SID
        if e == 1.0:
            assert n == 0.0
    if not any(exact):
        assert ndcg == [0.0] * len(completions)
