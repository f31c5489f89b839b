"""Stage ``grpo``: reinforce the SFT model's next-item SIDs with TRL's GRPOTrainer and recommendation rewards.

Rollouts can only produce catalogue items: :class:`SidRollout` (TRL's ``rollout_func`` hook) generates every
completion under the trie of :mod:`sidrec.sid`, either

- ``rollout: sample`` -- constrained sampling, one completion per row of the group (ranked within the group by
  its sequence log-probability for the ranking reward), or
- ``rollout: beam``   -- constrained beam search: the top-G beams of the prompt form its group, best first, as
  MiniOneRec does (Kong et al. 2025, §3.3), using the exact beam search of :mod:`sidrec.decode`.

and checks the result: a completion that is not one valid SID followed by EOS stops training
(:class:`InvalidRolloutError`). The policy's log-probability of a SID token is normalised the way the SFT model
was trained and is decoded (``policy_softmax: model``, the default): over the whole vocabulary (TRL's own), or,
for a model trained with ``sft.sid_softmax: level``, over the codes of the token's SID level
(:func:`level_policy_trainer`), so the ratio, clipping and KL of the GRPO loss see the distribution decoding uses.

Rewards (:mod:`sidrec.train.rewards`) are chosen by name in ``GrpoArgs.rewards`` and weighted by TRL's
``GRPOConfig.reward_weights``. Reward and KL curves go to ``report_to`` (tensorboard works offline) and to
``OUTPUT_DIR/train_curves.json``; ``OUTPUT_DIR/final`` holds model + tokenizer. An interrupted run resumes from
the last ``checkpoint-*`` in ``output_dir``; a finished one with the same options is skipped.

    sidrec grpo --config configs/grpo/demo.yaml
    accelerate launch scripts/grpo.py --config configs/grpo/demo.yaml --learning_rate 1e-4
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sidrec.artifacts import write_json, write_yaml
from sidrec.config import opt
from sidrec.errors import ConfigError, InputError
from sidrec.train import options as options_mod
from sidrec.train.checkpoints import resumable, train_or_finish
from sidrec.train.options import parse_command_line
from sidrec.train.rewards import REWARD_NAMES
from sidrec.train.run import (
    TrainingRecord,
    checkpoint_step,
    end,
    load_model,
    load_tokenizer,
    resume_point,
    save_final,
    sids_file,
)

if TYPE_CHECKING:
    from trl import GRPOConfig

    from sidrec.sid import SidTable

log = logging.getLogger(__name__)

CURVES_FILE = "train_curves.json"
VALID_METRICS_FILE = "valid_metrics.json"


@dataclass
class GrpoArgs:
    """sidrec's options of the GRPO stage; trainer options (beta, learning_rate, num_generations, ...) are TRL's
    ``GRPOConfig`` fields in the same YAML file."""

    sft_model: str = opt("runs/demo/sft/final", "SFT checkpoint to start from (model + tokenizer with SID tokens)")
    data: str = opt("runs/demo/data", "prepared dataset folder (RUN/data)")
    sids: str = opt("runs/demo/sids", "RUN/sids folder or a sids.json file")
    rollout: Literal["sample", "beam"] = opt(
        "beam", "beam: the top-num_generations constrained beams are the group (MiniOneRec); sample: "
                "num_generations constrained samples per prompt")
    rewards: list[str] = opt(["exact", "ndcg", "prefix"], f"reward functions, any of {list(REWARD_NAMES)}; "
                                                           "weights: GRPOConfig reward_weights, same order")
    policy_softmax: Literal["model", "vocab", "level"] = opt(
        "model", "what the policy's log-probability of a completion SID token is normalised over: level = the codes "
                 "of its SID level (how a `sft.sid_softmax: level` model is trained and decoded; the EOS after the "
                 "SID then counts as certain), vocab = the whole vocabulary (TRL's own), model = what the SFT "
                 "model's config records (sid_softmax)")
    train_split: str = opt("train", "split whose samples are the GRPO prompts")
    max_history: int | None = opt(None, "most recent history items in a prompt (default: all the dataset keeps; "
                                         "use the SFT stage's value)")
    max_train_samples: int | None = opt(None, "use at most this many training samples (a seeded random subset)")
    valid_samples: int = opt(0, "score validation NDCG@10 of the SFT and the GRPO model on this many validation "
                                "samples into valid_metrics.json (0 = skip)")
    valid_beams: int = opt(20, "beam width of that validation decoding (top-10 is scored)")
    torch_threads: int | None = opt(None, "CPU threads for torch (1 is fastest for tiny models on a busy machine; "
                                          "default: torch's choice)")
    force: bool = opt(False, "retrain from the SFT model even when output_dir holds a finished run or checkpoints")

    def problems(self, trainer: GRPOConfig | None = None) -> list[str]:
        """Every problem with these options (and the trainer options they depend on), for one ConfigError."""
        p = []
        if self.rollout not in ("sample", "beam"):
            p.append(f"rollout: {self.rollout!r} is not one of ['sample', 'beam']")
        if self.policy_softmax not in ("model", "vocab", "level"):
            p.append(f"policy_softmax: {self.policy_softmax!r} is not one of ['model', 'vocab', 'level']")
        unknown = [r for r in self.rewards if r not in REWARD_NAMES]
        if unknown:
            p.append(f"rewards: unknown {unknown}; choose from {list(REWARD_NAMES)}")
        if not self.rewards:
            p.append("rewards: name at least one reward")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            p.append("max_train_samples: must be >= 1 (or null for all)")
        if self.torch_threads is not None and self.torch_threads < 1:
            p.append("torch_threads: must be >= 1 (or null)")
        if self.valid_samples < 0 or self.valid_beams < 10:
            p.append("valid_samples >= 0 and valid_beams >= 10 (NDCG@10 needs ten items) required")
        if trainer is not None:
            weights = trainer.reward_weights
            if weights is not None and len(weights) != len(self.rewards):
                p.append(f"reward_weights: {len(weights)} weights for {len(self.rewards)} rewards "
                         f"{self.rewards}; give one weight per reward, in the same order")
            if trainer.num_generations is None or trainer.num_generations < 2:
                p.append("num_generations: must be >= 2 (GRPO compares completions within a group)")
            if trainer.use_vllm:
                p.append("use_vllm: the trie-constrained rollouts run in transformers; set use_vllm: false")
            if trainer.num_iterations != 1 and self.rollout == "sample":
                p.append("num_iterations: constrained rollouts return no sampling log-probs; keep 1")
        return p


def make_parser():
    """``TrlParser`` over (:class:`GrpoArgs`, ``GRPOConfig``): ``--config file.yaml`` plus flags; an unknown YAML
    key is an error when parsed with :func:`parse_args`."""
    from trl import GRPOConfig, TrlParser

    return TrlParser((GrpoArgs, GRPOConfig))


def parse_args(argv: Sequence[str] | None = None) -> tuple[GrpoArgs, GRPOConfig]:
    """Parse ``argv`` (default ``sys.argv[1:]``) into validated (GrpoArgs, GRPOConfig); raises ConfigError."""
    return parse_command_line(make_parser(), argv)


# ---------------------------------------------------------------------------------------------------- rollouts
class InvalidRolloutError(RuntimeError):
    """A rollout produced something other than one valid SID followed by EOS (a bug in the constraint)."""


class SidRollout:
    """TRL ``rollout_func``: trie-constrained completions, each one catalogue SID + EOS.

    TRL repeats every prompt ``num_generations`` times in a row; each run of identical prompts (split into
    chunks of at most ``num_generations``) is one group. Returns ``prompt_ids``, ``completion_ids`` and, as extra
    columns for the rewards, ``rollout_group`` and ``rollout_rank`` (0 = best in its group).
    """

    def __init__(self, sid_table: SidTable, tokenizer, mode: Literal["sample", "beam"], num_generations: int):
        self.sid_table = sid_table
        self.tokenizer = tokenizer
        self.mode = mode
        self.num_generations = num_generations
        self.sid_token_ids = sid_table.token_ids(tokenizer)  # (n_levels, max_codebook_size)
        if tokenizer.eos_token_id is None:
            raise InputError("the tokenizer has no eos_token: rollouts end each SID with it", sid_table.source)
        self.eos_token_id = int(tokenizer.eos_token_id)
        self.n_checked = 0

    def groups(self, prompts: Sequence[str]) -> list[tuple[int, int]]:
        """``(start, end)`` row ranges of the groups: runs of identical prompts, at most num_generations long."""
        spans, start = [], 0
        for row in range(1, len(prompts) + 1):
            if row == len(prompts) or prompts[row] != prompts[start] or row - start == self.num_generations:
                spans.append((start, row))
                start = row
        return spans

    def __call__(self, prompts: list, trainer) -> dict[str, Any]:
        import torch
        from trl.models import unwrap_model_for_generation

        from sidrec.decode.torch_backend import tokenize_prompts

        if prompts and not isinstance(prompts[0], str):
            raise InputError("GRPO prompts must be formatted strings (the align stage applies chat templates)")
        prompt_ids = tokenize_prompts(self.tokenizer, prompts)
        spans = self.groups(prompts)
        with (unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                          gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                                          gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs
                                          ) as model,
              torch.no_grad()):
            if self.mode == "beam":
                completion_ids, ranks = self._beam(model, prompts, spans)
            else:
                completion_ids, ranks = self._sample(model, prompt_ids, spans, trainer.args)
        self.check(completion_ids)
        group_of_row = [g for g, (a, b) in enumerate(spans) for _ in range(a, b)]
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None,
                "rollout_group": group_of_row, "rollout_rank": ranks}

    def _beam(self, model, prompts: Sequence[str], spans: Sequence[tuple[int, int]]
              ) -> tuple[list[list[int]], list[int]]:
        """Top-G constrained beams per group (sidrec.decode's exact beam search), best first."""
        from sidrec.decode import recommend

        width = max(b - a for a, b in spans)
        ranked = recommend(model, self.tokenizer, [prompts[a] for a, _ in spans], self.sid_table,
                           beams=width, topk=width, backend="torch", batch_size=8)
        tokens = self.sid_token_ids
        completion_ids, ranks = [], []
        for (a, b), items in zip(spans, ranked, strict=True):
            if not items:
                raise InvalidRolloutError(f"beam search returned no item for prompt {prompts[a][:80]!r}")
            for rank in range(b - a):
                # A catalogue smaller than the group repeats its last items (a rare corner: tiny tests).
                item, _ = items[min(rank, len(items) - 1)]
                sid = self.sid_table.item_sid(item)
                completion_ids.append([int(tokens[level, c]) for level, c in enumerate(sid)] + [self.eos_token_id])
                ranks.append(rank)
        return completion_ids, ranks

    def _sample(self, model, prompt_ids: list[list[int]], spans: Sequence[tuple[int, int]], args
                ) -> tuple[list[list[int]], list[int]]:
        """One constrained sample per row; rank within the group by sequence log-probability (ties: row order)."""
        import torch
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        from sidrec.decode.torch_backend import left_pad, pad_id_of
        from sidrec.sid import SidLogitsProcessor

        device = next(model.parameters()).device
        ids, mask = left_pad(prompt_ids, pad_id_of(self.tokenizer))
        prompt_length = ids.shape[1]
        # The trie mask comes first so temperature / top-k / top-p act on valid tokens only (a top-k taken over
        # the full vocabulary could keep only invalid tokens).
        processors = LogitsProcessorList([SidLogitsProcessor(self.sid_table.trie(), self.sid_token_ids,
                                                             prompt_length, self.eos_token_id)])
        if args.temperature and args.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(args.temperature))
        if args.top_k:
            processors.append(TopKLogitsWarper(args.top_k))
        if args.top_p is not None and args.top_p < 1.0:
            processors.append(TopPLogitsWarper(args.top_p))
        n_new = self.sid_table.n_levels + 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                             temperature=1.0, top_k=None, top_p=None, logits_processor=processors,
                             max_new_tokens=n_new, min_new_tokens=n_new, pad_token_id=pad_id_of(self.tokenizer),
                             eos_token_id=None, output_scores=True, return_dict_in_generate=True)
        completion = out.sequences[:, prompt_length:]  # (rows, n_levels + 1)
        step_logps = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in out.scores], dim=1)
        seq_logp = step_logps.gather(2, completion[:, :, None]).squeeze(2).sum(1)  # (rows,)
        ranks = [0] * len(prompt_ids)
        for a, b in spans:
            order = sorted(range(a, b), key=lambda r: (-float(seq_logp[r]), r))
            for rank, row in enumerate(order):
                ranks[row] = rank
        return completion.tolist(), ranks

    def check(self, completion_ids: Sequence[Sequence[int]]) -> None:
        """Raise :class:`InvalidRolloutError` unless every completion is one valid SID followed by EOS."""
        import torch

        from sidrec.sid import SidLogitsProcessor

        n_levels = self.sid_table.n_levels
        bad = [i for i, c in enumerate(completion_ids) if len(c) != n_levels + 1 or c[-1] != self.eos_token_id]
        sids = torch.tensor([list(c[:n_levels]) + [0] * (n_levels - len(c[:n_levels])) for c in completion_ids])
        walker = SidLogitsProcessor(self.sid_table.trie(), self.sid_token_ids, prompt_length=0)
        items = walker.trie.leaf_item(walker.nodes(sids))  # (rows,) item index, -1 = not a catalogue SID
        bad += [i for i in torch.nonzero(items < 0).flatten().tolist() if i not in bad]
        if bad:
            sample = self.tokenizer.decode(completion_ids[bad[0]])
            raise InvalidRolloutError(f"{len(bad)} of {len(completion_ids)} rollouts are not one catalogue SID + "
                                      f"EOS, e.g. {sample!r}: the trie constraint failed")
        self.n_checked += len(completion_ids)


