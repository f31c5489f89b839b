"""SFT stage: loss on completions only, a few real training steps, resume from a checkpoint, LoRA, configs, and
the DeepSpeed / accelerate configs (validated on CPU with accelerate's loader and DeepSpeed's config classes; real
DeepSpeed runs: tests/test_deepspeed.py)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sidrec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SFT_CONFIGS = sorted((ROOT / "configs" / "sft").glob("**/*.yaml"))
DS_DIR = ROOT / "deepspeed_configs"


def _parse(align_dir: Path, out: Path, *flags: str):
    """configs/sft/demo.yaml without its early stopping (flags switch it back on), plus ``flags``."""
    import yaml

    from sidrec.train.sft import parse_args

    config = yaml.safe_load((ROOT / "configs" / "sft" / "demo.yaml").read_text())
    for key in ("load_best_model_at_end", "metric_for_best_model", "early_stopping_patience"):
        config.pop(key)
    path = out.parent / f"{out.name}_sft.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return parse_args(["--config", str(path), "--align_dir", str(align_dir),
                       "--output_dir", str(out), "--use_cpu", "true", "--report_to", "none",
                       "--disable_tqdm", "true", "--per_device_train_batch_size", "8", "--logging_steps", "1",
                       "--save_total_limit", "null", "--val_samples", "0", *flags])


# ------------------------------------------------------------------------------------------------ data / loss
def test_loss_is_on_completions_only(align_dir, tmp_path):
    import datasets

    from sidrec.train.sft import build_trainer

    # The whole-vocabulary loss (the demo config's level softmax: test_level_softmax_loss_...).
    trainer, _, n_train = build_trainer(*_parse(align_dir, tmp_path / "sft", "--sid_softmax", "vocab"))
    tokenizer = trainer.processing_class
    train = datasets.load_from_disk(str(align_dir / "dataset"))["train"]
    assert n_train == len(train)
    pairs = set(zip(train["prompt"][:], train["completion"][:]))
    batch = next(iter(trainer.get_train_dataloader()))
    eos = tokenizer.eos_token
    for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
        ids, labels = ids[mask.bool()], labels[mask.bool()]
        answer = labels != -100
        first = int(answer.nonzero()[0])
        assert answer[first:].all() and not answer[:first].any()  # prompt masked, completion (+ EOS) counted
        prompt, completion = tokenizer.decode(ids[:first]), tokenizer.decode(ids[first:])
        assert completion.endswith(eos) and (prompt, completion[: -len(eos)]) in pairs
        assert torch.equal(labels[answer], ids[answer])
    # The loss the trainer optimises equals cross-entropy over the completion tokens alone.
    model = trainer.model
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shift = batch["labels"][:, 1:]
    manual = torch.nn.functional.cross_entropy(logits[:, :-1][shift != -100], shift[shift != -100])
    torch.testing.assert_close(out.loss, manual, rtol=1e-4, atol=1e-5)
    # sidrec's trainer computes that loss with the model's own cross-entropy; TRL's fused LM head gives the same.
    from trl import SFTTrainer

    assert type(trainer).__name__ == "ModelLossSFTTrainer"
    ours = trainer.compute_loss(model, dict(batch))
    theirs = SFTTrainer.compute_loss(trainer, model, dict(batch))
    torch.testing.assert_close(ours, manual, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    plain, _, _ = build_trainer(*_parse(align_dir, tmp_path / "sft_trl", "--model_loss", "false",
                                        "--sid_softmax", "vocab"))
    # TRL's own loss (the resumable wrapper sidrec puts around every trainer class adds no compute_loss)
    assert isinstance(plain, SFTTrainer) and type(plain).compute_loss is SFTTrainer.compute_loss


def test_train_tasks_restricts_the_training_data(align_dir, tmp_path):
    import datasets

    from sidrec.train.sft import build_trainer

    tasks = datasets.load_from_disk(str(align_dir / "dataset"))["train"]["task"][:]
    trainer, _, n_train = build_trainer(*_parse(align_dir, tmp_path / "sft", "--train_tasks", "next_sid",
                                                "sid_to_title"))
    assert n_train == tasks.count("next_sid") + tasks.count("sid_to_title") < len(tasks)


# ------------------------------------------------------------------------------------------------ training
def test_sft_trains_validates_and_an_interrupted_run_resumes(align_dir, tmp_path, caplog):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sidrec.sid import SidTable
    from sidrec.train.sft import LOG_HISTORY_FILE, read_summary, run_sft

    flags = ("--max_steps", "3", "--save_strategy", "steps", "--save_steps", "1", "--eval_strategy", "steps",
             "--eval_steps", "3", "--val_samples", "10", "--val_beams", "10", "--learning_rate", "1e-2")
    full = tmp_path / "full"
    final = run_sft(*_parse(align_dir, full, *flags))
    summary = read_summary(full)
    assert summary["global_step"] == 3 and summary["tokens"] > 0 and summary["tokens_per_second"] > 0
    assert summary["loss_last"] < summary["loss_first"]
    assert (summary["total_tokens"], summary["total_train_seconds"]) == (summary["tokens"], summary["train_seconds"])
    [val] = summary["validation"]
    assert val["step"] == 3 and 0.0 <= val["eval_ndcg@10"] <= val["eval_hr@10"] <= 1.0
    assert any("eval_hr@10" in r for r in json.loads((full / LOG_HISTORY_FILE).read_text()))
    # The SID rows moved (new tokens are trained), and the saved model reloads with its tokenizer.
    before = AutoModelForCausalLM.from_pretrained(align_dir / "model").get_input_embeddings().weight
    after = AutoModelForCausalLM.from_pretrained(final).get_input_embeddings().weight
    sid_ids = SidTable.load(align_dir / "sids").token_ids(AutoTokenizer.from_pretrained(final)).flatten()
    assert (after[sid_ids] - before[sid_ids]).abs().amax(dim=1).min() > 0

    # Interrupt after step 2: drop what step 3 and the end wrote, then run the same command again.
    broken = tmp_path / "broken"
    shutil.copytree(full, broken)
    for name in ("final", "checkpoint-3", "_stage.json"):
        path = broken / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    caplog.set_level(logging.INFO, logger="sidrec.train.sft")
    resumed = run_sft(*_parse(align_dir, broken, *flags))
    assert "resuming from" in caplog.text and "checkpoint-2" in caplog.text
    resumed_summary = read_summary(broken)
    assert resumed_summary["global_step"] == 3 and resumed_summary["resumed_from_step"] == 2
    assert resumed_summary["loss_first"] == summary["loss_first"]  # the history came back with the checkpoint
    assert [v["step"] for v in resumed_summary["validation"]] == [3]
    # The cost of the whole run survives the resume: the checkpoint carried the earlier time and tokens.
    # Every checkpoint is a model folder in the model's prompt format, naming its stage and SID table.
    from sidrec.align.prompts import PromptSettings, model_sid_table, model_stage

    checkpoint = broken / "checkpoint-2"
    assert PromptSettings.load(checkpoint) == PromptSettings.load(align_dir / "model")
    assert (model_stage(checkpoint), model_stage(final)) == ("sft", "sft")
    assert model_sid_table(checkpoint) == model_sid_table(align_dir / "model") is not None
    earlier = json.loads((broken / "checkpoint-2" / "sidrec_progress.json").read_text())
    assert 0 < earlier["tokens"] < summary["tokens"] and earlier["seconds"] > 0
    assert resumed_summary["total_tokens"] == earlier["tokens"] + resumed_summary["tokens"] == summary["tokens"]
    assert resumed_summary["total_train_seconds"] > resumed_summary["train_seconds"]
    a = AutoModelForCausalLM.from_pretrained(final).state_dict()
    b = AutoModelForCausalLM.from_pretrained(resumed).state_dict()
    for key in a:  # the resumed run ends where the uninterrupted one did
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)

    caplog.clear()
    assert run_sft(*_parse(align_dir, full, *flags)) == final
    assert "skipped" in caplog.text


def test_early_stopping_keeps_the_checkpoint_with_the_best_validation_ndcg(align_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from sidrec.train.sft import read_summary, run_sft

    out = tmp_path / "early"
    final = run_sft(*_parse(align_dir, out, "--max_steps", "12", "--save_strategy", "steps", "--save_steps", "1",
                            "--eval_strategy", "steps", "--eval_steps", "1", "--val_samples", "12",
                            "--val_beams", "10", "--learning_rate", "3e-2", "--load_best_model_at_end", "true",
                            "--metric_for_best_model", "eval_ndcg@10", "--early_stopping_patience", "2"))
    summary = read_summary(out)
    scores = [v["eval_ndcg@10"] for v in summary["validation"]]
    # The metric the trainer selects on is the ranking callback's NDCG@10, and it kept the best evaluation.
    assert len(scores) == summary["global_step"] and summary["best_metric"] == pytest.approx(max(scores))
    best_step = int(Path(summary["best_checkpoint"]).name.split("-")[1])
    assert scores[best_step - 1] == summary["best_metric"]
    # Early stopping: stopped two evaluations after the last improvement (or ran out of steps).
    improved = [i for i, v in enumerate(scores) if v > max(scores[:i], default=-1.0)]
    assert summary["global_step"] == min(12, improved[-1] + 1 + 2)
    # The saved model is the best checkpoint's weights, not the last step's.
    best = AutoModelForCausalLM.from_pretrained(summary["best_checkpoint"]).state_dict()
    saved = AutoModelForCausalLM.from_pretrained(final).state_dict()
    for key in best:
        torch.testing.assert_close(best[key], saved[key])
    with pytest.raises(ConfigError, match="early_stopping_patience"):
        _parse(align_dir, out, "--early_stopping_patience", "2")
    with pytest.raises(ConfigError, match="needs val_samples"):
        _parse(align_dir, out, "--metric_for_best_model", "eval_ndcg@10")


def test_a_time_budget_evaluates_saves_and_stops(align_dir, tmp_path):
    from sidrec.train.options import fingerprint
    from sidrec.train.sft import read_summary, run_sft

    out = tmp_path / "budget"
    # Per-epoch evaluation and best-checkpoint selection: a stop mid-epoch evaluates at the stop and again at the
    # epoch's end, at the same step, and the trainer must find the ranking metric both times.
    flags = ("--num_train_epochs", "3", "--save_strategy", "epoch", "--eval_strategy", "epoch", "--val_samples", "8",
             "--val_beams", "10", "--load_best_model_at_end", "true", "--metric_for_best_model", "eval_ndcg@10")
    run_sft(*_parse(align_dir, out, "--max_minutes", "0.0001", *flags))
    summary = read_summary(out)
    assert summary["global_step"] == 1  # the budget ran out during the first step
    assert [v["step"] for v in summary["validation"]] == [1] and (out / "checkpoint-1").is_dir()
    # The budget is not part of what decides whether a run is the same run (a larger one continues it).
    assert fingerprint("sft", *_parse(align_dir, out, "--max_minutes", "5")) == fingerprint("sft", *_parse(align_dir, out))
    assert summary["total_cpu_seconds"] > 0
    # On the CPU clock, the budget counts this process's CPU time (the same stop here, on an idle or a busy machine).
    cpu = tmp_path / "cpu"
    run_sft(*_parse(align_dir, cpu, "--max_minutes", "0.0001", "--budget_clock", "cpu", *flags))
    assert read_summary(cpu)["global_step"] == 1
    assert json.loads((cpu / "checkpoint-1" / "sidrec_progress.json").read_text())["cpu_seconds"] > 0
    with pytest.raises(ConfigError, match="budget_clock"):
        run_sft(*_parse(align_dir, cpu, "--budget_clock", "sundial"))


def test_eval_loss_runs_on_the_first_eval_loss_samples_examples():
    import datasets

    from sidrec.train.sft import _eval_split

    valid = datasets.Dataset.from_dict({"prompt": list("abcdef"), "completion": list("ABCDEF"), "target": list("123456")})
    few = _eval_split(valid, 4)
    assert few["prompt"] == list("abcd") and few.column_names == ["prompt", "completion"]
    assert len(_eval_split(valid, None)) == len(_eval_split(valid, 100)) == 6


def test_training_dropout_acts_in_training_only_and_leaves_the_model_and_old_fingerprints_alone(align_dir, tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sidrec.train import options
    from sidrec.train.sft import add_training_dropout

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1)).eval()
    ids = torch.randint(0, 50, (2, 7))
    before = model(ids).logits
    state = {k: v.clone() for k, v in model.state_dict().items()}
    handles = add_training_dropout(model, 0.3)
    assert len(handles) == 1 + 2 * 2  # embeddings, then attention and MLP of each layer
    assert torch.equal(model(ids).logits, before)  # eval mode: no dropout
    model.train()
    a, b = model(ids).logits, model(ids).logits
    assert not torch.allclose(a, before) and not torch.allclose(a, b)
    for handle in handles:
        handle.remove()
    assert torch.equal(model.eval()(ids).logits, before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())

    args, trainer = _parse(align_dir, tmp_path / "fp")
    assert "dropout" not in options.fingerprint("sft", args, trainer)["sft"]  # runs made before the option stay valid
    args, trainer = _parse(align_dir, tmp_path / "fp", "--dropout", "0.2")
    assert options.fingerprint("sft", args, trainer)["sft"]["dropout"] == 0.2
    with pytest.raises(ConfigError, match="dropout"):
        _parse(align_dir, tmp_path / "fp", "--dropout", "1.5")


def test_lora_trains_embeddings_and_saves_a_merged_model(align_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from sidrec.train.sft import read_summary, run_sft

    out = tmp_path / "lora"
    final = run_sft(*_parse(align_dir, out, "--use_lora", "true", "--lora_r", "4", "--max_steps", "1",
                            "--save_strategy", "no", "--eval_strategy", "no", "--learning_rate", "1e-2",
                            "--warmup_steps", "0"))
    summary = read_summary(out)
    assert 0 < summary["n_trainable"] < summary["n_parameters"]
    merged = AutoModelForCausalLM.from_pretrained(final)
    assert not any("lora" in k for k in merged.state_dict())
    # The tied LM head stays tied (one trained copy, not two diverging ones).
    assert merged.config.tie_word_embeddings
    assert merged.get_output_embeddings().weight.data_ptr() == merged.get_input_embeddings().weight.data_ptr()
    base = AutoModelForCausalLM.from_pretrained(align_dir / "model")
    assert not torch.equal(merged.get_input_embeddings().weight, base.get_input_embeddings().weight)
    assert not torch.equal(merged.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight)


# ------------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("path", SFT_CONFIGS, ids=lambda p: p.name)
def test_shipped_sft_configs_resolve(path):
    from sidrec.train.sft import parse_args

    args, trainer = parse_args(["--config", str(path), "--use_cpu", "true", "--bf16", "false"])
    assert trainer.completion_only_loss in (None, True) and not trainer.packing and args.align_dir


def test_bad_sft_configs_are_reported_together(align_dir, tmp_path):
    from sidrec.train.sft import parse_args, run_sft_from_dict

    bad = tmp_path / "bad.yaml"
    bad.write_text("align_dir: x\nlearning_rat: 0.1\nuse_cpu: true\n")
    with pytest.raises(ConfigError, match="learning_rat"):
        parse_args(["--config", str(bad)])
    bad.write_text("align_dir: x\ncompletion_only_loss: false\npacking: true\ntrain_tasks: [next_item]\n"
                   "val_beams: 5\neval_loss_samples: 0\nuse_cpu: true\n")
    with pytest.raises(ConfigError) as err:
        parse_args(["--config", str(bad)])
    assert len(err.value.problems) == 5
    with pytest.raises(ConfigError, match="num_train_epoch"):
        run_sft_from_dict({"num_train_epoch": 1}, align_dir=align_dir, output_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match="val_samples: expected int, got 'abc'"):  # not a TypeError inside
        run_sft_from_dict({"val_samples": "abc"}, align_dir=align_dir, output_dir=tmp_path / "o")
    from sidrec.errors import InputError

    with pytest.raises(InputError, match="sidrec align"):
        run_sft_from_dict({}, align_dir=tmp_path / "missing", output_dir=tmp_path / "o")



def test_trainer_values_that_would_fail_mid_run_are_config_errors(tmp_path):
    """A non-positive learning rate or batch size, max_steps 0 or below -1, zero epochs, a YAML syntax error or a
    missing file: reported before anything is built or written."""
    from sidrec.train.sft import parse_args

    ok = tmp_path / "ok.yaml"
    ok.write_text("align_dir: x\nuse_cpu: true\n")
    for flags, expect in ((["--learning_rate", "-1"], "learning_rate: must be > 0"),
                          (["--per_device_train_batch_size", "0"], "per_device_train_batch_size: must be >= 1"),
                          (["--max_steps", "0"], "max_steps: must be >= 1"),
                          (["--max_steps", "-3"], "max_steps: must be >= 1"),
                          (["--num_train_epochs", "0"], "num_train_epochs: must be > 0")):
        with pytest.raises(ConfigError, match=expect):
            parse_args(["--config", str(ok), *flags])
    parse_args(["--config", str(ok), "--num_train_epochs", "0", "--max_steps", "3"])  # steps decide: fine
    bad = tmp_path / "bad.yaml"
    bad.write_text("align_dir: [x\n")
    with pytest.raises(ConfigError, match="bad.yaml:\n  - not valid YAML"):
        parse_args(["--config", str(bad)])
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        parse_args(["--config", str(tmp_path / "nope.yaml")])


# ------------------------------------------------------------------------------------------------ DeepSpeed
def _tiny_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM(Qwen2Config(vocab_size=100, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=32))


@pytest.mark.parametrize("name", ["cpu", "single_gpu", "multi_gpu", "zero2", "zero2_cpu", "zero3", "zero3_cpu"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    cfg = load_config_from_file(str(DS_DIR / f"{name}.yaml"))
    assert cfg.num_machines == 1 and cfg.num_processes >= 1
    assert (cfg.use_cpu is True) == (name == "cpu" or name.endswith("_cpu"))
    if name.startswith("zero"):
        assert cfg.distributed_type == DistributedType.DEEPSPEED
        ds_file = ROOT / cfg.deepspeed_config["deepspeed_config_file"]
        stage = json.loads(ds_file.read_text())["zero_optimization"]["stage"]
        assert stage == int(name[4]) and cfg.deepspeed_config["zero3_init_flag"] == (stage == 3)
    else:
        assert cfg.distributed_type in (DistributedType.NO, DistributedType.MULTI_GPU) and not cfg.deepspeed_config
    # Every shipped accelerate config is named in a usage line at its top.
    assert f"deepspeed_configs/{name}.yaml" in (DS_DIR / f"{name}.yaml").read_text().split("\n\n")[0]


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_json_resolves_from_the_trainer_config(stage, request):
    """The "auto" values are filled from the SFTConfig (the single source of truth) and the result is a valid
    DeepSpeed config (DeepSpeed's own classes when it is installed: pip install -e ".[deepspeed]")."""
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config
    from trl import SFTConfig

    path = DS_DIR / f"ds_zero{stage}.json"
    raw = json.loads(path.read_text())
    assert raw["train_micro_batch_size_per_gpu"] == raw["gradient_accumulation_steps"] == "auto"
    assert raw["bf16"]["enabled"] == "auto"
    args = SFTConfig(output_dir="unused", use_cpu=True, bf16=False, per_device_train_batch_size=8,
                     gradient_accumulation_steps=2, max_grad_norm=0.5, report_to="none")
    hf = HfTrainerDeepSpeedConfig(str(path))
    # The object registers itself as transformers' process-wide DeepSpeed config: drop it when the test ends so
    # later tests in this worker (generate() asks is_deepspeed_zero3_enabled()) never see it.
    request.addfinalizer(unset_hf_deepspeed_config)
    hf.trainer_config_process(args)
    hf.trainer_config_finalize(args, _tiny_model(), num_training_steps=10)
    assert "auto" not in json.dumps(hf.config)
    assert hf.config["train_micro_batch_size_per_gpu"] == 8 and hf.config["gradient_accumulation_steps"] == 2
    assert hf.config["gradient_clipping"] == 0.5 and hf.config["bf16"]["enabled"] is False
    assert hf.is_zero3() == (stage == 3)
    import deepspeed
    from deepspeed.runtime.config import DeepSpeedConfig

    ds = DeepSpeedConfig(hf.config)
    assert deepspeed.__version__ and ds.zero_optimization_stage == stage
    assert (ds.train_batch_size, ds.train_micro_batch_size_per_gpu, ds.gradient_accumulation_steps) == (16, 8, 2)


# ------------------------------------------------------------------------------------------------ CLI
@pytest.mark.slow
def test_accelerate_launch_runs_the_script(align_dir, tmp_path):
    out = tmp_path / "launched"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DS_DIR / "cpu.yaml"),
         str(ROOT / "scripts" / "sft.py"), "--config", str(ROOT / "configs" / "sft" / "demo.yaml"),
         "--align_dir", str(align_dir), "--output_dir", str(out), "--max_steps", "2", "--val_samples", "10",
         "--val_beams", "10", "--report_to", "none", "--per_device_train_batch_size", "8"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "validation HR@10" in proc.stdout and (out / "final" / "config.json").is_file()


