"""SidTable and the dense SID trie: loading, token strings, parsing, trie structure and the two constraints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sidrec.errors import InputError
from sidrec.sid import SidLogitsProcessor, SidTable, SidTrie, sid_token


@pytest.fixture(scope="module")
def table() -> SidTable:
    return SidTable(["x", "y", "z", "w"], [[1, 2, 0], [1, 3, 0], [0, 3, 1], [1, 2, 1]])


@pytest.fixture(scope="module")
def tokenizer(table):
    from sidrec.decode.tiny import build_tokenizer

    return build_tokenizer(table)


def test_load_folder_and_file_and_token_strings(tmp_path):
    (tmp_path / "sids.json").write_text(json.dumps({"B1": [12, 201, 7], "B2": ["<a_12>", "<b_3>", "<c_0>"]}))
    from_dir = SidTable.load(tmp_path)
    from_file = SidTable.load(tmp_path / "sids.json")
    assert from_dir.item_ids == from_file.item_ids == ["B1", "B2"]
    assert from_dir.item_sid_string("B1") == "<a_12><b_201><c_7>"
    assert from_dir.item_tokens("B2") == ["<a_12>", "<b_3>", "<c_0>"]
    assert from_dir.codebook_sizes == [13, 202, 8]
    tokens = from_dir.tokens()
    assert len(tokens) == 13 + 202 + 8 and tokens[0] == "<a_0>" and tokens[13] == "<b_0>" and tokens[-1] == "<c_7>"


def test_codebook_sizes_from_stats(tmp_path):
    (tmp_path / "sids.json").write_text(json.dumps({"B1": [1, 2], "B2": [0, 0]}))
    (tmp_path / "stats.json").write_text(json.dumps({"codebook_sizes": [4, 8]}))
    assert SidTable.load(tmp_path).codebook_sizes == [4, 8]


@pytest.mark.parametrize("content, message", [
    ({"a": [1, 2], "b": [1]}, "1 codes, but earlier items have 2"),
    ({"a": [1, 2], "b": [1, 2]}, "shared by items ['a', 'b']"),
    ({"a": [1, -2]}, "negative code"),
    ({"a": ["<b_1>", 2]}, "level 0"),
    ({}, "empty"),
])
def test_load_rejects_bad_tables(tmp_path, content, message):
    (tmp_path / "sids.json").write_text(json.dumps(content))
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        SidTable.load(tmp_path)
    assert "sids.json" in str(e.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match="sids.json"):
        SidTable.load(tmp_path)


def test_parse(table):
    assert table.parse("<a_1><b_3><c_0>") == "y"
    assert table.parse("answer: <a_1> <b_2> <c_1></s>") == "w"
    assert table.parse("<a_9><a_0><b_3><c_1>") == "z"  # a stray token before a full SID
    assert table.parse("<a_1><b_3><c_5>") is None  # not in the catalogue
    assert table.parse("<a_1><b_3>") is None  # incomplete
    assert table.parse("<a_1>x<b_3><c_0>") is None  # not contiguous
    assert table.parse("") is None


def test_trie_structure(table):
    trie = table.trie()
    # root, two depth-1 prefixes (a_0, a_1), three depth-2 prefixes (0-3, 1-2, 1-3)
    assert trie.n_internal == 6
    assert trie.allowed[0].nonzero().view(-1).tolist() == [0, 1]
    codes = torch.as_tensor(table.codes)
    leaves = trie.walk(codes)
    assert trie.leaf_item(leaves).tolist() == [0, 1, 2, 3]
    assert trie.walk(torch.tensor([[0, 2, 0]])).tolist() == [-1]  # a_0 has no b_2
    assert trie.step(torch.tensor([-1, leaves[0]]), torch.tensor([0, 0])).tolist() == [-1, -1]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_trie_accepts_exactly_the_catalogue(n_levels, codebook, n_items, seed):
    """Walking any code tuple ends at a leaf iff it is an item's SID, and at that item's leaf."""
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, codebook, size=(n_items, n_levels)), axis=0)
    table = SidTable([f"i{i}" for i in range(len(codes))], codes)
    trie = table.trie()
    probe = torch.as_tensor(rng.integers(0, codebook, size=(200, n_levels)))
    items = trie.leaf_item(trie.walk(probe)).tolist()
    for row, item in zip(probe.tolist(), items):
        expected = table.sid_to_item.get(tuple(row))
        assert (table.item_ids[item] if item >= 0 else None) == expected
    assert trie.leaf_item(trie.walk(torch.as_tensor(codes))).tolist() == list(range(len(codes)))


def test_token_ids_and_missing_tokens(table, tokenizer):
    ids = table.token_ids(tokenizer)
    assert ids.shape == (3, 4)
    for level in range(3):
        for code in range(table.codebook_sizes[level]):
            assert tokenizer.convert_ids_to_tokens(int(ids[level, code])) == sid_token(level, code)
    bigger = SidTable(["x"], [[9, 9, 9]])
    with pytest.raises(InputError, match="lacks"):
        bigger.token_ids(tokenizer)


def _allowed_by_processor(processor: SidLogitsProcessor, input_ids: torch.Tensor, vocab: int) -> list[list[int]]:
    out = processor(input_ids, torch.zeros(input_ids.shape[0], vocab))
    return [torch.isfinite(row).nonzero().view(-1).tolist() for row in out]


def test_processor_matches_reference_prefix_fn(table, tokenizer):
    """The vectorised processor allows exactly what the Python dict-trie reference allows, at every depth."""
    vocab = len(tokenizer)
    eos = tokenizer.eos_token_id
    prompt = torch.tensor([[5, 6, 7]])
    processor = table.logits_processor(tokenizer, prompt_length=3, eos_token_id=eos)
    reference = table.prefix_allowed_tokens_fn(tokenizer, prompt_length=3, eos_token_id=eos)
    ids = table.token_ids(tokenizer)
    suffixes = [[]]
    for item in table.item_ids:
        sid = [int(ids[level, c]) for level, c in enumerate(table.item_sid(item))]
        suffixes += [sid[:1], sid[:2], sid]
    suffixes.append([int(ids[0, 0]), int(ids[1, 2])])  # invalid prefix: only EOS
    for suffix in suffixes:
        row = torch.cat([prompt, torch.tensor([suffix], dtype=torch.long)], dim=1)
        assert _allowed_by_processor(processor, row, vocab)[0] == sorted(reference(0, row[0])), suffix
    assert _allowed_by_processor(processor, prompt, vocab)[0] == sorted(int(ids[0, c]) for c in (0, 1))


def test_processor_is_batched_and_keeps_scores(table, tokenizer):
    ids = table.token_ids(tokenizer)
    processor = table.logits_processor(tokenizer, prompt_length=1)
    rows = torch.tensor([[0, int(ids[0, 1])], [0, int(ids[0, 0])]])
    scores = torch.randn(2, len(tokenizer))
    out = processor(rows, scores.clone())
    assert torch.isfinite(out).sum(1).tolist() == [2, 1]  # a_1 -> b_2, b_3 ; a_0 -> b_3
    assert out[0, ids[1, 2]] == scores[0, ids[1, 2]] and out[1, ids[1, 3]] == scores[1, ids[1, 3]]


def test_trie_from_codes_is_vectorised_for_a_large_catalogue():
    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, 256, size=(12000, 3)), axis=0)
    trie = SidTrie.from_codes(codes, [256, 256, 256])
    assert trie.children.shape == (trie.n_internal, 256)
    assert trie.leaf_item(trie.walk(torch.as_tensor(codes))).tolist() == list(range(len(codes)))