# ---------------------------------------------------------------------------------------------- level policy
def level_completion_logps(model, input_ids, attention_mask, logits_to_keep: int, code_of):
    """Log-probabilities (and entropies) of the last ``logits_to_keep`` tokens of ``input_ids`` (a completion: one
    SID then EOS) where completion position ``l < n_levels`` is normalised over SID level ``l``'s codes only and
    later positions (EOS, padding) count as certain (log-probability 0, entropy 0).

    ``code_of``: ``(n_levels, n)`` int64, the code of vocabulary token ``t < n`` at each level, -1 for other tokens.
    Goes through ``model``'s own forward (wrappers, LoRA and DeepSpeed included), asking for the scores of the
    last ``logits_to_keep + 1`` positions only. Raises :class:`InvalidRolloutError` when a completion position
    holds a token that is not a code of its level.
    """
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep + 1,
                   use_cache=False).logits[:, :-1]  # (batch, logits_to_keep, vocab): the completion's scores
    targets = input_ids[:, -logits_to_keep:]
    code_of = code_of.to(targets.device)
    n_levels = min(code_of.shape[0], logits_to_keep)
    certain = torch.zeros(targets.shape[0], logits_to_keep - n_levels, dtype=torch.float32, device=targets.device)
    columns, entropy_columns = [], []
    for level in range(n_levels):
        tokens = (code_of[level] >= 0).nonzero().squeeze(1)  # this level's tokens, in code order
        token = targets[:, level]
        codes = torch.where(token < code_of.shape[1], code_of[level, token.clamp(max=code_of.shape[1] - 1)], -1)
        if (codes < 0).any():
            raise InvalidRolloutError(f"completion position {level} holds a token outside SID level {level}")
        level_logps = logits[:, level].index_select(-1, tokens).float().log_softmax(-1)
        columns.append(level_logps.gather(1, codes[:, None]).squeeze(1))
        entropy_columns.append(-(level_logps.exp() * level_logps).sum(-1).detach())
    return torch.cat([torch.stack(columns, 1), certain], 1), torch.cat([torch.stack(entropy_columns, 1), certain], 1)


