"""Constrained decoding: exactness vs exhaustive scoring, backend agreement, zero invalid SIDs, the CLI (the vllm
backend: tests/test_decode_vllm.py, run in .venv-vllm)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidrec.decode import recommend, torch_backend
from sidrec.decode.hf_backend import constrain_generate
from sidrec.decode.tiny import build_tiny_qwen2, build_tokenizer, save_tiny_lm
from sidrec.decode.torch_backend import tokenize_prompts
from sidrec.sid import SidTable

PROMPTS = ["User history: <a_1><b_2><c_3>, <a_0><b_5><c_1>. Next item:",
           "User history: soft vanilla lotion <a_4><b_4><c_0>. Next item:",
           "Next item:",
           "User history: <a_2><b_0><c_5>, <a_3><b_1><c_2>, <a_5><b_5><c_5>, <a_0><b_0><c_0>. Next item:"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread; with parallel test workers, more threads oversubscribe the cores
    (measured here: 0.3 s vs 7.8 s for the same decode under ``pytest -n 2`` on 2 cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_table(seed: int, n_items: int = 90, codebook: int = 6, n_levels: int = 3) -> SidTable:
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, codebook, size=(n_items, n_levels)), axis=0)
    return SidTable([f"item{i}" for i in range(len(codes))], codes, codebook_sizes=[codebook] * n_levels)


@pytest.fixture(scope="module")
def table() -> SidTable:
    return random_table(0)


@pytest.fixture(scope="module")
def tokenizer(table):
    return build_tokenizer(table)


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_tiny_qwen2(len(tokenizer), seed=0)


def exhaustive(model, tokenizer, table: SidTable, prompt: str) -> list[tuple[str, float]]:
    """Every item ranked by its teacher-forced SID log-probability (the ground truth beam search approximates)."""
    prompt_ids = tokenize_prompts(tokenizer, [prompt])[0]
    sid_ids = table.token_ids(tokenizer)
    levels = range(table.n_levels)
    sequences = torch.tensor([prompt_ids + [int(sid_ids[level, c]) for level, c in zip(levels, row)]
                              for row in table.codes.tolist()])
    with torch.no_grad():
        log_probs = model(sequences).logits.float().log_softmax(-1)
    p = len(prompt_ids)
    rows = torch.arange(len(sequences))
    score = sum(log_probs[rows, p - 1 + level, sequences[:, p + level]] for level in levels)
    order = score.argsort(descending=True)
    return [(table.item_ids[i], float(score[i])) for i in order]


def assert_same_ranking(got: list[tuple[str, float]], want: list[tuple[str, float]], atol: float = 1e-4) -> None:
    """Same scores position by position; same items except where neighbouring scores tie within ``atol``."""
    assert len(got) == len(want)
    got_scores = np.array([s for _, s in got])
    want_scores = np.array([s for _, s in want])
    np.testing.assert_allclose(got_scores, want_scores, atol=atol)
    for i, ((gi, _), (wi, ws)) in enumerate(zip(got, want)):
        if gi != wi:
            neighbours = [s for j, (_, s) in enumerate(want) if j != i]
            assert any(abs(s - ws) < atol for s in neighbours), f"rank {i}: {gi} != {wi}"


def max_prefixes(table: SidTable) -> int:
    return max(len(np.unique(table.codes[:, :d], axis=0)) for d in range(1, table.n_levels))


def test_torch_backend_is_exact(model, tokenizer, table):
    beams = max_prefixes(table)  # nothing pruned: must equal exhaustive scoring
    results = recommend(model, tokenizer, PROMPTS, table, beams=beams, topk=20, backend="torch", batch_size=3)
    for prompt, got in zip(PROMPTS, results):
        assert_same_ranking(got, exhaustive(model, tokenizer, table, prompt)[:20])


def test_torch_topk_beyond_beams_ranks_last_level(model, tokenizer, table):
    """topk > beams: the last level ranks every child of the kept beams."""
    results = recommend(model, tokenizer, PROMPTS[:1], table, beams=max_prefixes(table), topk=len(table.item_ids),
                        backend="torch")
    assert_same_ranking(results[0], exhaustive(model, tokenizer, table, PROMPTS[0]))


@pytest.mark.parametrize("beams", [1, 4, 10])
@pytest.mark.parametrize("backend", ["hf", "hf-prefix-fn"])
def test_torch_and_hf_agree(model, tokenizer, table, backend, beams):
    """Same model, same prompts: identical top-K (scores to 1e-4, ties aside), also when beams prune."""
    topk = beams
    torch_results = recommend(model, tokenizer, PROMPTS, table, beams=beams, topk=topk, backend="torch")
    hf_results = recommend(model, tokenizer, PROMPTS, table, beams=beams, topk=topk, backend=backend, batch_size=2)
    for got, want in zip(hf_results, torch_results):
        assert_same_ranking(got, want)


@pytest.mark.parametrize("attention,tree", [("sdpa", True), ("sdpa", False), ("eager", False)])
def test_torch_backend_is_exact_with_four_levels(attention, tree, monkeypatch):
    """Tree attention (the beams of a prompt share its prompt's cache) with deeper SIDs, where a token attends to
    three ancestors: through :func:`tree_attention`, and on the generic path under both attention implementations
    that take its 4D mask."""
    if not tree:
        monkeypatch.setattr(torch_backend, "TREE_MODELS", ())
    table = random_table(3, n_items=120, codebook=4, n_levels=4)
    tokenizer = build_tokenizer(table)
    model = build_tiny_qwen2(len(tokenizer), seed=1)
    model.config._attn_implementation = attention
    beams = max_prefixes(table)
    results = recommend(model, tokenizer, PROMPTS, table, beams=beams, topk=30, backend="torch", batch_size=4)
    for prompt, got in zip(PROMPTS, results):
        assert_same_ranking(got, exhaustive(model, tokenizer, table, prompt)[:30])
    assert model.config._attn_implementation == attention  # restored after the decode steps


def tiny_lm(architecture: str, vocab_size: int):
    """A random-init tiny Qwen2 / Qwen3 / Llama (2 query heads per KV head), peaked like :func:`build_tiny_qwen2`."""
    import transformers

    config_class = getattr(transformers, f"{architecture}Config")
    config = config_class(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=512,
                          tie_word_embeddings=False)
    torch.manual_seed(0)
    model = getattr(transformers, f"{architecture}ForCausalLM")(config).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.5)
    return model


@pytest.mark.parametrize("architecture", ["Qwen2", "Qwen3", "Llama"])
def test_tree_attention_equals_the_generic_path(architecture, tokenizer, table):
    """Every model in TREE_MODELS: the tree-attention steps give the items and scores of the 4D-mask steps through
    the model's own forward, also when beams prune and prompts are padded."""
    model = tiny_lm(architecture, len(tokenizer))
    assert type(model).__name__ in torch_backend.TREE_MODELS
    ids, mask = torch_backend.left_pad(tokenize_prompts(tokenizer, PROMPTS), tokenizer.pad_token_id)
    assert not mask.all()
    shortest = int(mask.sum(-1).min())
    unpadded = ids[:, -shortest:], mask[:, -shortest:]  # the tree path's prompt attention then has no mask
    token_ids = table.token_ids(tokenizer)
    for (batch_ids, batch_mask), beams in itertools.product([(ids, mask), unpadded], (3, max_prefixes(table))):
        tree_items, tree_scores = torch_backend.beam_search_batch(model, batch_ids, batch_mask, table, token_ids,
                                                                  beams, 10)
        items, scores = torch_backend.beam_search_batch(model, batch_ids, batch_mask, table, token_ids, beams, 10,
                                                        tree=False)
        assert torch.equal(tree_items, items)
        torch.testing.assert_close(tree_scores, scores, atol=1e-4, rtol=0)


def test_fused_and_plain_prompt_attention_agree():
    """The CPU flash kernel's (output, log-sum-exp) equal plain softmax attention's, padding columns masked."""
    torch.manual_seed(0)
    query, key, value = torch.randn(3, 1, 8, 32), torch.randn(3, 1, 5, 32), torch.randn(3, 1, 5, 32)
    bias = torch.zeros(3, 1, 1, 5)
    bias[0, ..., :2] = torch.finfo(torch.float32).min  # a left-padded prompt
    for mask in (bias, None):  # None: no padding, no mask
        fused = torch_backend._attend(query, key, value, mask, 0.2, fused=True)
        plain = torch_backend._attend(query, key, value, mask, 0.2, fused=False)
        scores = query @ key.transpose(-1, -2) * 0.2 + (0 if mask is None else mask)
        for got in (fused, plain):
            torch.testing.assert_close(got[0], scores.softmax(-1) @ value)
            torch.testing.assert_close(got[1], scores.logsumexp(-1))


@pytest.mark.parametrize("chunk_rows", [3, 32])
def test_child_log_probs_equal_log_softmax(chunk_rows):
    """From logits or from hidden states through the head, chunked or not: the wanted tokens' log_softmax, and the
    caller's logits are left as they were."""
    torch.manual_seed(0)
    hidden, head = torch.randn(10, 16), torch.nn.Linear(16, 40)
    tokens = torch.randint(0, 40, (10, 5))
    logits = head(hidden).detach() * 4
    want = logits.log_softmax(-1).gather(1, tokens)
    before = logits.clone()
    with torch.inference_mode():
        from_logits = torch_backend._child_log_probs(logits, None, tokens, chunk_rows)
        from_hidden = torch_backend._child_log_probs(hidden, lambda x: head(x) * 4, tokens, chunk_rows)
    torch.testing.assert_close(from_logits, want)
    torch.testing.assert_close(from_hidden, want)
    assert torch.equal(logits, before)


@pytest.mark.parametrize("chunk_rows", [3, 32])
def test_child_log_probs_hold_where_plain_exp_overflows_or_underflows(chunk_rows):
    """The bias-free Linear head (the reused-buffer path) and rows whose logits overflow ``exp`` (above ~88) or all
    underflow it (below ~-104): still the wanted tokens' log_softmax, finite, for every row."""
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 40, bias=False)
    hidden = torch.randn(10, 16)
    with torch.no_grad():
        head.weight[:, :] = torch.randn(40, 16) * 0.5 + 2.0
    hidden[2], hidden[7] = 5.0, -5.0  # logits ~ +160 (exp overflows) and ~ -160 (every exp underflows)
    tokens = torch.randint(0, 40, (10, 5))
    want = head(hidden).detach().log_softmax(-1).gather(1, tokens)
    assert head(hidden)[2].detach().max() > 100 and head(hidden)[7].detach().max() < -100
    with torch.inference_mode():
        got = torch_backend._child_log_probs(hidden, head, tokens, chunk_rows)
        from_logits = torch_backend._child_log_probs(head(hidden), None, tokens, chunk_rows)
    assert torch.isfinite(got).all()
    # Logits near +-160 carry float32 rounding of ~1e-5 each, and a chunk's matmul may round differently from the
    # whole batch's (CPU kernels differ by shape and machine): an absolute tolerance of a few of those ulps.
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(from_logits, want, atol=1e-4, rtol=1e-5)


