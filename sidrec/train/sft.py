"""Stage ``sft``: supervised fine-tuning on the align stage's data with TRL's SFTTrainer (loss on completions only).

Inputs come from ``RUN/align`` (:mod:`sidrec.align`): ``model/`` (base model with SID tokens, SA-initialised),
``dataset/`` (prompt/completion pairs of the main task and the TS-Align tasks; ``valid`` holds main-task
validation samples with their target items) and ``sids/``. Trainer options are TRL's own ``SFTConfig`` fields, in
the same YAML file as :class:`SftArgs`. LoRA (peft) trains adapters on every linear layer plus the full
``embed_tokens`` and ``lm_head``, since the new SID rows must move; the saved model is merged.

``output_dir`` receives ``checkpoint-*`` folders (an interrupted run resumes from the last one), tensorboard logs
(``report_to``), ``log_history.json``, ``sft_summary.json`` (time, tokens/s, validation HR@10 / NDCG@10 over
training), ``config.yaml`` and ``final/`` (model + tokenizer, plain transformers format, loadable by vLLM).
A finished run with the same options is skipped (``force`` redoes it).

    sidrec sft --config configs/sft/demo.yaml                                  # one process
    accelerate launch scripts/sft.py --config configs/sft/demo.yaml            # any accelerate setup
    accelerate launch --config_file deepspeed_configs/zero2.yaml scripts/sft.py --config configs/sft/demo.yaml
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidrec.artifacts import write_json, write_yaml
from sidrec.config import opt
from sidrec.errors import ConfigError, InputError
from sidrec.train import options as options_mod
from sidrec.train.checkpoints import restore_early_stopping, resumable, train_or_finish
from sidrec.train.options import parse_command_line
from sidrec.train.run import (
    TrainingRecord,
    checkpoint_step,
    end,
    load_model,
    load_tokenizer,
    resume_point,
    save_final,
)

if TYPE_CHECKING:
    from trl import SFTConfig

log = logging.getLogger(__name__)

SUMMARY_FILE = "sft_summary.json"
PROGRESS_FILE = "sidrec_progress.json"
LOG_HISTORY_FILE = "log_history.json"


@dataclass
class SftArgs:
    """sidrec's options of the SFT stage; trainer options (learning_rate, num_train_epochs, ...) are TRL's
    ``SFTConfig`` fields in the same YAML file."""

    align_dir: str = opt("runs/demo/align", "RUN/align from `sidrec align` (model/, dataset/, sids/)")
    model_name_or_path: str | None = opt(None, "model to fine-tune (default: ALIGN_DIR/model, the base model "
                                               "with SID tokens)")
    train_tasks: list[str] = opt([], "train only on these tasks of the align dataset (default: all), e.g. next_sid")
    max_minutes: float | None = opt(None, "time budget: after this many minutes of training (a resumed run counts "
                                          "its earlier time) evaluate, save and stop; the best checkpoint is kept")
    budget_clock: str = opt("wall", "what max_minutes counts: wall = elapsed time; cpu = this process's CPU time "
                                    "(all its threads: with one torch thread, the minutes of an idle core, so the "
                                    "budget holds the same on a machine shared with other jobs)")
    model_loss: bool = opt(True, "the loss is the model's own cross-entropy over the completion tokens (one "
                                 "LM-head pass); false = TRL's tiled fused LM head, which recomputes the head in "
                                 "backward and logs entropy / token accuracy (about 2x slower for small CPU models)")
    sid_softmax: str = opt("vocab", "what the loss normalises a SID token's probability over: vocab = the whole "
                                    "vocabulary (the model's own cross-entropy); level = only the tokens of that "
                                    "SID level's codebook (as TIGER-style and per-level-head models train: the "
                                    "head is computed for those rows only, so SID positions cost a fraction of "
                                    "the LM head). Text targets keep the whole vocabulary. Recorded in the "
                                    "model's config (sid_softmax), which every decoder reads")
    dropout: float = opt(0.0, "GPT-2's embedding and residual dropout while training, for models that have none "
                              "(Qwen2, Llama: attention dropout only): the token embeddings and every attention "
                              "and MLP output are dropped before they join the residual stream. Added by forward "
                              "hooks, so the saved model is unchanged. Regularises small models on small data, "
                              "as SASRec's dropout does")
    item_loss: float = opt(0.0, "weight of the item head's loss (sidrec.item_head): at each item target, a softmax "
                                "over every catalogue item scored from the state that predicts its first SID token, "
                                "an item's vector being the sum of its SID tokens' output embeddings (no new "
                                "parameters). 0 = off. Recorded in the model's config (item_head), which every "
                                "decoder reads to re-rank the beam's candidates (decode.item_weight)")
    use_lora: bool = opt(False, "train LoRA adapters (peft) plus full embed_tokens and lm_head; merged on save")
    lora_r: int = opt(16, "LoRA rank")
    lora_alpha: int = opt(32, "LoRA alpha")
    lora_dropout: float = opt(0.05, "LoRA dropout")
    lora_target_modules: list[str] = opt(["all-linear"], "modules that get LoRA adapters")
    val_samples: int = opt(200, "validation samples decoded for HR@10 / NDCG@10 at each evaluation (0 = off)")
    val_beams: int = opt(20, "beam width of the validation decoding")
    val_batch_size: int = opt(32, "prompts per decoding batch during validation")
    eval_loss_samples: int | None = opt(
        None, "validation examples the trainer's eval_loss is computed on (the first N; None = all). The ranking "
              "metrics decide the checkpoint, so a few hundred are enough and save a pass over the whole split")
    early_stopping_patience: int | None = opt(
        None, "stop after this many evaluations without a better validation NDCG@10 (needs val_samples > 0, "
              "load_best_model_at_end and metric_for_best_model: eval_ndcg@10); None = train all epochs")
    force: bool = opt(False, "retrain from scratch even when output_dir holds a finished run or checkpoints")

    def problems(self, trainer: SFTConfig | None = None) -> list[str]:
        """Every problem with these options (and the trainer options they depend on), for one ConfigError."""
        from sidrec.align.prompts import TASKS

        p = []
        unknown = [t for t in self.train_tasks if t not in TASKS]
        if unknown:
            p.append(f"train_tasks: unknown {unknown}; choose from {list(TASKS)}")
        if self.budget_clock not in ("wall", "cpu"):
            p.append(f"budget_clock: {self.budget_clock!r}; choose wall or cpu")
        if self.sid_softmax not in ("vocab", "level"):
            p.append(f"sid_softmax: {self.sid_softmax!r}; choose vocab or level")
        elif self.sid_softmax == "level" and not self.model_loss:
            p.append("sid_softmax: level needs model_loss: true (TRL's fused head has no per-level softmax)")
        if self.item_loss < 0:
            p.append(f"item_loss: {self.item_loss} must be >= 0")
        elif self.item_loss and not self.model_loss:
            p.append("item_loss needs model_loss: true (the item head's loss joins sidrec's own loss)")
        if not 0.0 <= self.dropout < 1.0:
            p.append(f"dropout: {self.dropout} must be in [0, 1)")
        if self.lora_r < 1 or self.lora_alpha < 1:
            p.append("lora_r and lora_alpha must be >= 1")
        if self.eval_loss_samples is not None and self.eval_loss_samples < 1:
            p.append("eval_loss_samples: must be >= 1 (or null for the whole validation split)")
        if self.val_samples < 0 or self.val_beams < 10:
            p.append("val_samples >= 0 and val_beams >= 10 (HR@10 needs ten items) required")
        if trainer is not None:
            if trainer.completion_only_loss is False:
                p.append("completion_only_loss: must stay true/null (the loss is on the answers only)")
            if trainer.packing:
                p.append("packing: not supported with completion-only prompt/completion data; set false")
            if trainer.max_length is not None and trainer.max_length < 32:
                p.append("max_length: too short for a prompt with a history (use >= 256)")
            ranked_metric = str(trainer.metric_for_best_model or "").removeprefix("eval_")
            if ranked_metric in ("hr@10", "ndcg@10") and self.val_samples == 0:
                p.append(f"metric_for_best_model {trainer.metric_for_best_model}: needs val_samples > 0")
            if self.max_minutes is not None and self.max_minutes <= 0:
                p.append("max_minutes: must be > 0")
            if self.early_stopping_patience is not None:
                if self.early_stopping_patience < 1:
                    p.append("early_stopping_patience: must be >= 1")
                if not trainer.load_best_model_at_end or not trainer.metric_for_best_model:
                    p.append("early_stopping_patience: set load_best_model_at_end: true and "
                             "metric_for_best_model: eval_ndcg@10 (the best checkpoint is kept)")
        return p


def make_parser():
    """``TrlParser`` over (:class:`SftArgs`, ``SFTConfig``): ``--config file.yaml`` plus flags."""
    from trl import SFTConfig, TrlParser

    return TrlParser((SftArgs, SFTConfig))


def parse_args(argv: Sequence[str] | None = None) -> tuple[SftArgs, SFTConfig]:
    """Parse ``argv`` (default ``sys.argv[1:]``) into validated (SftArgs, SFTConfig); an unknown YAML key or flag
    is an error (raises :class:`ConfigError`)."""
    return parse_command_line(make_parser(), argv)


def peft_config(args: SftArgs, tied_embeddings: bool = False):
    """LoRA on ``lora_target_modules`` with ``embed_tokens`` and ``lm_head`` trained in full (the SID rows).

    With a tied LM head (Qwen2.5-0.5B, the tiny model) the two trained copies stay one tensor
    (``ensure_weight_tying``); otherwise merging would untie them and change the architecture.
    """
    from peft import LoraConfig

    targets = args.lora_target_modules
    return LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                      target_modules=targets[0] if targets == ["all-linear"] else targets,
                      modules_to_save=["embed_tokens", "lm_head"], task_type="CAUSAL_LM",
                      ensure_weight_tying=tied_embeddings)


def load_align_dataset(args: SftArgs):
    """The align stage's DatasetDict, train restricted to ``train_tasks`` when given."""
    import datasets

    ds = datasets.load_from_disk(str(Path(args.align_dir) / "dataset"))
    if args.train_tasks:
        wanted = set(args.train_tasks)
        ds["train"] = ds["train"].filter(lambda t: t in wanted, input_columns="task")
        if len(ds["train"]) == 0:
            raise InputError(f"no training examples of tasks {sorted(wanted)}", Path(args.align_dir) / "dataset")
    return ds