def level_policy_trainer(sid_token_ids, codebook_sizes: Sequence[int]):
    """``GRPOTrainer`` whose per-token log-probabilities of the completion's SID tokens are normalised over their
    level's codes (:func:`level_completion_logps`): the policy a ``sid_softmax: level`` model is trained and
    decoded with. Rollouts, rewards, advantages, loss, KL and logging stay TRL's.

    ``sid_token_ids``: ``SidTable.token_ids(tokenizer)``, ``(n_levels, max_codebook_size)``.
    """
    import torch
    from trl import GRPOTrainer

    vocab = int(sid_token_ids.max()) + 1
    code_of = torch.full((len(codebook_sizes), vocab), -1, dtype=torch.long)
    for level, size in enumerate(codebook_sizes):
        code_of[level, sid_token_ids[level, :size]] = torch.arange(size)

    class LevelPolicyGRPOTrainer(GRPOTrainer):
        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **multimodal):
            if compute_aux_loss or any(v is not None for v in multimodal.values()):
                raise ConfigError(["policy_softmax: level supports text-only dense models; use vocab"])
            batch_size = batch_size or input_ids.size(0)
            logps, entropies = [], []
            for start in range(0, input_ids.size(0), batch_size):
                end = start + batch_size
                with self.accelerator.autocast():
                    lp, ent = level_completion_logps(model, input_ids[start:end], attention_mask[start:end],
                                                     logits_to_keep, code_of)
                logps.append(lp)
                entropies.append(ent)
            return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None

    return LevelPolicyGRPOTrainer