def test_level_children_pack_each_nodes_valid_codes(table):
    """Row ``node - first_node`` lists exactly the node's valid codes, ascending, and their child nodes."""
    trie = table.trie()
    for level, children in enumerate(torch_backend.level_children(table, torch.device("cpu"))):
        for row in range(children.codes.shape[0]):
            node = children.first_node + row
            assert int(trie.depth[node]) == level
            valid = (trie.children[node] >= 0).nonzero().flatten()
            n = len(valid)
            assert children.codes[row, :n].tolist() == valid.tolist()
            assert children.nodes[row, :n].tolist() == trie.children[node, valid].tolist()
            assert (children.nodes[row, n:] == -1).all()


def test_level_child_tokens_follow_the_token_ids(table, tokenizer):
    """Each packed child's vocab id; kept for the same token ids, rebuilt for other ones."""
    cpu = torch.device("cpu")
    levels = torch_backend.level_children(table, cpu)
    token_ids = table.token_ids(tokenizer)
    tables = torch_backend.level_child_tokens(table, levels, token_ids)
    for level, (children, tokens) in enumerate(zip(levels, tables)):
        assert torch.equal(tokens, token_ids[level][children.codes])
    assert torch_backend.level_child_tokens(table, levels, token_ids.clone()) is tables  # equal ids: kept
    shifted = torch_backend.level_child_tokens(table, levels, token_ids + 1)
    assert all(torch.equal(new, old + 1) for new, old in zip(shifted, tables))