def _model_path(args: SftArgs) -> str:
    return args.model_name_or_path or str(Path(args.align_dir) / "model")


def build_trainer(args: SftArgs, trainer_args: SFTConfig):
    """The ``SFTTrainer`` of the stage: model and tokenizer from the align stage (or ``model_name_or_path``), the
    prompt/completion data (loss on completions only), LoRA when asked, and the validation ranking callback.

    Returns ``(trainer, ranking_callback or None, number of training examples)``.
    """
    from trl import SFTTrainer

    from sidrec.sid import SidTable
    from sidrec.train.validation import RankingCallback

    sid_table = SidTable.load(Path(args.align_dir) / "sids")
    tokenizer = load_tokenizer(_model_path(args))
    sid_table.token_ids(tokenizer)  # fails early, naming the folder, when the SID tokens are missing
    model = load_model(_model_path(args), trainer_args)
    if args.dropout:
        add_training_dropout(model, args.dropout)
    level_tokens = None
    if args.sid_softmax == "level":
        model.config.sid_softmax = "level"  # saved with every checkpoint: the decoders score SIDs the same way
        ids = sid_table.token_ids(tokenizer)
        level_tokens = [ids[level, :size] for level, size in enumerate(sid_table.codebook_sizes)]
    elif getattr(model.config, "sid_softmax", "vocab") != "vocab":
        model.config.sid_softmax = "vocab"
    item_targets = None
    if args.item_loss:
        from sidrec.item_head import ITEM_HEAD, ItemTargets, item_token_ids

        model.config.item_head = ITEM_HEAD  # saved with every checkpoint: the decoders re-rank with it
        item_targets = ItemTargets(item_token_ids(sid_table, tokenizer), len(tokenizer))
    elif getattr(model.config, "item_head", None) is not None:
        model.config.item_head = None
    ds = load_align_dataset(args)
    valid = ds["valid"].select(range(min(args.val_samples, len(ds["valid"])))) if args.val_samples else None

    callbacks = []
    ranking = None
    if valid is not None:
        ranking = RankingCallback(valid["prompt"][:], valid["target"][:], sid_table, tokenizer,
                                  beams=args.val_beams, ks=(10,), batch_size=args.val_batch_size)
        callbacks.append(ranking)
    evaluating = str(getattr(trainer_args.eval_strategy, "value", trainer_args.eval_strategy)) != "no"
    trainer_class = resumable(model_loss_trainer() if args.model_loss else SFTTrainer)
    with warnings.catch_warnings():
        if args.model_loss:  # TRL's warning is about its own compute_loss; sidrec's smooths in its one head pass
            warnings.filterwarnings("ignore", message="`label_smoothing_factor` is deprecated")
        trainer = trainer_class(
            model=model, args=trainer_args, processing_class=tokenizer,
            train_dataset=ds["train"].select_columns(["prompt", "completion"]),
            eval_dataset=_eval_split(ds["valid"], args.eval_loss_samples) if evaluating else None,
            peft_config=peft_config(args, bool(model.config.tie_word_embeddings)) if args.use_lora else None,
            callbacks=callbacks,
        )
    if ranking is not None:
        ranking.trainer = trainer
    if level_tokens is not None:
        trainer.sid_level_tokens = level_tokens
    if item_targets is not None:
        trainer.item_targets, trainer.item_loss = item_targets, args.item_loss
    # TRL's filter of fully masked examples leaves an indices mapping, through which every row the length-grouped
    # sampler draws is looked up (~1.5x slower per row); the same rows, flattened, keep the same order.
    trainer.train_dataset = trainer.train_dataset.flatten_indices()
    if args.early_stopping_patience is not None:
        from transformers import EarlyStoppingCallback

        # Added after the ranking callback, so it sees the validation NDCG@10 that callback adds to the metrics.
        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
    return trainer, ranking, len(ds["train"])