# ---------------------------------------------------------------------------------------------------- logging
def _curve_logger(path: Path, start_step: int):
    """A TrainerCallback that appends every log record (reward, KL, loss, ...) to ``path`` (a JSON list).

    A run resumed at ``start_step`` keeps the records up to that step and drops later ones (the interrupted run
    logged them, and they are about to be produced again).
    """
    from transformers import TrainerCallback

    class CurveLogger(TrainerCallback):
        def __init__(self) -> None:
            old = json.loads(path.read_text()) if start_step and path.is_file() else []
            self.records: list[dict[str, Any]] = [r for r in old if r.get("step", 0) <= start_step]

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_world_process_zero:
                self.records.append({"step": state.global_step, "epoch": state.epoch, **logs})
                write_json(path, self.records)

    return CurveLogger()


# ---------------------------------------------------------------------------------------------------- data
def build_dataset(args: GrpoArgs, tokenizer, sid_table: SidTable, seed: int):
    """The GRPO prompts: ``prompt`` (formatted string), ``target`` (item id), ``target_sid`` (SID string)."""
    import datasets
    import numpy as np

    from sidrec.align.prompts import build_prompts
    from sidrec.data import load_data

    samples = load_data(args.data).split(args.train_split)
    targets = samples["target"][:]
    known = sid_table.item_index
    rows = [i for i, t in enumerate(targets) if t in known]
    if len(rows) < len(targets):
        log.warning("%d of %d %s samples have a target without a SID: skipped", len(targets) - len(rows),
                    len(targets), args.train_split)
    if not rows:
        raise InputError(f"no {args.train_split} sample has a target with a SID", args.data)
    if args.max_train_samples is not None and len(rows) > args.max_train_samples:
        rows = sorted(np.random.default_rng(seed).choice(rows, args.max_train_samples, replace=False).tolist())
    histories = samples.select(rows)["history"][:]
    return datasets.Dataset.from_dict({
        "prompt": build_prompts(tokenizer, histories, sid_table, max_history=args.max_history),
        "target": [targets[i] for i in rows],
        "target_sid": [sid_table.item_sid_string(targets[i]) for i in rows],
    })