def test_cached_token_ids_follow_the_tokenizer(table, tokenizer):
    """Kept for the same tokenizer; rebuilt for another one, or when it grows."""
    cpu = torch.device("cpu")
    first = torch_backend.cached_token_ids(table, tokenizer, cpu)
    assert torch.equal(first, table.token_ids(tokenizer))
    assert torch_backend.cached_token_ids(table, tokenizer, cpu) is first
    other = build_tokenizer(table, special=True)
    assert torch.equal(torch_backend.cached_token_ids(table, other, cpu), table.token_ids(other))
    other.add_tokens(["<zz_extra>"])
    assert torch_backend.cached_token_ids(table, other, cpu) is not first


def test_pruned_beam_search_is_not_exhaustive_but_sound(model, tokenizer, table):
    """With narrow beams the torch backend may miss items, but every returned score is the item's true score."""
    truth = dict(exhaustive(model, tokenizer, table, PROMPTS[3]))
    got = recommend(model, tokenizer, PROMPTS[3:], table, beams=2, topk=2, backend="torch")[0]
    assert len(got) == 2
    for item, score in got:
        assert abs(truth[item] - score) < 1e-4


# ---------------------------------------------------------------- property: zero invalid SIDs
MAX_CODEBOOK, MAX_LEVELS = 8, 4
_decoded = {"users": 0, "items": 0}