def add_training_dropout(model, p: float) -> list:
    """GPT-2's ``embd_pdrop`` and ``resid_pdrop`` on a decoder that has neither (Qwen2, Qwen3, Llama): forward
    hooks drop the input token embeddings and each layer's attention and MLP outputs, i.e. every branch before it
    is added to the residual stream, with probability ``p``, in training mode only (evaluation and decoding see
    the model unchanged). Nothing is saved with the model. Returns the hook handles (``.remove()`` undoes it).

    Raises :class:`ConfigError` when the model has no ``layers`` with ``self_attn`` and ``mlp`` modules.
    """
    import torch.nn.functional as F

    def drop(module, inputs, output):
        if not module.training:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True),) + tuple(output[1:])
        return F.dropout(output, p, True)

    decoder = getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if not layers or not all(hasattr(layer, "self_attn") and hasattr(layer, "mlp") for layer in layers):
        raise ConfigError([f"dropout: {type(model).__name__} has no decoder layers with self_attn and mlp to add "
                           f"dropout to; set dropout: 0"])
    handles = [model.get_input_embeddings().register_forward_hook(drop)]
    for layer in layers:
        handles += [layer.self_attn.register_forward_hook(drop), layer.mlp.register_forward_hook(drop)]
    return handles


def _eval_split(valid, n: int | None):
    """The examples the trainer's ``eval_loss`` is computed on: the first ``n`` of the validation split."""
    if n is not None and n < len(valid):
        valid = valid.select(range(n))
    return valid.select_columns(["prompt", "completion"])


