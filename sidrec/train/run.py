"""What the two training stages (SFT, GRPO) share, written once: the done check and marker, resuming from the last
complete checkpoint, the tokenizer and weight-dtype rules, and the atomic final save with ``sidrec.json``.

A training stage cannot use :func:`sidrec.stage.run_stage` as it is: it writes into its output folder in place
(checkpoints are what a killed run resumes from) and, under ``accelerate launch``, in several processes at once. It
uses the same marker and fingerprint (:mod:`sidrec.stage`): options plus the digests of its input artifacts, so a
new aligned model or SID table redoes it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidrec.artifacts import check_model_source, replace_dir
from sidrec.stage import MARKER_FILE, clear_marker, fingerprint, input_digests, is_done, write_marker
from sidrec.train.checkpoints import last_complete_checkpoint

log = logging.getLogger(__name__)


@dataclass
class TrainingRecord:
    """The done check of one training stage's output folder: ``view`` (options that change the model, from
    :func:`sidrec.train.options.fingerprint`) and ``inputs`` (name -> path of the artifacts it reads)."""

    stage: str
    out: Path
    view: dict[str, Any]
    inputs: Mapping[str, str | Path | None]
    digests: dict[str, str | None] = field(init=False)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.digests = input_digests(self.inputs)
        self.key = fingerprint(self.view, self.digests)

    @property
    def final(self) -> Path:
        return self.out / "final"

    def done(self) -> bool:
        """``final/`` exists and the marker holds these options and inputs (or is an older marker of them)."""
        return self.final.is_dir() and is_done(self.out / MARKER_FILE, self.key, legacy_view=self.view,
                                               inputs=self.inputs)

    def mark_done(self) -> None:
        write_marker(self.out / MARKER_FILE, self.stage, self.key, inputs=self.digests, config=self.view)


def sids_file(sids: str | Path) -> Path:
    """The SID table file of a ``RUN/sids`` folder or a sids.json path (an input counted by content when no stage
    made it)."""
    from sidrec.sid import SIDS_FILE

    return Path(sids) / SIDS_FILE if Path(sids).is_dir() else Path(sids)


def resume_point(out: Path, resume: str | bool | None, force: bool,
                 forget: Sequence[str] = ()) -> str | None:
    """Get ``out`` ready for training and return the checkpoint to resume from (None: from the start).

    The done marker goes first (from here on the outputs change: a kill must not leave them marked done). With
    ``force`` the old checkpoints and the files in ``forget`` go too. ``resume`` is the trainer's
    ``resume_from_checkpoint``: ``true``/``last`` = the last complete checkpoint; unset = the same, unless forced;
    a path = that checkpoint. A checkpoint a kill left half-written is removed (main process only).
    """
    from accelerate import PartialState

    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = True
    main_process = PartialState().is_main_process
    if main_process:
        clear_marker(out)
    if force:
        if main_process:
            for old in out.glob("checkpoint-*"):
                shutil.rmtree(old, ignore_errors=True)
            for name in forget:
                (out / name).unlink(missing_ok=True)
        resume = None
    last = last_complete_checkpoint(out, remove_incomplete=main_process)
    PartialState().wait_for_everyone()
    if resume is True:
        resume = str(last) if last else None
    elif resume is None and last is not None and not force:
        resume = str(last)
    out.mkdir(parents=True, exist_ok=True)
    return resume or None


def checkpoint_step(checkpoint: str | Path | None) -> int:
    """The global step a checkpoint was saved at (0 for none)."""
    if not checkpoint:
        return 0
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])


def load_tokenizer(model_dir: str | Path):
    """The model's tokenizer, padding on the left (batched generation) with EOS as padding when it has none."""
    from transformers import AutoTokenizer

    check_model_source(model_dir, "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_dtype(trainer_args: Any):
    """The one weight-dtype rule: bfloat16 when the trainer trains in bf16 on a GPU, float32 otherwise (CPU runs,
    and fp16 mixed precision, which needs float32 master weights to unscale the gradients)."""
    import torch

    return torch.bfloat16 if trainer_args.bf16 and torch.cuda.is_available() else torch.float32


def load_model(model_dir: str | Path, trainer_args: Any):
    """The causal LM of ``model_dir`` in :func:`model_dtype`."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=model_dtype(trainer_args))


def save_final(trainer, tokenizer, out: Path, stage: str, source_model: str | Path,
               lora_base: str | Path | None = None) -> Path:
    """Write ``out/final`` (model + tokenizer + ``sidrec.json`` naming ``stage``) atomically; returns it.

    Every rank takes part in ``save_model`` (ZeRO-3 gathers the weights), the main one writes and renames. With
    ``lora_base`` the saved adapters are merged into that base model first, so ``final`` is a plain model. The
    prompt format and SID table travel from ``source_model``'s ``sidrec.json``.
    """
    from sidrec.align.prompts import copy_settings

    final, tmp = out / "final", out / ".final.tmp"
    accelerator = trainer.accelerator
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    trainer.save_model(str(tmp))
    if accelerator.is_main_process:
        if lora_base is not None:
            from peft import PeftModel
            from transformers import AutoModelForCausalLM

            base = AutoModelForCausalLM.from_pretrained(lora_base, dtype="auto")
            merged = PeftModel.from_pretrained(base, str(tmp)).merge_and_unload()
            shutil.rmtree(tmp)
            merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        copy_settings(source_model, tmp, stage=stage)
        replace_dir(tmp, final)
    accelerator.wait_for_everyone()
    return final


def end(trainer) -> None:
    """Close the trainer's trackers and process group (transformers >= 5.18 has ``Trainer.end``)."""
    if hasattr(trainer, "end"):
        trainer.end()
