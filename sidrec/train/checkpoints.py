"""Resuming the TRL trainers (SFT, GRPO) so that a run killed anywhere ends where an unkilled one does (issue 22).

Three things stand between a resumed run and the uninterrupted one, each handled here:

- A kill while the Trainer writes ``checkpoint-N`` leaves a folder with some of its files, and transformers'
  ``get_last_checkpoint`` picks the newest folder whatever it holds. The Trainer writes ``trainer_state.json`` last
  (after the weights, optimizer, scheduler and RNG states), so a checkpoint is complete when that file parses and
  names step N; :func:`last_complete_checkpoint` removes the others.
- Samplers that draw each epoch's order from a generator advanced across epochs (``LengthGroupedSampler`` draws from
  the global RNG, TRL's ``RepeatSampler`` from one generator seeded once) give a run resumed in epoch e another
  order than the uninterrupted run had. :func:`resumable` makes epoch e's order depend on ``seed + e`` alone, the
  way accelerate's seedable sampler already does for plain random sampling.
- ``EarlyStoppingCallback``'s patience counter is not restored from a checkpoint by default, so a resumed run
  would stop later; :func:`restore_early_stopping` restores it (and nothing else of the trainer's control state).
- Resumed from the checkpoint where training had ended (the kill came before the final model was written), the
  Trainer trains on; :func:`train_or_finish` loads the final weights instead.

(And TRL's model card lists its tags in set order, which changes with the hash seed: they are sorted.)
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from sidrec.artifacts import write_text

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def is_complete(checkpoint: Path) -> bool:
    """True when the Trainer finished writing ``checkpoint`` (its ``trainer_state.json`` parses and names its step)."""
    match = _CHECKPOINT.match(checkpoint.name)
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(match) and isinstance(state, dict) and state.get("global_step") == int(match.group(1))


def last_complete_checkpoint(output_dir: str | Path, remove_incomplete: bool = True) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``output_dir`` (None when there is none); incomplete ones (a kill
    during a save) are removed first, when ``remove_incomplete``, so no later step can pick them up."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in output_dir.iterdir()
                   if p.is_dir() and (m := _CHECKPOINT.match(p.name)))
    complete = []
    for _, path in found:
        if is_complete(path):
            complete.append(path)
        elif remove_incomplete:
            log.warning("removing %s: an incomplete checkpoint (the run was stopped while saving it)", path)
            shutil.rmtree(path, ignore_errors=True)
    return complete[-1] if complete else None


def epoch_seeded(sampler, seed: int):
    """``sampler`` (one that draws its order from ``sampler.generator``) changed to draw epoch e's order from a
    generator seeded with ``seed + e``; the Trainer calls ``set_epoch`` before each epoch."""
    import torch

    base = type(sampler)

    class EpochSeeded(base):  # type: ignore[valid-type, misc]
        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            self.generator = torch.Generator().manual_seed(seed + getattr(self, "epoch", 0))
            return super().__iter__()

    EpochSeeded.__name__ = EpochSeeded.__qualname__ = f"EpochSeeded{base.__name__}"
    sampler.__class__ = EpochSeeded
    return sampler


def resumable(trainer_class: type) -> type:
    """A subclass of ``trainer_class`` whose training sampler orders epoch e by ``seed + e`` alone (see the module
    docstring); plain random sampling already does (accelerate's seedable sampler) and is left as it is."""
    from torch.utils.data import RandomSampler

    class Resumable(trainer_class):  # type: ignore[valid-type, misc]
        def _get_train_sampler(self, *args: Any, **kwargs: Any):
            sampler = super()._get_train_sampler(*args, **kwargs)
            if sampler is not None and hasattr(sampler, "generator") and not isinstance(sampler, RandomSampler):
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                sampler = epoch_seeded(sampler, seed)
            return sampler

        def create_model_card(self, *args: Any, **kwargs: Any) -> None:
            super().create_model_card(*args, **kwargs)
            sort_model_card_tags(Path(self.args.output_dir) / "README.md")

    Resumable.__name__ = Resumable.__qualname__ = trainer_class.__name__
    return Resumable


def sort_model_card_tags(readme: Path) -> None:
    """Sort the ``tags:`` list of a model card's YAML header in place (TRL collects the tags in a set, so their
    order changed from process to process)."""
    if not readme.is_file():
        return
    lines = readme.read_text(encoding="utf-8").split("\n")
    if "tags:" not in lines:
        return
    start = lines.index("tags:") + 1
    end = start
    while end < len(lines) and lines[end].startswith("- "):
        end += 1
    lines[start:end] = sorted(lines[start:end])
    write_text(readme, "\n".join(lines))


def _early_stopping_state(state: dict) -> dict:
    stored = (state.get("stateful_callbacks") or {}).get("EarlyStoppingCallback")
    stored = stored[0] if isinstance(stored, list) and stored else stored
    return stored if isinstance(stored, dict) else {}


def training_finished(trainer, checkpoint: str | Path) -> bool:
    """True when ``trainer``'s run would have ended at ``checkpoint``: it is at the trainer's ``max_steps``, or its
    early stopping had run out of the trainer's patience (a kill came after that save, before the final model was
    written). An epoch-bound run resumed at its last step trains no further by itself."""
    from transformers import EarlyStoppingCallback

    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    if trainer.args.max_steps > 0 and state.get("global_step", 0) >= trainer.args.max_steps:
        return True
    counter = _early_stopping_state(state).get("attributes", {}).get("early_stopping_patience_counter")
    return counter is not None and any(isinstance(c, EarlyStoppingCallback) and counter >= c.early_stopping_patience
                                       for c in trainer.callback_handler.callbacks)


def train_or_finish(trainer, resume: str | None):
    """``trainer.train(resume_from_checkpoint=resume)``, except when training had already ended at ``resume``
    (:func:`training_finished`): the Trainer would then train on (one step past ``max_steps``; past early stopping
    until its next evaluation), where the uninterrupted run stopped. Instead the trainer state and the final
    weights (the best checkpoint's under ``load_best_model_at_end``, else ``resume``'s) are loaded. Returns the
    ``TrainOutput``."""
    if not resume or not training_finished(trainer, resume) or getattr(trainer, "is_deepspeed_enabled", False):
        return trainer.train(resume_from_checkpoint=resume)
    from transformers import TrainerState
    from transformers.trainer_utils import TrainOutput

    trainer.state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
    best = trainer.state.best_model_checkpoint
    source = best if trainer.args.load_best_model_at_end and best and Path(best).is_dir() else str(resume)
    trainer._load_from_checkpoint(source)
    log.info("training had ended at %s: weights from %s, no further steps", resume, source)
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return TrainOutput(trainer.state.global_step, sum(losses) / len(losses) if losses else 0.0, {})


def restore_early_stopping(trainer, checkpoint: str | Path) -> None:
    """Give the trainer's ``EarlyStoppingCallback`` the patience counter stored in ``checkpoint``."""
    from transformers import EarlyStoppingCallback

    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    counter = _early_stopping_state(state).get("attributes", {}).get("early_stopping_patience_counter")
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, EarlyStoppingCallback) and counter is not None:
            callback.early_stopping_patience_counter = int(counter)
            log.info("early stopping: %d evaluation(s) without improvement before the resume", counter)