def model_loss_trainer():
    """``SFTTrainer`` whose loss is the model's own causal-LM cross-entropy (``labels`` from TRL's collator: -100 on
    prompt and padding), normalised exactly as TRL's own ``compute_loss`` does (by ``num_items_in_batch`` when the
    trainer passes it, rescaled when tokens are averaged across devices). Data, collator, loop, checkpoints and
    callbacks stay TRL's; only the entropy / token-accuracy logging of TRL's fused LM head is gone, and with it a
    second LM-head pass in backward that dominates small models' step time on CPU."""
    from trl import SFTTrainer

    class ModelLossSFTTrainer(SFTTrainer):
        sid_level_tokens: list | None = None  # set for sid_softmax: level (build_trainer)
        item_targets = None  # an ItemTargets, set for item_loss > 0 (build_trainer)
        item_loss: float = 0.0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            smoothing = self.args.label_smoothing_factor  # HF's option; its LabelSmoother is bypassed here
            if self.sid_level_tokens is not None or smoothing or self.item_targets is not None:
                loss = level_softmax_loss(model, inputs, self.sid_level_tokens or [], num_items_in_batch,
                                          label_smoothing=smoothing, item_targets=self.item_targets,
                                          item_weight=self.item_loss)
                outputs = {"loss": loss}  # no logits were computed
            else:
                extra = {"num_items_in_batch": num_items_in_batch} if num_items_in_batch is not None else {}
                outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                position_ids=inputs.get("position_ids"), labels=inputs["labels"], use_cache=False,
                                **extra)
                loss = outputs.loss
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
            mode = "train" if model.training else "eval"
            if mode == "train":  # TRL's `num_tokens` metric (tokens/s and the run summary read it)
                seen = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
                self._total_train_tokens += seen // self._tp_size
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (loss, outputs) if return_outputs else loss

    return ModelLossSFTTrainer