def target_ranks_on_split(model, tokenizer, sid_table: SidTable, data_dir: str | Path, split: str = "valid",
                          n_samples: int | None = None, beams: int = 20, topk: int = 10,
                          max_history: int | None = None):
    """1-based rank of each target in the model's constrained beam-search top-``topk`` (0 = not in it), for the
    first ``n_samples`` samples of ``split`` (all when None), in split order. Shape ``(n_samples,)``."""
    from sidrec.align.prompts import build_prompts
    from sidrec.data import load_data
    from sidrec.decode import recommend
    from sidrec.eval.metrics import target_ranks

    samples = load_data(data_dir).split(split)
    if n_samples is not None:
        samples = samples.select(range(min(n_samples, len(samples))))
    prompts = build_prompts(tokenizer, samples["history"][:], sid_table, max_history=max_history)
    was_training = model.training
    model.eval()
    ranked = recommend(model, tokenizer, prompts, sid_table, beams=beams, topk=topk, backend="torch")
    model.train(was_training)
    return target_ranks([[item for item, _ in r] for r in ranked], samples["target"][:])


def validation_ndcg(model, tokenizer, sid_table: SidTable, data_dir: str | Path, n_samples: int, beams: int,
                    max_history: int | None = None) -> dict[str, float]:
    """HR/NDCG@{1,5,10} of constrained beam search on the first ``n_samples`` validation samples."""
    from sidrec.eval.metrics import per_sample_metrics, summarize

    ranks = target_ranks_on_split(model, tokenizer, sid_table, data_dir, "valid", n_samples, beams, 10, max_history)
    metrics = summarize(per_sample_metrics(ranks, ks=(1, 5, 10)))
    return {k: v for k, v in metrics.items() if not k.startswith("MRR")} | {"n_samples": len(ranks)}


