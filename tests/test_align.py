"""Align stage: SID tokens, the SA-Init proof, saved model + tokenizer reload, TS-Align data, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sidrec.errors import ConfigError
from sidrec.sid import SidTable

TINY = dict(vocab_size=400, hidden_size=64, num_layers=1, head_dim=32, num_kv_heads=1, intermediate_size=128,
            lm_epochs=0.0)


@pytest.fixture(scope="module")
def run(synthetic_data, tmp_path_factory) -> Path:
    """RUN with data/ (the session's synthetic set), sids/ (3 levels of 4 codes), and two tiny base models: one
    with a tied LM head (as Qwen2.5-0.5B) and one untied (as the 1.5B and larger models)."""
    from sidrec.align import init_tiny_model
    from sidrec.data import load_data

    run = tmp_path_factory.mktemp("align_run")
    (run / "data").symlink_to(synthetic_data)
    items = load_data(synthetic_data).item_ids
    codes = np.random.default_rng(0).permutation(64)[: len(items)]
    (run / "sids").mkdir()
    (run / "sids" / "sids.json").write_text(json.dumps(
        {item: [int(c) // 16, int(c) // 4 % 4, int(c) % 4] for item, c in zip(items, codes)}))
    init_tiny_model(synthetic_data, run / "base_tied", tie_word_embeddings=True, **TINY)
    init_tiny_model(synthetic_data, run / "base_untied", tie_word_embeddings=False, **TINY)
    return run


def _align(run: Path, name: str, **overrides) -> Path:
    from sidrec.align import AlignConfig, run_align

    cfg = AlignConfig(data=str(run / "data"), sids=str(run / "sids"), model=str(run / "base_untied"),
                      out=str(run / name), valid_samples=40, max_history=5, prompt_format="instruction")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return run_align(cfg)


@pytest.fixture(scope="module")
def aligned(run) -> Path:
    return _align(run, "align_untied")


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path / "model"), AutoTokenizer.from_pretrained(path / "model")


def _keyword_means(model, tokenizer, keywords: dict) -> tuple[list[int], torch.Tensor, torch.Tensor | None]:
    """For every SID token with keywords: its id, and the means of its keyword sub-tokens' input (and, when
    untied, output) embedding rows -- computed here from scratch, independently of sa_init."""
    from sidrec.align import keyword_token_ids

    vocab = tokenizer.get_vocab()
    sid_ids = {vocab[t] for t in keywords["tokens"]}
    emb_in = model.get_input_embeddings().weight
    emb_out = model.get_output_embeddings().weight
    ids, means_in, means_out = [], [], []
    for token, rec in keywords["tokens"].items():
        sub = [i for i in keyword_token_ids(tokenizer, rec["keywords"]) if i not in sid_ids]
        if not sub:
            continue
        ids.append(vocab[token])
        means_in.append(emb_in[sub].mean(0))
        means_out.append(emb_out[sub].mean(0))
    return ids, torch.stack(means_in), torch.stack(means_out)


# ------------------------------------------------------------------------------------------------ SA-Init
def test_sa_init_sets_each_sid_embedding_to_the_mean_of_its_keyword_subtokens(aligned):
    model, tokenizer = _load(aligned)
    keywords = json.loads((aligned / "sid_keywords.json").read_text())
    table = SidTable.load(aligned / "sids")
    assert set(keywords["tokens"]) == {t for item in table.item_ids for t in table.item_tokens(item)}
    assert all(rec["keywords"] for rec in keywords["tokens"].values())
    ids, mean_in, mean_out = _keyword_means(model, tokenizer, keywords)
    assert len(ids) == len(keywords["tokens"]) == json.loads((aligned / "stats.json").read_text())[
        "sa_init"]["initialised"]
    assert not model.config.tie_word_embeddings
    emb_in = model.get_input_embeddings().weight[ids]
    emb_out = model.get_output_embeddings().weight[ids]
    torch.testing.assert_close(emb_in, mean_in, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(emb_out, mean_out, rtol=1e-5, atol=1e-6)  # untied: the LM head rows too
    # Distinct keywords give distinct vectors (not one shared mean-resized row).
    assert torch.cdist(emb_in, emb_in).triu(1)[np.triu_indices(len(ids), 1)].min() > 0


def test_sa_init_with_a_tied_head_and_the_random_init_ablation(run, aligned):
    tied = _align(run, "align_tied", model=str(run / "base_tied"))
    model, tokenizer = _load(tied)
    keywords = json.loads((tied / "sid_keywords.json").read_text())
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    ids, mean_in, _ = _keyword_means(model, tokenizer, keywords)
    torch.testing.assert_close(model.get_input_embeddings().weight[ids], mean_in, rtol=1e-5, atol=1e-6)

    # --no-sa-init: the SID rows are transformers' mean-resized values, far from their keyword means.
    plain = _align(run, "align_no_sa", sa_init=False)
    model, tokenizer = _load(plain)
    ids, mean_in, _ = _keyword_means(model, tokenizer, keywords)
    gap = (model.get_input_embeddings().weight[ids] - mean_in).norm(dim=1)
    assert json.loads((plain / "stats.json").read_text())["sa_init"]["initialised"] == 0
    assert gap.min() > 1e-3


def test_sa_init_unit_and_unknown_token(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sidrec.align import add_sid_tokens, keyword_token_ids, sa_init

    table = SidTable.load(run / "sids")
    tokenizer = AutoTokenizer.from_pretrained(run / "base_untied")
    model = AutoModelForCausalLM.from_pretrained(run / "base_untied")
    n_before = len(tokenizer)
    assert add_sid_tokens(model, tokenizer, table) == len(table.tokens()) == 12
    assert add_sid_tokens(model, tokenizer, table) == 0  # idempotent
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == n_before + 12
    words = ["vanilla", "candle"]
    sub = keyword_token_ids(tokenizer, words)
    assert sub and tokenizer.decode(sub) == " vanilla candle"
    stats = sa_init(model, tokenizer, {"<a_0>": words, "<b_1>": []})
    assert stats == {"initialised": 1, "skipped": 1}
    a0 = tokenizer.convert_tokens_to_ids("<a_0>")
    torch.testing.assert_close(model.get_input_embeddings().weight[a0],
                               model.get_input_embeddings().weight[sub].mean(0))
    torch.testing.assert_close(model.get_output_embeddings().weight[a0],
                               model.get_output_embeddings().weight[sub].mean(0))
    with pytest.raises(KeyError, match="add_sid_tokens"):
        sa_init(model, tokenizer, {"<z_9>": words})


# ------------------------------------------------------------------------------------------------ saved model
def test_saved_model_and_tokenizer_reload_and_sid_tokens_survive_decoding(aligned):
    model, tokenizer = _load(aligned)
    table = SidTable.load(aligned / "sids")
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    token_ids = table.token_ids(tokenizer)  # (levels, codebook) ids; fails when a SID token is missing
    assert token_ids.shape == (3, 4) and len(set(token_ids.flatten().tolist())) == 12
    history = table.item_ids[:3]
    text = "".join(table.item_sid_string(i) for i in history)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == 9  # one token per SID code, never split
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    for item in history:
        assert table.parse(tokenizer.decode(tokenizer.encode(table.item_sid_string(item)))) == item
    # A generated SID comes back as text through the model too (the forward pass accepts the new ids).
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, 9, model.get_output_embeddings().weight.shape[0])
    # The chat template survives the round trip (prompts go through it).
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True).endswith("<|im_start|>assistant\n")


# ------------------------------------------------------------------------------------------------ TS-Align data
def test_ts_align_dataset_has_both_directions_and_the_mixing_ratios(aligned):
    import datasets

    from sidrec.align import AlignConfig

    ds = datasets.load_from_disk(str(aligned / "dataset"))
    table = SidTable.load(aligned / "sids")
    keywords = json.loads((aligned / "sid_keywords.json").read_text())
    train = ds["train"]
    tasks = train["task"][:]
    counts = {t: tasks.count(t) for t in set(tasks)}
    n_main = counts["next_sid"]
    assert n_main > 100
    for task, ratio in AlignConfig().ratios().items():  # defaults: every auxiliary task on
        assert counts[task] == round(ratio * n_main), task
    stats = json.loads((aligned / "stats.json").read_text())
    assert stats["dataset"]["train"]["per_task"] == counts

    rows = {task: [r for r in train if r["task"] == task] for task in counts}
    # Item level, both ways: SID -> title and title -> SID (exact pairs: test_title_to_sid_...).
    assert all(table.parse(r["prompt"].split("item ")[1].split("?")[0]) for r in rows["sid_to_title"])
    assert all(table.parse(r["completion"]) for r in rows["title_to_sid"])
    # Token level: a prefix -> its cluster's description and keywords; keywords or description -> the prefix.
    for r in rows["prefix_to_text"]:
        prefix = r["prompt"].split("starts with ")[1].split(".")[0]
        rec = keywords["prefixes"][prefix]
        assert r["completion"] == f"{rec['description']} Keywords: {', '.join(rec['keywords'])}."
    for r in rows["text_to_prefix"]:
        rec = keywords["prefixes"][r["completion"]]
        assert ", ".join(rec["keywords"]) in r["prompt"] or rec["description"] in r["prompt"]
    assert {len(r["completion"].split("><")) for r in rows["text_to_prefix"]} == {1, 2}  # both prefix depths
    # Every prompt goes through the chat template; main-task completions are catalogue SIDs.
    assert all(p.startswith("<|im_start|>user\n") and p.endswith("<|im_start|>assistant\n") for p in train["prompt"])
    assert all(table.parse(r["completion"]) is not None for r in rows["next_sid"][:200])
    assert all(table.parse(r["completion"]) is not None for r in rows["titles_next_sid"])
    # valid: main task only, with targets for the ranking metrics.
    assert set(ds["valid"]["task"]) == {"next_sid"} and len(ds["valid"]) == 40
    assert [table.item_sid_string(t) for t in ds["valid"]["target"]] == ds["valid"]["completion"]


def test_sequence_format_trains_on_each_users_whole_sequence_and_travels_with_the_model(run):
    import datasets
    from transformers import AutoTokenizer

    from sidrec.align.prompts import PromptSettings, build_prompts
    from sidrec.data import load_data

    aligned = _align(run, "align_sequence", prompt_format="auto", ts_align=False)  # auto: a tiny model -> sequence
    settings = PromptSettings.load(aligned / "model")
    assert settings == PromptSettings("sequence", "<|im_end|>", 5)
    assert json.loads((aligned / "stats.json").read_text())["prompt_format"] == "sequence"
    table = SidTable.load(aligned / "sids")
    data = load_data(run / "data")
    ds = datasets.load_from_disk(str(aligned / "dataset"))
    # One example per training user: the prefix token, then the SIDs of its last 5 training items (loss on all).
    train = {r["completion"] for r in ds["train"]}
    expected = {"".join(table.item_sid_string(i) for i in seq[-5:]) + "" for seq in data.train_sequences["item_ids"]}
    assert len(ds["train"]) == len(data.train_sequences) and train == expected
    assert set(ds["train"]["prompt"]) == {"<|im_end|>"}
    # Validation prompts are histories in the same format; the completion is the target's SID.
    valid = ds["valid"][0]
    sample = data.split("valid").filter(lambda s: s == valid["sample_id"], input_columns="sample_id")[0]
    assert valid["prompt"] == "<|im_end|>" + "".join(table.item_sid_string(i) for i in sample["history"][-5:])
    assert valid["completion"] == table.item_sid_string(sample["target"])
    # Decoding-side prompts follow the saved settings without being told (format and history window).
    tokenizer = AutoTokenizer.from_pretrained(aligned / "model")
    assert build_prompts(tokenizer, [sample["history"]], table) == [valid["prompt"]]
    ids = tokenizer(valid["prompt"], add_special_tokens=False)["input_ids"]
    assert len(ids) == 1 + 3 * min(5, len(sample["history"]))  # the prefix, then one token per SID code
    # An instruction-format model keeps its chat prompts.
    instr = AutoTokenizer.from_pretrained(_align(run, "align_untied") / "model")
    assert build_prompts(instr, [sample["history"]], table)[0].startswith("<|im_start|>user\n")


def test_prompt_settings_errors(tmp_path):
    from sidrec.align.prompts import PromptSettings
    from sidrec.errors import InputError

    assert PromptSettings.load(tmp_path) is None
    (tmp_path / "sidrec.json").write_text('{"prompt_format": "chat"}')
    with pytest.raises(InputError, match="sidrec.json.*prompt_format"):
        PromptSettings.load(tmp_path)
    (tmp_path / "sidrec.json").write_text("{not json")
    with pytest.raises(InputError, match="sidrec.json"):
        PromptSettings.load(tmp_path)


def test_title_to_sid_quotes_the_title_of_the_answer(aligned):
    import datasets

    from sidrec.data import load_data

    ds = datasets.load_from_disk(str(aligned / "dataset"))["train"]
    table = SidTable.load(aligned / "sids")
    items = load_data(Path(aligned).parent / "data").items
    title_of = dict(zip(items["item_id"], items["title"]))
    pairs = [(r["prompt"], table.parse(r["completion"])) for r in ds if r["task"] == "title_to_sid"]
    assert pairs and all(f'"{title_of[item]}"' in prompt for prompt, item in pairs)
    back = [(r["prompt"], r["completion"]) for r in ds if r["task"] == "sid_to_title"]
    assert back and all(title_of[table.parse(p.split("item ")[1].split("?")[0])] == c for p, c in back)


def test_ts_align_off_and_custom_ratios(run):
    import datasets

    off = datasets.load_from_disk(str(_align(run, "align_main_only", ts_align=False) / "dataset"))
    assert set(off["train"]["task"][:]) == {"next_sid"}
    custom = datasets.load_from_disk(str(_align(run, "align_custom", mix_sid_to_title=0.5, mix_title_to_sid=0.0,
                                                mix_titles_next_sid=0.0, mix_prefix_to_text=0.1,
                                                mix_text_to_prefix=0.0) / "dataset"))
    tasks = custom["train"]["task"][:]
    n_main = tasks.count("next_sid")
    assert n_main == len(off["train"])
    assert {t: tasks.count(t) for t in set(tasks)} == {"next_sid": n_main, "sid_to_title": round(0.5 * n_main),
                                                      "prefix_to_text": round(0.1 * n_main)}


# ------------------------------------------------------------------------------------------------ errors
def test_bad_align_config_lists_every_problem(run):
    from sidrec.align import AlignConfig, run_align

    cfg = AlignConfig(data=str(run / "data"), sids=str(run / "sids"), model=str(run / "base_tied"),
                      out=str(run / "never"), keywords="file", top_k_keywords=0, mix_sid_to_title=-1.0,
                      valid_samples=-1)
    with pytest.raises(ConfigError) as err:
        run_align(cfg)
    assert len(err.value.problems) == 4
    text = str(err.value)
    for field in ("keywords_file", "top_k_keywords", "sid_to_title", "valid_samples"):
        assert field in text
    assert not (run / "never").exists()


def test_align_refuses_a_sid_table_that_misses_items_of_the_data(run, tmp_path):
    """An item without a SID would silently lose its samples and never be recommended: an error naming it."""
    import json

    from sidrec.align import AlignConfig, run_align
    from sidrec.errors import InputError

    table = json.loads((run / "sids" / "sids.json").read_text())
    missing = next(iter(table))
    (tmp_path / "sids").mkdir()
    (tmp_path / "sids" / "sids.json").write_text(json.dumps({k: v for k, v in table.items() if k != missing}))
    with pytest.raises(InputError, match=rf"1 of the {len(table)} items .* have no SID here \(first: '{missing}'\)"):
        run_align(AlignConfig(data=str(run / "data"), sids=str(tmp_path / "sids"), model=str(run / "base_tied"),
                              out=str(tmp_path / "align")))
    assert not (tmp_path / "align").exists()


def test_bad_tiny_model_config(run):
    from sidrec.align import init_tiny_model

    with pytest.raises(ConfigError) as err:
        init_tiny_model(run / "data", run / "never_tiny", head_dim=16, hidden_size=48, vocab_size=100)
    assert {p.split(":")[0].split(" ")[0] for p in err.value.problems} >= {"head_dim", "vocab_size"}


def test_align_cli_rejects_unknown_options_and_runs(run, tmp_path):
    from click.testing import CliRunner

    from sidrec.align.cli import align

    args = ["--data", str(run / "data"), "--sids", str(run / "sids"), "--model", str(run / "base_tied")]
    bad = CliRunner().invoke(align, args + ["--out", str(tmp_path / "a"), "--top-k-keywords", "0"])
    assert bad.exit_code != 0 and "top_k_keywords" in (bad.output + str(bad.exception))
    ok = CliRunner().invoke(align, args + ["--out", str(tmp_path / "b"), "--no-ts-align", "--valid-samples", "10"])
    assert ok.exit_code == 0, ok.output + repr(ok.exception)
    assert "12 SID tokens" in ok.output and (tmp_path / "b" / "model" / "config.json").is_file()


def test_a_standalone_align_rerun_redoes_after_new_sids_and_skips_otherwise(run, tmp_path):
    """`sidrec align` hashes its inputs too: new SIDs upstream redo it even though its own options are the same."""
    import shutil

    from click.testing import CliRunner

    from sidrec.align.cli import align
    from sidrec.stage import MARKER_FILE, read_marker

    sids = tmp_path / "sids"
    shutil.copytree(run / "sids", sids)
    args = ["--data", str(run / "data"), "--sids", str(sids), "--model", str(run / "base_tied"), "--out",
            str(tmp_path / "align"), "--no-ts-align", "--valid-samples", "10", "--max-train-samples", "50"]

    def align_cli() -> str:
        result = CliRunner().invoke(align, args)
        assert result.exit_code == 0, result.output + repr(result.exception)
        return read_marker(tmp_path / "align" / MARKER_FILE).fingerprint

    first = align_cli()
    model_file = tmp_path / "align" / "model" / "model.safetensors"
    made = model_file.stat().st_mtime_ns
    assert align_cli() == first and model_file.stat().st_mtime_ns == made  # same options, same inputs: skipped

    table = json.loads((sids / "sids.json").read_text())
    items = sorted(table)
    table[items[0]], table[items[1]] = table[items[1]], table[items[0]]  # two items swap their SIDs
    (sids / "sids.json").write_text(json.dumps(table))
    assert align_cli() != first  # redone, not silently skipped
    assert json.loads((tmp_path / "align" / "sids" / "sids.json").read_text()) == table


def test_tiny_model_and_serve_options_are_checked_before_any_work():
    """Values a model or a server would refuse mid-way (or divide by) are config errors listed together."""
    from sidrec.align import TinyModelConfig
    from sidrec.config import resolve
    from sidrec.errors import ConfigError
    from sidrec.serve.config import ServeConfig

    with pytest.raises(ConfigError) as e:
        resolve(TinyModelConfig, overrides={"head_dim": 0, "lm_learning_rate": -1, "max_position_embeddings": 0})
    assert e.value.problems == ["max_position_embeddings: must be >= 64 (a prompt holds a history of SIDs)",
                                "lm_learning_rate: must be > 0",
                                "head_dim: must be >= 32 (vLLM's CPU attention refuses smaller heads)"]
    with pytest.raises(ConfigError, match="device: 'bogus' is not one of"):
        resolve(ServeConfig, overrides={"run": ".", "device": "bogus"})
    assert resolve(ServeConfig, overrides={"run": ".", "device": "cuda:1"}).device == "cuda:1"
