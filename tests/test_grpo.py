"""GRPO stage: config parsing, constrained rollouts (never an invalid SID), training end to end, resume, CLI."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sidrec.errors import ConfigError
from sidrec.sid import SidTable

ROOT = Path(__file__).resolve().parents[1]
GRPO_CONFIGS = sorted((ROOT / "configs" / "grpo").glob("**/*.yaml"))


@pytest.fixture(scope="module")
def tiny_run(synthetic_data, tmp_path_factory) -> Path:
    """RUN with data/ (the session's synthetic set), sids/ (3 levels of 4 codes) and sft/final (a tiny Qwen2)."""
    from sidrec.data import load_data
    from sidrec.decode.tiny import save_tiny_lm

    run = tmp_path_factory.mktemp("grpo_run")
    items = load_data(synthetic_data).item_ids
    codes = np.random.default_rng(0).permutation(64)[: len(items)]
    (run / "sids").mkdir()
    (run / "sids" / "sids.json").write_text(json.dumps(
        {item: [int(c) // 16, int(c) // 4 % 4, int(c) % 4] for item, c in zip(items, codes)}))
    save_tiny_lm(run / "sft" / "final", SidTable.load(run / "sids"))
    (run / "data").symlink_to(synthetic_data)
    return run


def _args(run: Path, **overrides):
    from sidrec.train.grpo import GrpoArgs

    base = dict(sft_model=str(run / "sft" / "final"), data=str(run / "data"), sids=str(run / "sids"),
                rewards=["exact", "ndcg", "prefix", "validity"], max_train_samples=16, torch_threads=1)
    return GrpoArgs(**(base | overrides))


def _trainer_args(out: Path, **overrides):
    from trl import GRPOConfig

    base = dict(output_dir=str(out), use_cpu=True, bf16=False, num_generations=4, per_device_train_batch_size=8,
                max_steps=2, learning_rate=5e-3, beta=0.04, logging_steps=1, save_steps=2, report_to=["tensorboard"],
                gradient_checkpointing=False, seed=0, disable_tqdm=True, reward_weights=[1.0, 1.0, 0.5, 0.1])
    return GRPOConfig(**(base | overrides))


def _fake_trainer(model, **generation):
    """What SidRollout reads from a GRPOTrainer: the model, an Accelerator and the sampling options."""
    from accelerate import Accelerator

    args = SimpleNamespace(ds3_gather_for_generation=True, gradient_checkpointing_kwargs=None,
                           **({"temperature": 1.0, "top_k": 0, "top_p": 1.0} | generation))
    return SimpleNamespace(model_wrapped=model, accelerator=Accelerator(cpu=True), args=args)


def _load(run: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = run / "sft" / "final"
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    return AutoModelForCausalLM.from_pretrained(path), tokenizer, SidTable.load(run / "sids")


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("path", GRPO_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_resolve(path):
    from sidrec.train.grpo import parse_args

    # GPU configs ask for bf16; resolving them here only checks every key and sidrec's own validation.
    args, trainer = parse_args(["--config", str(path), "--use_cpu", "true", "--bf16", "false"])
    assert args.rewards and trainer.num_generations >= 2
    assert trainer.reward_weights is None or len(trainer.reward_weights) == len(args.rewards)


def test_unknown_yaml_key_and_collected_problems(tmp_path):
    from sidrec.train.grpo import parse_args

    bad = tmp_path / "bad.yaml"
    bad.write_text("rollout: beam\nlearning_rat: 0.1\nuse_cpu: true\nbf16: false\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        parse_args(["--config", str(bad)])
    bad.write_text("rollout: greedy\nrewards: [exact, hit]\nreward_weights: [1.0]\nuse_cpu: true\nbf16: false\n")
    with pytest.raises(ConfigError) as err:
        parse_args(["--config", str(bad)])
    assert len(err.value.problems) == 3  # rollout, rewards and reward_weights, reported together


# ------------------------------------------------------------------------------------------------ rollouts
def test_beam_rollout_is_the_top_beams_of_each_group(tiny_run):
    from sidrec.decode import recommend
    from sidrec.train.grpo import SidRollout

    model, tokenizer, table = _load(tiny_run)
    rollout = SidRollout(table, tokenizer, "beam", num_generations=4)
    prompts = ["User history: <a_0><b_1><c_2>. Next item:"] * 4 + ["User history: <a_3><b_3><c_1>. Next item:"] * 4
    out = rollout(prompts, _fake_trainer(model))
    assert out["rollout_group"] == [0] * 4 + [1] * 4
    assert out["rollout_rank"] == [0, 1, 2, 3] * 2
    items = [table.parse(tokenizer.decode(c)) for c in out["completion_ids"]]
    expected = recommend(model, tokenizer, prompts[::4], table, beams=4, topk=4)
    assert items == [item for ranked in expected for item, _ in ranked]
    assert len(set(items[:4])) == 4 and all(c[-1] == tokenizer.eos_token_id for c in out["completion_ids"])


def test_sampled_rollouts_stay_valid_when_the_model_prefers_other_tokens(tiny_run):
    from sidrec.train.grpo import SidRollout

    model, tokenizer, table = _load(tiny_run)
    sid_ids = table.token_ids(tokenizer).flatten()
    with torch.no_grad():  # make a plain word the overwhelming favourite after any prompt
        favourite = tokenizer.encode(" the", add_special_tokens=False)[0]
        model.lm_head.weight[sid_ids] *= 0.01
        model.lm_head.weight[favourite] = model.model.norm.weight.sign() * 50
    prompts = [f"User history: <a_{i % 4}><b_1><c_2>. Next item:" for i in range(6) for _ in range(4)]
    ids = tokenizer(prompts[:4], return_tensors="pt", add_special_tokens=False)
    free = model.generate(**ids, do_sample=True, max_new_tokens=3, pad_token_id=tokenizer.pad_token_id)
    assert table.parse(tokenizer.decode(free[0, ids["input_ids"].shape[1]:])) is None  # unconstrained: invalid

    rollout = SidRollout(table, tokenizer, "sample", num_generations=4)
    torch.manual_seed(0)
    out = rollout(prompts, _fake_trainer(model, temperature=1.3, top_k=5))
    assert all(table.parse(tokenizer.decode(c)) is not None for c in out["completion_ids"])
    assert rollout.n_checked == len(prompts)
    assert sorted(out["rollout_rank"][:4]) == [0, 1, 2, 3] and out["rollout_group"][-1] == 5


def test_check_rejects_invalid_rollouts(tiny_run):
    from sidrec.train.grpo import InvalidRolloutError, SidRollout

    _, tokenizer, table = _load(tiny_run)
    rollout = SidRollout(table, tokenizer, "sample", num_generations=2)
    good = tokenizer.encode(table.item_sid_string(table.item_ids[0]), add_special_tokens=False)
    eos = tokenizer.eos_token_id
    rollout.check([good + [eos]])
    a, b, c = next(sid for sid in np.ndindex(4, 4, 4) if sid not in table.sid_to_item)  # 60 of 64 codes are used
    invalid = tokenizer.encode(f"<a_{a}><b_{b}><c_{c}>", add_special_tokens=False)
    for bad in ([invalid + [eos]], [good], [good[:2] + [eos]], [good + [good[0]]]):
        with pytest.raises(InvalidRolloutError):
            rollout.check([good + [eos]] + bad)


def test_level_policy_logps_are_normalised_over_each_level_and_eos_is_certain(tiny_run):
    from sidrec.train.grpo import InvalidRolloutError, level_completion_logps, level_policy_trainer

    model, tokenizer, table = _load(tiny_run)
    ids = table.token_ids(tokenizer)
    code_of = torch.full((3, int(ids.max()) + 1), -1)
    for level in range(3):
        code_of[level, ids[level]] = torch.arange(4)
    eos = tokenizer.eos_token_id
    prompt = tokenizer.encode("User history: <a_0><b_1><c_2>. Next item:", add_special_tokens=False)
    rows = [prompt + [int(ids[0, 3]), int(ids[1, 0]), int(ids[2, 2]), eos],
            prompt + [int(ids[0, 1]), int(ids[1, 1]), int(ids[2, 3]), eos]]
    input_ids = torch.tensor(rows)
    logps, entropies = level_completion_logps(model, input_ids, torch.ones_like(input_ids), 4, code_of)
    with torch.no_grad():
        logits = model(input_ids).logits[:, len(prompt) - 1:-1]  # the scores of the 4 completion tokens
    for row, codes in enumerate([(3, 0, 2), (1, 1, 3)]):
        for level, code in enumerate(codes):
            expected = logits[row, level, ids[level]].log_softmax(-1)
            assert logps[row, level].item() == pytest.approx(expected[code].item(), abs=1e-5)
            assert entropies[row, level].item() == pytest.approx(-(expected.exp() * expected).sum().item(), abs=1e-5)
        # the vocabulary softmax gives each SID token a smaller probability than its level's softmax does
        assert logits[row, 0].log_softmax(-1)[ids[0, codes[0]]] < logps[row, 0]
    assert logps[:, 3].tolist() == [0.0, 0.0] and logps.requires_grad
    wrong_level = input_ids.clone()
    wrong_level[0, len(prompt) + 1] = int(ids[0, 1])  # a first-level code at the second position
    with pytest.raises(InvalidRolloutError, match="outside SID level 1"):
        level_completion_logps(model, wrong_level, torch.ones_like(input_ids), 4, code_of)
    assert issubclass(level_policy_trainer(ids, [4, 4, 4]), __import__("trl").GRPOTrainer)


def test_policy_softmax_follows_the_model_and_level_leaves_other_rows_alone(tiny_run, tmp_path, caplog):
    from transformers import AutoModelForCausalLM

    from sidrec.train.grpo import run_grpo

    level_model = tmp_path / "level_sft"
    model, tokenizer, table = _load(tiny_run)
    model.config.sid_softmax = "level"
    model.save_pretrained(level_model)
    tokenizer.save_pretrained(level_model)
    sid_rows = table.token_ids(tokenizer).flatten()
    before = model.lm_head.weight.detach().clone()
    others = torch.ones(len(before), dtype=torch.bool)
    others[sid_rows] = False  # output rows of text tokens (and EOS); untied, so no input gradient reaches them
    assert not model.config.tie_word_embeddings

    caplog.set_level(logging.INFO, logger="sidrec.train.grpo")
    final = run_grpo(_args(tiny_run, sft_model=str(level_model)), _trainer_args(tmp_path / "level", beta=0.0))
    assert "over their level's codes" in caplog.text
    after = AutoModelForCausalLM.from_pretrained(final).lm_head.weight.detach()
    assert not torch.equal(after[sid_rows], before[sid_rows])
    assert torch.equal(after[others], before[others])

    caplog.clear()
    final = run_grpo(_args(tiny_run, sft_model=str(level_model), policy_softmax="vocab"),
                     _trainer_args(tmp_path / "vocab", beta=0.0))
    assert "over the vocabulary" in caplog.text
    after = AutoModelForCausalLM.from_pretrained(final).lm_head.weight.detach()
    assert not torch.equal(after[others], before[others])


# ------------------------------------------------------------------------------------------------ training
def test_run_grpo_trains_logs_and_skips_a_finished_run(tiny_run, tmp_path, caplog):
    from transformers import AutoModelForCausalLM

    from sidrec.train.grpo import CURVES_FILE, VALID_METRICS_FILE, run_grpo

    out = tmp_path / "grpo"
    final = run_grpo(_args(tiny_run, valid_samples=20, valid_beams=10), _trainer_args(out))
    before = AutoModelForCausalLM.from_pretrained(tiny_run / "sft" / "final").state_dict()
    after = AutoModelForCausalLM.from_pretrained(final).state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "lm_head.weight" in changed and len(changed) > len(before) // 2
    curves = json.loads((out / CURVES_FILE).read_text())
    assert [r["step"] for r in curves if "reward" in r] == [1, 2]
    assert all("kl" in r and "rewards/validity_reward/mean" in r for r in curves if "reward" in r)
    assert all(r["rewards/validity_reward/mean"] == 1.0 for r in curves if "reward" in r)
    assert list(out.rglob("events.out.tfevents.*")), "tensorboard logs missing"
    valid = json.loads((out / VALID_METRICS_FILE).read_text())
    assert set(valid) == {"sft", "grpo"} and valid["sft"]["n_samples"] == 20
    assert (final / "tokenizer_config.json").is_file() and (out / "checkpoint-2").is_dir()

    caplog.set_level(logging.INFO, logger="sidrec.train.grpo")
    assert run_grpo(_args(tiny_run, valid_samples=20, valid_beams=10), _trainer_args(out)) == final
    assert "skipped" in caplog.text


def test_interrupted_run_resumes_from_its_checkpoint(tiny_run, tmp_path, caplog):
    from sidrec.train.grpo import CURVES_FILE, run_grpo

    out = tmp_path / "grpo"
    run_grpo(_args(tiny_run, rollout="sample"), _trainer_args(out, max_steps=2, save_steps=1))
    caplog.set_level(logging.INFO, logger="sidrec.train.grpo")
    run_grpo(_args(tiny_run, rollout="sample"), _trainer_args(out, max_steps=3, save_steps=1))
    assert "resuming from" in caplog.text and "checkpoint-2" in caplog.text
    assert "1 steps resumed at step 2, 8 rollouts" in caplog.text  # only step 3 was generated again
    assert re.search(r"rollouts \(all valid SIDs\), [0-9.]+ min \([0-9.]+ CPU min\)", caplog.text)
    assert [r["step"] for r in json.loads((out / CURVES_FILE).read_text()) if "reward" in r] == [1, 2, 3]


def test_cli_runs_the_stage(tiny_run, tmp_path):
    from click.testing import CliRunner

    from sidrec.train.grpo_cli import grpo

    out = tmp_path / "cli_grpo"
    result = CliRunner().invoke(grpo, [
        "--config", str(ROOT / "configs" / "grpo" / "demo.yaml"), "--sft_model", str(tiny_run / "sft" / "final"),
        "--data", str(tiny_run / "data"), "--sids", str(tiny_run / "sids"), "--output_dir", str(out),
        "--max_steps", "1", "--per_device_train_batch_size", "8", "--valid_samples", "0", "--report_to", "none",
        "--max_train_samples", "8"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (out / "final" / "config.json").is_file()


def test_pipeline_entry_reads_a_config_file_and_rejects_unknown_keys(tiny_run, tmp_path):
    from sidrec.train.grpo import run_grpo_from_dict

    paths = dict(model_dir=tiny_run / "sft" / "final", align_dir=None, data_dir=tiny_run / "data",
                 sids_dir=tiny_run / "sids", output_dir=tmp_path / "grpo")
    with pytest.raises(ConfigError, match="num_generation"):
        run_grpo_from_dict({"config_file": str(ROOT / "configs" / "grpo" / "demo.yaml"), "num_generation": 4},
                           **paths)
    final = run_grpo_from_dict({"config_file": str(ROOT / "configs" / "grpo" / "demo.yaml"), "max_steps": 1,
                                "per_device_train_batch_size": 8, "valid_samples": 0, "report_to": "none"}, **paths)
    assert (final / "config.json").is_file()
    assert json.loads((tmp_path / "grpo" / "_stage.json").read_text())["config"]["grpo"]["sft_model"] == str(
        tiny_run / "sft" / "final")