@pytest.fixture(scope="module")
def wide_tokenizer():
    """Holds every token a random trie below can use (4 levels x 8 codes)."""
    full = SidTable(["all"], [[MAX_CODEBOOK - 1] * MAX_LEVELS])
    return build_tokenizer(full)


@pytest.fixture(scope="module")
def wide_model(wide_tokenizer):
    return build_tiny_qwen2(len(wide_tokenizer), seed=1)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_levels=st.integers(1, MAX_LEVELS), codebook=st.integers(1, MAX_CODEBOOK), n_items=st.integers(1, 60),
       beams=st.integers(1, 12), topk=st.integers(1, 25), seed=st.integers(0, 2**31 - 1))
def test_zero_invalid_sids_random_tries(wide_model, wide_tokenizer, n_levels, codebook, n_items, beams, topk, seed):
    """100 random catalogues x 100 users = 10,000 decodes; every item returned is a catalogue item with its true
    SID log-probability (checked on the first user), ranked, without duplicates."""
    table = random_table(seed, n_items, codebook, n_levels)
    rng = np.random.default_rng(seed)
    words = ["User", "history", "<a_0>", "<b_1>", "soft", "Next", "item:", "<c_2>"]
    prompts = [" ".join(rng.choice(words, size=rng.integers(1, 12))) for _ in range(100)]
    results = recommend(wide_model, wide_tokenizer, prompts, table, beams=beams, topk=topk, backend="torch",
                        batch_size=50)
    known = set(table.item_ids)
    for ranked in results:
        items = [i for i, _ in ranked]
        scores = [s for _, s in ranked]
        assert items and set(items) <= known and len(set(items)) == len(items)
        assert len(items) <= topk and all(np.isfinite(scores)) and scores == sorted(scores, reverse=True)
        _decoded["users"] += 1
        _decoded["items"] += len(items)
    truth = dict(exhaustive(wide_model, wide_tokenizer, table, prompts[0]))
    assert all(abs(truth[i] - s) < 1e-4 for i, s in results[0])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_levels=st.integers(1, MAX_LEVELS), codebook=st.integers(1, MAX_CODEBOOK), n_items=st.integers(1, 60),
       seed=st.integers(0, 2**31 - 1))
def test_zero_invalid_sids_when_sampling(wide_model, wide_tokenizer, n_levels, codebook, n_items, seed):
    """GRPO rollouts: sampling through ``constrain_generate`` yields a valid SID, then EOS, in every sequence."""
    table = random_table(seed, n_items, codebook, n_levels)
    model = constrain_generate(wide_model, wide_tokenizer, table)
    try:
        enc = wide_tokenizer(["User history: <a_0><b_1>. Next item:", "Next"], return_tensors="pt", padding=True)
        torch.manual_seed(seed)
        out = model.generate(**enc, do_sample=True, temperature=1.5, num_return_sequences=16,
                             max_new_tokens=n_levels + 2, pad_token_id=wide_tokenizer.pad_token_id)
    finally:
        model.generate = model.generate.__wrapped__
    completions = wide_tokenizer.batch_decode(out[:, enc.input_ids.shape[1]:])
    for text in completions:
        item = table.parse(text)
        assert item is not None, text
        assert text.startswith(table.item_sid_string(item) + wide_tokenizer.eos_token), text