# ---------------------------------------------------------------------------------------------------- stage
def _check_tokenizer(tokenizer, sid_table: SidTable, where: str) -> None:
    """Fail early when SID tokens would not survive TRL's ``batch_decode(skip_special_tokens=True)``."""
    first = sid_table.item_sid_string(sid_table.item_ids[0])
    ids = tokenizer.encode(first, add_special_tokens=False)
    decoded = tokenizer.decode(ids, skip_special_tokens=True)
    if "".join(decoded.split()) != first:
        raise InputError(f"the tokenizer turns {first!r} into {decoded!r} when decoding with "
                         "skip_special_tokens=True (SID tokens added as special tokens?); GRPO rewards read the "
                         "decoded completions: add SID tokens as ordinary tokens (sidrec align)", where)


def run_grpo(args: GrpoArgs, trainer_args: GRPOConfig) -> Path:
    """Train ``args.sft_model`` with GRPO on ``args.data``'s training samples; returns ``output_dir/final``.

    ``output_dir`` (``trainer_args.output_dir``) receives ``checkpoint-*`` folders (resumed from when a run was
    interrupted), tensorboard logs, ``train_curves.json``, ``config.yaml``, optionally ``valid_metrics.json``, and
    ``final/`` (model + tokenizer, written atomically).
    """
    problems = args.problems(trainer_args)
    if problems:
        raise ConfigError(problems)
    out = Path(trainer_args.output_dir)
    record = TrainingRecord("grpo", out, options_mod.fingerprint("grpo", args, trainer_args),
                            {"sft_model": args.sft_model, "data": args.data, "sids": sids_file(args.sids)})
    if not args.force and record.done():
        log.info("grpo: %s holds a finished run with the same options and inputs: skipped (force to redo)",
                 record.final)
        return record.final
    if not Path(args.sft_model).is_dir():
        raise InputError("SFT model folder not found (run `sidrec sft` first)", args.sft_model)
    from sidrec.align.prompts import model_stage

    if model_stage(args.sft_model) == "align":
        log.warning("grpo: %s is the aligned model, not an SFT output: GRPO's rollouts need a model that already "
                    "recommends (run `sidrec sft` first unless this is intended)", args.sft_model)

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is TRL's documented hook, on purpose
    import torch
    from accelerate import PartialState
    from trl import GRPOTrainer

    from sidrec.decode import sid_softmax_of
    from sidrec.sid import SidTable
    from sidrec.train.rewards import build_reward_funcs

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    sid_table = SidTable.load(args.sids)
    tokenizer = load_tokenizer(args.sft_model)
    _check_tokenizer(tokenizer, sid_table, args.sft_model)
    model = load_model(args.sft_model, trainer_args)
    dataset = build_dataset(args, tokenizer, sid_table, trainer_args.seed)

    resume = resume_point(out, trainer_args.resume_from_checkpoint, args.force, forget=(CURVES_FILE,))
    start_step = checkpoint_step(resume)
    if resume:
        log.info("grpo: resuming from %s (step %d)", resume, start_step)
    main_process = PartialState().is_main_process
    if main_process:
        write_yaml(out / "config.yaml", record.view)

    valid: dict[str, Any] = {}
    if args.valid_samples and main_process:
        valid["sft"] = validation_ndcg(model, tokenizer, sid_table, args.data, args.valid_samples, args.valid_beams,
                                       args.max_history)

    rollout = SidRollout(sid_table, tokenizer, args.rollout, trainer_args.num_generations)
    policy = args.policy_softmax if args.policy_softmax != "model" else sid_softmax_of(model)
    trainer_class = GRPOTrainer
    if policy == "level":
        trainer_class = level_policy_trainer(rollout.sid_token_ids, sid_table.codebook_sizes)
    log.info("grpo: policy log-probabilities of SID tokens over %s", "their level's codes" if policy == "level"
             else "the vocabulary")
    rewards = build_reward_funcs(args.rewards, sid_table_strings(sid_table))
    trainer = resumable(trainer_class)(model=model, reward_funcs=rewards, args=trainer_args, train_dataset=dataset,
                                       processing_class=tokenizer, rollout_func=rollout,
                                       callbacks=[_curve_logger(out / CURVES_FILE, start_step)])
    started, cpu_started = time.perf_counter(), time.process_time()
    result = train_or_finish(trainer, resume)
    minutes, cpu_minutes = (time.perf_counter() - started) / 60, (time.process_time() - cpu_started) / 60

    final = save_final(trainer, tokenizer, out, "grpo", args.sft_model)
    if main_process:
        if args.valid_samples:
            valid["grpo"] = validation_ndcg(trainer.model, tokenizer, sid_table, args.data, args.valid_samples,
                                            args.valid_beams, args.max_history)
            write_json(out / VALID_METRICS_FILE, valid)
        record.mark_done()
        _summary(out, result.global_step, start_step, minutes, rollout, valid, cpu_minutes)
    end(trainer)
    return final