def level_softmax_loss(model, inputs: dict, level_tokens: list, num_items_in_batch=None,
                       label_smoothing: float = 0.0, item_targets=None, item_weight: float = 0.0):
    """Causal-LM cross-entropy where a SID target's softmax runs over its level's codebook tokens only
    (``sid_softmax: level``) and any other target's over the whole vocabulary; summed over the target tokens
    (``labels`` != -100, shifted by one as the model's own loss does) and divided by ``num_items_in_batch`` (the
    trainer's count across the accumulated batch), else by the targets in this batch. With no ``level_tokens``
    every target's softmax is over the vocabulary (the model's own loss). ``label_smoothing``: the trainer's
    ``label_smoothing_factor``, spread over the classes each softmax covers (a level's codes, or the vocabulary).

    ``level_tokens``: per SID level, the vocab ids of its codes in code order. Only the head rows a target needs
    are computed: ``(targets of level l) x (codes of level l)`` per level instead of ``targets x vocab``.

    ``item_targets`` (:class:`sidrec.item_head.ItemTargets`) with ``item_weight`` > 0 adds, for every item target,
    ``item_weight`` times the item head's cross-entropy (a softmax over all catalogue items, see
    :mod:`sidrec.item_head`) to the sum before it is divided.
    """
    import torch
    import torch.nn.functional as F

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                position_ids=inputs.get("position_ids"), use_cache=False).last_hidden_state
    labels = inputs["labels"][:, 1:]
    valid = labels != -100
    targets, states = labels[valid], hidden[:, :-1][valid]  # (n,), (n, hidden)
    weight = base.get_output_embeddings().weight
    vocab = weight.shape[0]
    level_of = torch.full((vocab,), -1, dtype=torch.long, device=targets.device)
    code_of = torch.zeros(vocab, dtype=torch.long, device=targets.device)
    for level, tokens in enumerate(level_tokens):
        tokens = tokens.to(targets.device)
        level_of[tokens] = level
        code_of[tokens] = torch.arange(len(tokens), device=targets.device)
    target_level = level_of[targets]
    loss = states.new_zeros((), dtype=torch.float32)
    for level, tokens in enumerate(level_tokens):
        at = target_level == level
        if at.any():
            logits = states[at] @ weight.index_select(0, tokens.to(weight.device)).t()
            loss = loss + F.cross_entropy(logits.float(), code_of[targets[at]], reduction="sum",
                                          label_smoothing=label_smoothing)
    text = target_level < 0
    if text.any():
        logits = base.get_output_embeddings()(states[text])
        loss = loss + F.cross_entropy(logits.float(), targets[text], reduction="sum",
                                      label_smoothing=label_smoothing)
    if item_targets is not None and item_weight:
        from sidrec.item_head import item_embeddings

        rows, positions, items = item_targets.find(labels)
        if len(rows):
            logits = hidden[:, :-1][rows, positions] @ item_embeddings(weight, item_targets.item_tokens).t()
            loss = loss + item_weight * F.cross_entropy(logits.float(), items, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else valid.sum()
    return loss / count


def run_sft(args: SftArgs, trainer_args: SFTConfig) -> Path:
    """Fine-tune on ``args.align_dir``'s data; returns ``output_dir/final`` (see the module docstring)."""
    problems = args.problems(trainer_args)
    if problems:
        raise ConfigError(problems)
    out = Path(trainer_args.output_dir)
    record = TrainingRecord("sft", out, options_mod.fingerprint("sft", args, trainer_args),
                            {"align": args.align_dir, "model": args.model_name_or_path})
    if not args.force and record.done():
        log.info("sft: %s holds a finished run with the same options and inputs: skipped (force to redo)",
                 record.final)
        return record.final

    align = Path(args.align_dir)
    for part in ("dataset", "sids") + (("model",) if args.model_name_or_path is None else ()):
        if not (align / part).exists():
            raise InputError(f"{part}/ not found: run `sidrec align --out {align}` first", align)

    resume = resume_point(out, trainer_args.resume_from_checkpoint, args.force)
    start_step, earlier = checkpoint_step(resume), {"seconds": 0.0, "cpu_seconds": 0.0, "tokens": 0}
    if resume:
        log.info("sft: resuming from %s (step %d)", resume, start_step)
        if (Path(resume) / PROGRESS_FILE).is_file():
            earlier = {**earlier, **json.loads((Path(resume) / PROGRESS_FILE).read_text())}
    trainer, ranking, n_train = build_trainer(args, trainer_args)
    if resume:
        restore_early_stopping(trainer, resume)
    tokenizer = trainer.processing_class
    if trainer.accelerator.is_main_process:
        write_yaml(out / "config.yaml", record.view)
    started, started_cpu = time.perf_counter(), time.process_time()
    trainer.add_callback(_progress_callback(started, start_step, earlier, _model_path(args), started_cpu))
    if args.max_minutes is not None:
        clock, begun = ((time.process_time, started_cpu - earlier["cpu_seconds"]) if args.budget_clock == "cpu"
                        else (time.perf_counter, started - earlier["seconds"]))
        trainer.add_callback(_budget_callback(begun, args.max_minutes, clock))
    result = train_or_finish(trainer, resume)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    final = save_final(trainer, tokenizer, out, "sft", _model_path(args),
                       lora_base=_model_path(args) if args.use_lora else None)
    if trainer.accelerator.is_main_process:
        summary = _summary(trainer, result, seconds, ranking, n_train, start_step, earlier, cpu_seconds)
        write_json(out / LOG_HISTORY_FILE, trainer.state.log_history)
        write_json(out / SUMMARY_FILE, summary)
        record.mark_done()
        _print_summary(summary, final)
    end(trainer)
    return final


def _tokens_since(history: list[dict], start_step: int) -> int:
    """Tokens this process trained on (TRL's ``num_tokens`` counter restarts with the process)."""
    return int(max((r.get("num_tokens", 0) for r in history if r.get("step", 0) > start_step), default=0))


def _progress_callback(started: float, start_step: int, earlier: dict[str, float], model_dir: str | None = None,
                       started_cpu: float = 0.0):
    """A callback that stores the run's cumulative training time and tokens in every checkpoint it saves
    (``sidrec_progress.json``), so the summary of a resumed run reports the whole run's cost, not only the
    last process's; with ``model_dir``, it also copies that model's ``sidrec.json`` into the checkpoint, so a
    checkpoint decodes in the model's prompt format."""
    from transformers import TrainerCallback

    from sidrec.align.prompts import copy_settings

    class ProgressCallback(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                write_json(checkpoint / PROGRESS_FILE, {
                    "seconds": round(earlier["seconds"] + time.perf_counter() - started, 1),
                    "cpu_seconds": round(earlier.get("cpu_seconds", 0.0) + time.process_time() - started_cpu, 1),
                    "tokens": int(earlier["tokens"]) + _tokens_since(state.log_history, start_step)})
                if model_dir is not None:
                    copy_settings(model_dir, checkpoint, stage="sft")

    return ProgressCallback()


def _budget_callback(started: float, max_minutes: float, clock=time.perf_counter):
    """A callback that ends training once ``max_minutes`` have passed on ``clock`` since ``started``, after an
    evaluation and a checkpoint (so ``load_best_model_at_end`` still chooses among every evaluated step)."""
    from transformers import TrainerCallback

    class BudgetCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if clock() - started > 60 * max_minutes and not control.should_training_stop:
                log.info("sft: time budget of %.1f min reached at step %d: evaluating, saving, stopping",
                         max_minutes, state.global_step)
                control.should_training_stop = True
                control.should_evaluate = str(getattr(args.eval_strategy, "value", args.eval_strategy)) != "no"
                control.should_save = str(getattr(args.save_strategy, "value", args.save_strategy)) != "no"
            return control

    return BudgetCallback()


def _summary(trainer, result, seconds: float, ranking, n_train: int, start_step: int = 0,
             earlier: dict[str, float] | None = None, cpu_seconds: float = 0.0) -> dict[str, Any]:
    """What ``sft_summary.json`` holds. After a resume, ``log_history`` (restored from the checkpoint) still has
    the earlier losses and validation results; ``train_seconds``/``tokens`` count this process only (TRL's token
    counter restarts with it), so tokens/s stays a true rate, and ``total_train_seconds``/``total_tokens`` add
    what the checkpoint's earlier processes recorded."""
    earlier = earlier or {"seconds": 0.0, "tokens": 0}
    history = trainer.state.log_history
    tokens = _tokens_since(history, start_step)
    losses = [r["loss"] for r in history if "loss" in r]
    validation = [{"step": r["step"], "epoch": r.get("epoch"),
                   **{k: v for k, v in r.items() if k.startswith("eval_") and ("@" in k or "ranking" in k)}}
                  for r in history if "eval_hr@10" in r]
    if not validation and ranking is not None:
        validation = ranking.history
    return {
        "global_step": result.global_step, "train_examples": n_train, "resumed_from_step": start_step,
        "train_seconds": round(seconds, 1), "train_runtime": result.metrics.get("train_runtime"),
        "tokens": int(tokens), "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "total_train_seconds": round(earlier["seconds"] + seconds, 1), "total_tokens": int(earlier["tokens"]) + tokens,
        "total_cpu_seconds": round(earlier.get("cpu_seconds", 0.0) + cpu_seconds, 1),
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "train_loss": result.metrics.get("train_loss"),
        "validation": validation,
        "best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric,
        "epochs": trainer.state.epoch,
        "n_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "n_trainable": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "world_size": trainer.accelerator.num_processes,
        "device": str(trainer.accelerator.device),
    }


def _print_summary(summary: dict[str, Any], final: Path) -> None:
    lines = [f"sft: {summary['global_step']} steps in {summary['train_seconds'] / 60:.1f} min, "
             f"{summary['tokens_per_second']} tokens/s, loss {summary['loss_first']} -> {summary['loss_last']}"]
    if summary["validation"]:
        trail = " -> ".join(f"{v['eval_hr@10']:.3f}" for v in summary["validation"])
        lines.append(f"  validation HR@10 over training: {trail}; final NDCG@10 "
                     f"{summary['validation'][-1]['eval_ndcg@10']:.4f}")
    lines.append(f"  model: {final}")
    log.info("\n".join(lines))
    print("\n".join(lines), flush=True)


def read_summary(output_dir: str | Path) -> dict[str, Any]:
    """``sft_summary.json`` of a finished run."""
    return json.loads((Path(output_dir) / SUMMARY_FILE).read_text())


def run_sft_from_dict(options: dict[str, Any], *, align_dir: str | Path, output_dir: str | Path) -> Path:
    """The pipeline's entry: run the stage from a config section instead of a command line.

    ``options`` holds SftArgs and SFTConfig keys; ``config_file`` (optional) names a YAML file of the same keys
    that ``options`` override (e.g. ``configs/sft/demo.yaml``). The run directory supplies ``align_dir`` (which
    holds the data and SIDs SFT needs) and ``output_dir``. Without CUDA the trainer runs on CPU in float32.
    """
    args, trainer_args = options_mod.parse_section(
        make_parser(), options, {"align_dir": str(align_dir), "output_dir": str(output_dir)}, "sft")
    return run_sft(args, trainer_args)