# ---------------------------------------------------------------- the CLI end to end
def test_decode_cli_writes_predictions(tmp_path):
    from click.testing import CliRunner

    from sidrec.cli import cli
    from sidrec.data.store import load_data
    from sidrec.predictions import read_predictions

    runner = CliRunner()
    result = runner.invoke(cli, ["data", "prepare", "--source", "synthetic", "--n-users", "25", "--n-items", "40",
                                 "--out", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    data = load_data(tmp_path / "data")
    rng = np.random.default_rng(0)
    codes = rng.permutation(6 * 6 * 6)[:len(data.item_ids)]
    sids = {item: [int(c // 36), int(c // 6 % 6), int(c % 6)] for item, c in zip(data.item_ids, codes)}
    (tmp_path / "sids").mkdir()
    (tmp_path / "sids" / "sids.json").write_text(json.dumps(sids))
    save_tiny_lm(tmp_path / "model", SidTable.load(tmp_path / "sids"))
    out = tmp_path / "predictions" / "tiny.jsonl"
    args = ["decode", "--model", str(tmp_path / "model"), "--sids", str(tmp_path / "sids"), "--data",
            str(tmp_path / "data"), "--backend", "torch", "--beams", "12", "--topk", "10", "--split", "test",
            "--out", str(out), "--batch-size", "8"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    predictions = read_predictions(out)
    test = data.split("test")
    assert [p.sample_id for _, p in predictions] == list(test["sample_id"])
    assert [p.target for _, p in predictions] == list(test["target"])
    assert all(len(p.items) == 10 and set(p.items) <= set(data.item_ids) for _, p in predictions)
    assert all(p.scores == sorted(p.scores, reverse=True) for _, p in predictions)
    # resume: same options -> skipped (file untouched); a bad option -> a clear error
    mtime = out.stat().st_mtime_ns
    assert runner.invoke(cli, args).exit_code == 0 and out.stat().st_mtime_ns == mtime
    bad = runner.invoke(cli, args[:-2] + ["--backend", "hf", "--beams", "4"])
    assert bad.exit_code != 0 and "topk (10) > beams (4)" in str(bad.exception)
    # --exclude-history: the same ranking with each sample's history items taken out, then cut to topk
    full_out, masked_out = tmp_path / "predictions" / "all.jsonl", tmp_path / "predictions" / "masked.jsonl"
    base = args[:args.index("--topk")] + ["--topk", "12"] + args[args.index("--topk") + 2:args.index("--out")]
    assert runner.invoke(cli, base + ["--out", str(full_out)]).exit_code == 0
    result = runner.invoke(cli, args[:args.index("--out")] + ["--out", str(masked_out), "--exclude-history"])
    assert result.exit_code == 0, result.output
    removed = 0
    for (_, whole), (_, masked), history in zip(read_predictions(full_out), read_predictions(masked_out),
                                                 test["history"]):
        kept = [i for i in whole.items if i not in set(history)]
        assert masked.items == kept[:10] and not set(masked.items) & set(history)
        removed += len(whole.items) - len(kept)
    assert removed > 0  # the tiny model does rank history items, so the mask changed something
    # one catalogue: SIDs naming items the data lacks, and a device that cannot be used, are refused up front
    other = tmp_path / "other_sids"
    other.mkdir()
    (other / "sids.json").write_text(json.dumps({**sids, "NOT_AN_ITEM": [5, 5, 5]}))
    bad = runner.invoke(cli, args[:args.index("--sids")] + ["--sids", str(other)] + args[args.index("--sids") + 2:
                                                                                         args.index("--out")]
                        + ["--out", str(tmp_path / "x.jsonl")])
    assert "1 of its 41 items are not in the item table" in str(bad.exception)
    bad = runner.invoke(cli, args[:args.index("--out")] + ["--out", str(tmp_path / "y.jsonl"), "--device", "tpu"])
    assert "device: 'tpu' is not one of" in str(bad.exception)
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "y.jsonl").exists()


def test_model_folders_name_their_sid_table_and_stage(tmp_path):
    """`sidrec decode --model RUN/<stage>/final --data RUN/data` needs no other flag: the model's sidrec.json names
    its SID table and the stage that trained it, so decoding the SFT and the GRPO model writes two files."""
    from pathlib import Path

    from click.testing import CliRunner

    from sidrec.align.prompts import copy_settings, describe_model, model_sid_table
    from sidrec.cli import cli
    from sidrec.data.store import load_data
    from sidrec.predictions import read_predictions

    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(cli, ["data", "prepare", "--source", "synthetic", "--n-users", "25", "--n-items", "40",
                                 "--out", str(run / "data")])
    assert result.exit_code == 0, result.output
    data = load_data(run / "data")
    codes = np.random.default_rng(0).permutation(6 * 6 * 6)[:len(data.item_ids)]
    (run / "sids").mkdir()
    (run / "sids" / "sids.json").write_text(json.dumps(
        {item: [int(c // 36), int(c // 6 % 6), int(c % 6)] for item, c in zip(data.item_ids, codes)}))
    table = SidTable.load(run / "sids")
    sft, grpo = run / "sft" / "final", run / "grpo" / "final"
    save_tiny_lm(sft, table, seed=0)
    describe_model(sft, stage="sft", sids=run / "sids")
    save_tiny_lm(grpo, table, seed=1)
    copy_settings(sft, grpo, stage="grpo")  # what GRPO's final save does: the path is re-expressed for grpo/final
    assert model_sid_table(grpo) == (run / "sids" / "sids.json").resolve()
    described = json.loads((grpo / "sidrec.json").read_text())
    assert described["stage"] == "grpo" and described["sid_table"]["codebook_sizes"] == [6, 6, 6]

    outs = []
    for model in (sft, grpo):
        result = runner.invoke(cli, ["decode", "--model", str(model), "--data", str(run / "data")])
        assert result.exit_code == 0, result.output
        outs.append(Path(result.output.strip().splitlines()[-1]))
    assert outs == [run / "predictions" / "sft.jsonl", run / "predictions" / "grpo.jsonl"]
    first, second = ([p.items for _, p in read_predictions(o)] for o in outs)
    assert len(first) == len(data.split("test")) and all(len(items) == 20 for items in first)
    assert first != second  # two models, two files: neither overwrote the other

    # Decoding again is skipped, unless the model was retrained in place (same path and options, new weights):
    # then the predictions are out of date and are redone (they used to be kept, from the old model).
    stamp = outs[0].stat().st_mtime_ns
    assert runner.invoke(cli, ["decode", "--model", str(sft), "--data", str(run / "data")]).exit_code == 0
    assert outs[0].stat().st_mtime_ns == stamp
    save_tiny_lm(sft, table, seed=1)
    describe_model(sft, stage="sft", sids=run / "sids")
    assert runner.invoke(cli, ["decode", "--model", str(sft), "--data", str(run / "data")]).exit_code == 0
    assert [p.items for _, p in read_predictions(outs[0])] == second  # the seed-1 weights' predictions

    # A folder written before sidrec.json described the model: named after the folder, and --sids is needed.
    old = run / "old" / "final"
    save_tiny_lm(old, table, seed=0)
    result = runner.invoke(cli, ["decode", "--model", str(old), "--data", str(run / "data")])
    assert result.exit_code != 0 and "names no SID table" in str(result.exception)
    result = runner.invoke(cli, ["decode", "--model", str(old), "--data", str(run / "data"), "--sids",
                                 str(run / "sids"), "--beams", "10", "--topk", "10"])
    assert result.exit_code == 0, result.output
    assert (run / "predictions" / "final.jsonl").is_file()

    # --sids with another table than the model's own: refused when an item's SID differs; a copy passes.
    for name, mapping in (("same", json.loads((run / "sids" / "sids.json").read_text())),
                          ("shuffled", dict(zip(table.item_ids, reversed(list(json.loads(
                              (run / "sids" / "sids.json").read_text()).values())))))):
        (run / name).mkdir()
        (run / name / "sids.json").write_text(json.dumps(mapping))
        result = runner.invoke(cli, ["decode", "--model", str(sft), "--data", str(run / "data"), "--sids",
                                     str(run / name), "--out", str(run / f"{name}.jsonl")])
        if name == "same":
            assert result.exit_code == 0, result.output
        else:
            assert "not the SID table the model was trained with" in str(result.exception)
            assert not (run / f"{name}.jsonl").exists()


def test_decode_is_a_file_stage_redone_after_new_sids_and_reads_old_sidecars(tmp_path):
    """`sidrec decode` runs through the stage runner: its marker sits beside the predictions file and keeps the
    summary the benchmarks read; new SIDs at the same path (the model unchanged) redo it instead of skipping; an
    old-format sidecar of the same options and inputs is still taken as done, one of other inputs is not."""
    from click.testing import CliRunner

    from sidrec.artifacts import config_hash
    from sidrec.cli import cli
    from sidrec.data.store import load_data
    from sidrec.decode import DecodeConfig
    from sidrec.decode.run import DecodeStage, decode_seconds
    from sidrec.eval.protocol import predictions_exclude_history
    from sidrec.predictions import read_predictions
    from sidrec.stage import file_marker, read_marker

    runner = CliRunner()
    run = tmp_path / "run"
    assert runner.invoke(cli, ["data", "prepare", "--source", "synthetic", "--n-users", "25", "--n-items", "40",
                               "--out", str(run / "data")]).exit_code == 0
    data = load_data(run / "data")

    def write_sids(seed: int) -> None:
        codes = np.random.default_rng(seed).permutation(6 * 6 * 6)[:len(data.item_ids)]
        (run / "sids").mkdir(exist_ok=True)
        (run / "sids" / "sids.json").write_text(json.dumps(
            {item: [int(c // 36), int(c // 6 % 6), int(c % 6)] for item, c in zip(data.item_ids, codes)}))

    write_sids(0)
    save_tiny_lm(run / "model", SidTable.load(run / "sids"))
    out = run / "predictions" / "tiny.jsonl"
    args = ["decode", "--model", str(run / "model"), "--sids", str(run / "sids"), "--data", str(run / "data"),
            "--beams", "12", "--topk", "10", "--out", str(out), "--exclude-history"]
    assert runner.invoke(cli, args).exit_code == 0
    marker = read_marker(file_marker(out))
    assert marker.current and marker.stage == "decode" and set(marker.fields["inputs"]) == {"model", "sids", "data"}
    assert marker.fields["summary"]["samples"] == len(data.split("test")) and decode_seconds(out) > 0
    assert predictions_exclude_history(out) is True  # the evaluator's protocol check reads the same marker
    first = [p.items for _, p in read_predictions(out)]

    stamp = out.stat().st_mtime_ns
    assert runner.invoke(cli, args).exit_code == 0 and out.stat().st_mtime_ns == stamp  # same work: skipped
    write_sids(1)  # the quantizer was rerun: other SIDs for the same items, the model and options unchanged
    assert runner.invoke(cli, args).exit_code == 0
    assert out.stat().st_mtime_ns != stamp and [p.items for _, p in read_predictions(out)] != first
    assert read_marker(file_marker(out)).fingerprint != marker.fingerprint

    # A sidecar written before the runner (config_hash over the options and the inputs' contents) stays done...
    cfg = DecodeConfig(model=str(run / "model"), sids=str(run / "sids"), data=str(run / "data"), beams=12,
                       topk=10, out=str(out), exclude_history=True)
    legacy = DecodeStage().legacy_view(cfg)
    file_marker(out).write_text(json.dumps({"stage": "decode", "config_hash": config_hash(legacy), "config": legacy,
                                            "summary": {"seconds": 1.5}}))
    stamp = out.stat().st_mtime_ns
    assert runner.invoke(cli, args).exit_code == 0 and out.stat().st_mtime_ns == stamp
    assert decode_seconds(out) == 1.5 and predictions_exclude_history(out) is True
    # ... until its inputs change (its hash then differs): redone, in the new format.
    write_sids(2)
    assert runner.invoke(cli, args).exit_code == 0
    assert out.stat().st_mtime_ns != stamp and read_marker(file_marker(out)).current