def test_level_softmax_loss_trains_is_recorded_and_every_decoder_scores_by_it(align_dir, tmp_path):
    """``sid_softmax: level``: the loss is each SID target's cross-entropy among its level's codes (text targets:
    the whole vocabulary), the saved model's config records it, and the torch and hf backends then rank by the
    per-level log-probabilities, identically, and higher than the whole-vocabulary ones."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sidrec.align.prompts import PromptSettings
    from sidrec.decode import recommend, sid_softmax_of
    from sidrec.sid import SidTable
    from sidrec.train.sft import level_softmax_loss, read_summary, run_sft

    flags = ("--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "4", "--val_samples", "10",
             "--val_beams", "10", "--learning_rate", "1e-2", "--eval_loss_samples", "8")
    out = tmp_path / "level"
    final = run_sft(*_parse(align_dir, out, "--sid_softmax", "level", *flags))
    summary = read_summary(out)
    assert summary["loss_last"] < summary["loss_first"] and len(summary["validation"]) == 1
    assert sid_softmax_of(final) == "level" and sid_softmax_of(align_dir / "model") == "vocab"
    model = AutoModelForCausalLM.from_pretrained(final).eval()
    tokenizer = AutoTokenizer.from_pretrained(final)
    table = SidTable.load(align_dir / "sids")
    assert sid_softmax_of(model) == "level"

    # The loss against a direct computation from the full logits, on a batch with SID and text targets.
    ids = table.token_ids(tokenizer)
    levels = [ids[level, :size] for level, size in enumerate(table.codebook_sizes)]
    text = tokenizer("a soft red lotion", add_special_tokens=False)["input_ids"]
    sid = [int(ids[level, code]) for level, code in enumerate(table.codes[0])]
    input_ids = torch.tensor([text + sid + text[:2]])
    labels = input_ids.clone()
    labels[0, :2] = -100
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits[0, :-1]
        want, n = 0.0, 0
        for t, target in enumerate(labels[0, 1:].tolist()):
            if target == -100:
                continue
            level = next((lv for lv, tokens in enumerate(levels) if target in tokens.tolist()), None)
            if level is None:
                want -= logits[t].log_softmax(-1)[target].item()
            else:
                want -= logits[t, levels[level]].log_softmax(-1)[levels[level].tolist().index(target)].item()
            n += 1
        got = level_softmax_loss(model, {"input_ids": input_ids, "labels": labels}, levels)
        # label_smoothing_factor eps: (1 - eps) * NLL + eps * mean NLL over the classes of that softmax
        eps, smooth = 0.1, 0.0
        for t, target in enumerate(labels[0, 1:].tolist()):
            if target == -100:
                continue
            level = next((lv for lv, tokens in enumerate(levels) if target in tokens.tolist()), None)
            logp = logits[t].log_softmax(-1) if level is None else logits[t, levels[level]].log_softmax(-1)
            index = target if level is None else levels[level].tolist().index(target)
            smooth -= (1 - eps) * logp[index].item() + eps * logp.mean().item()
        got_smooth = level_softmax_loss(model, {"input_ids": input_ids, "labels": labels}, levels, label_smoothing=eps)
        vocab_smooth = level_softmax_loss(model, {"input_ids": input_ids, "labels": labels}, [], label_smoothing=eps)
        vocab_plain = model(input_ids=input_ids, labels=labels).loss
        vocab_want = -((1 - eps) * logits.log_softmax(-1)[torch.arange(len(logits)), labels[0, 1:].clamp(min=0)]
                       + eps * logits.log_softmax(-1).mean(-1))[labels[0, 1:] != -100].mean()
    assert got.item() == pytest.approx(want / n, rel=1e-5)
    assert got_smooth.item() == pytest.approx(smooth / n, rel=1e-5) and got_smooth.item() > got.item()
    assert vocab_smooth.item() == pytest.approx(vocab_want.item(), rel=1e-5)
    assert vocab_smooth.item() > vocab_plain.item()

    # Decoders: per-level scores, the same top-K from torch and hf (both constraints), above the vocab scores.
    prompts = [s["prompt"] for s in __import__("datasets").load_from_disk(str(align_dir / "dataset"))["valid"]][:6]
    by_level = recommend(model, tokenizer, prompts, table, beams=10, topk=10, backend="torch")
    for backend in ("hf", "hf-prefix-fn"):
        other = recommend(model, tokenizer, prompts, table, beams=10, topk=10, backend=backend)
        for a, b in zip(by_level, other):
            assert [i for i, _ in a] == [i for i, _ in b]
            assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
    by_vocab = recommend(model, tokenizer, prompts, table, beams=10, topk=10, backend="torch", level_softmax=False)
    assert all(a[0][1] > b[0][1] for a, b in zip(by_level, by_vocab))
    assert PromptSettings.load(final) == PromptSettings.load(align_dir / "model")
    with pytest.raises(ConfigError, match="sid_softmax"):
        _parse(align_dir, out, "--sid_softmax", "codebook")


def test_the_command_line_on_a_cpu_machine_needs_no_device_flags(tmp_path):
    """Without CUDA, `scripts/sft.py` / `sidrec sft` train on the CPU in float32 unless told otherwise (as a
    pipeline section does), so an unknown flag is reported as such, not hidden behind TRL's bf16 check."""
    import torch

    from sidrec.train.sft import parse_args

    if torch.cuda.is_available():
        pytest.skip("the CPU defaults apply only without CUDA")
    args, trainer = parse_args(["--align_dir", "x"])
    assert trainer.use_cpu and not trainer.bf16 and not trainer.fp16
    with pytest.raises(ConfigError, match="--bogus"):
        parse_args(["--align_dir", "x", "--bogus", "1"])