def run_grpo_from_dict(options: Mapping[str, Any], *, model_dir: str | Path, align_dir: str | Path | None,
                       data_dir: str | Path, sids_dir: str | Path, output_dir: str | Path) -> Path:
    """The pipeline's entry: run the stage from a config section instead of a command line.

    ``options`` holds GrpoArgs and GRPOConfig keys; ``config_file`` (optional) names a YAML file of the same keys
    that ``options`` override (e.g. ``configs/grpo/demo.yaml``). The run directory supplies ``sft_model``,
    ``data``, ``sids`` and ``output_dir``; ``max_history`` defaults to the align stage's (``align/stats.json``) so
    GRPO prompts look like the SFT prompts. Without CUDA the trainer runs on CPU in float32.
    """
    stats = Path(align_dir) / "stats.json" if align_dir else None
    defaults = {"max_history": json.loads(stats.read_text()).get("max_history")} if stats and stats.is_file() else {}
    fixed = {"sft_model": str(model_dir), "data": str(data_dir), "sids": str(sids_dir), "output_dir": str(output_dir)}
    args, trainer_args = options_mod.parse_section(make_parser(), options, fixed, "grpo", defaults)
    return run_grpo(args, trainer_args)


def sid_table_strings(sid_table: SidTable) -> list[str]:
    """Every catalogue SID as its token string (what the validity reward accepts)."""
    return [sid_table.item_sid_string(item) for item in sid_table.item_ids]


def _summary(out: Path, global_step: int, start_step: int, minutes: float, rollout: SidRollout,
             valid: dict[str, Any], cpu_minutes: float | None = None) -> None:
    """The one-screen summary: steps, rollouts checked, wall (and this process's CPU) minutes, reward and KL,
    validation NDCG@10 before and after."""
    curves = json.loads((out / CURVES_FILE).read_text()) if (out / CURVES_FILE).is_file() else []
    rewarded = [r for r in curves if "reward" in r]
    first, last = (rewarded[0], rewarded[-1]) if rewarded else ({}, {})
    resumed = f" resumed at step {start_step}" if start_step else ""
    lines = [f"grpo: {global_step - start_step} steps{resumed}, {rollout.n_checked} rollouts (all valid SIDs), "
             f"{minutes:.1f} min" + (f" ({cpu_minutes:.1f} CPU min)" if cpu_minutes is not None else ""),
             f"  reward {first.get('reward', float('nan')):.3f} -> {last.get('reward', float('nan')):.3f}, "
             f"kl {last.get('kl', float('nan')):.4f}"]
    if valid:
        lines.append("  valid NDCG@10 " + " -> ".join(f"{k} {v['NDCG@10']:.4f}" for k, v in valid.items()))
    lines.append(f"  model: {out / 'final'}   curves: {out / CURVES_FILE}")
    log.info("\n".join(lines))