def test_item_head_loss_is_recorded_and_the_torch_decoder_reranks_by_it(align_dir, tmp_path):
    """``item_loss``: each item target adds ``weight x`` the cross-entropy of a softmax over every catalogue item
    (an item's vector: the sum of its SID tokens' output embeddings) at the state before its first SID token; the
    model's config records ``item_head``; the torch decoder's re-ranked scores are the SID log-prob plus the
    weighted item-head log-prob, computed here from the full logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sidrec.decode import recommend
    from sidrec.item_head import ItemTargets, item_head_of, item_token_ids
    from sidrec.sid import SidTable
    from sidrec.train.sft import level_softmax_loss, read_summary, run_sft

    flags = ("--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "4", "--val_samples", "10",
             "--val_beams", "10", "--learning_rate", "1e-2", "--eval_loss_samples", "8", "--sid_softmax", "level")
    out = tmp_path / "item"
    final = run_sft(*_parse(align_dir, out, "--item_loss", "1.0", *flags))
    summary = read_summary(out)
    assert summary["loss_last"] < summary["loss_first"]
    assert item_head_of(final) == "sid_sum" and item_head_of(align_dir / "model") is None
    model = AutoModelForCausalLM.from_pretrained(final).eval()
    tokenizer = AutoTokenizer.from_pretrained(final)
    table = SidTable.load(align_dir / "sids")
    ids = table.token_ids(tokenizer)
    levels = [ids[level, :size] for level, size in enumerate(table.codebook_sizes)]
    items = item_token_ids(table, tokenizer)
    assert items.shape == (table.n_items, table.n_levels)
    targets = ItemTargets(items, len(tokenizer))

    # Two items in a row after some text: both are found, with the right item index; a SID cut short is not.
    text = tokenizer("a soft red lotion", add_special_tokens=False)["input_ids"]
    first, second = items[3].tolist(), items[7].tolist()
    input_ids = torch.tensor([text + first + second + first[:2]])
    labels = input_ids.clone()
    labels[0, :2] = -100
    shifted = labels[:, 1:]
    rows, positions, found = targets.find(shifted)
    assert positions.tolist() == [len(text) - 1, len(text) - 1 + len(first)] and found.tolist() == [3, 7]
    with torch.no_grad():
        plain = level_softmax_loss(model, {"input_ids": input_ids, "labels": labels}, levels)
        got = level_softmax_loss(model, {"input_ids": input_ids, "labels": labels}, levels, item_targets=targets,
                                 item_weight=0.5)
        hidden = model.model(input_ids=input_ids).last_hidden_state[0, :-1]
        vectors = model.get_output_embeddings().weight[items].sum(1)
        extra = -sum((hidden[p] @ vectors.t()).log_softmax(-1)[i].item() for p, i in zip(positions.tolist(), [3, 7]))
    n = int((shifted != -100).sum())
    assert got.item() == pytest.approx(plain.item() + 0.5 * extra / n, rel=1e-5)

    # Decoding: the re-ranked list is the pool's items sorted by SID log-prob + w * item-head log-prob.
    prompts = [s["prompt"] for s in __import__("datasets").load_from_disk(str(align_dir / "dataset"))["valid"]][:4]
    sid_only = recommend(model, tokenizer, prompts, table, beams=10, topk=10, item_weight=0.0)
    reranked = recommend(model, tokenizer, prompts, table, beams=10, topk=10, item_weight=2.0)
    assert recommend(model, tokenizer, prompts, table, beams=10, topk=10) == recommend(
        model, tokenizer, prompts, table, beams=10, topk=10, item_weight=1.0)
    index = table.item_index
    with torch.no_grad():
        for prompt, base, ranked in zip(prompts, sid_only, reranked):
            state = model.model(**tokenizer(prompt, return_tensors="pt")).last_hidden_state[0, -1]
            head = (state @ vectors.t()).log_softmax(-1)
            want = sorted(((item, score + 2.0 * head[index[item]].item()) for item, score in base),
                          key=lambda pair: -pair[1])
            assert {i for i, _ in ranked} == {i for i, _ in want}
            assert [s for _, s in ranked] == pytest.approx([s for _, s in want], abs=1e-4)
    # Beams that prune nothing: the guided search and the re-ranking of every item give the same exhaustive list.
    wide = max(int((table.trie().depth == d).sum()) for d in range(table.n_levels)) * max(table.codebook_sizes)
    guided = recommend(model, tokenizer, prompts, table, beams=wide, topk=10, item_weight=2.0, item_search="guided")
    everything = recommend(model, tokenizer, prompts, table, beams=wide, topk=10, item_weight=2.0,
                           item_pool=table.n_items)
    for a, b in zip(guided, everything):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
    with pytest.raises(ValueError, match="guided"):
        recommend(model, tokenizer, prompts, table, beams=10, topk=10, backend="hf", item_search="guided")
    # hf re-ranks its own beam's candidates with the prompt state of a plain forward pass: the same lists.
    for a, b in zip(reranked, recommend(model, tokenizer, prompts, table, beams=10, topk=10, backend="hf",
                                        item_weight=2.0)):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-4)
        assert {i for i, _ in a} == {i for i, _ in b}
    with pytest.raises(ValueError, match="item head"):
        recommend(AutoModelForCausalLM.from_pretrained(align_dir / "model"), tokenizer, prompts, table, beams=10,
                  topk=10, item_weight=1.0)
    with pytest.raises(ConfigError, match="item_loss"):
        _parse(align_dir, out, "--item_loss", "-1")
