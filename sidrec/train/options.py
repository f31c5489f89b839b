"""Options of the TRL-backed stages (SFT, GRPO): one way to read a YAML file plus flags, or a pipeline config
section, into sidrec's own dataclass and TRL's config, and the fingerprint that decides whether a run is redone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sidrec.artifacts import to_plain
from sidrec.errors import ConfigError

# Trainer config fields that do not change what is trained (left out of the resume fingerprint).
VOLATILE_TRAINER_FIELDS = ("logging_dir", "resume_from_checkpoint", "overwrite_output_dir", "disable_tqdm",
                           "report_to", "push_to_hub", "hub_token", "run_name", "logging_steps",
                           "dataloader_num_workers", "local_rank", "deepspeed", "use_cpu")


def parse_command_line(parser, argv: Sequence[str] | None) -> tuple[Any, Any]:
    """``--config file.yaml`` plus flags through a ``TrlParser`` over (sidrec dataclass, TRL config); unknown keys
    and inconsistent options raise :class:`ConfigError`."""
    import sys

    import torch
    import yaml

    argv = list(argv) if argv is not None else sys.argv[1:]
    if not torch.cuda.is_available():  # as parse_section: CPU, float32, unless told otherwise
        given = {a.split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
        argv += [x for flag, value in (("--use_cpu", "true"), ("--bf16", "false"), ("--fp16", "false"))
                 if flag.replace("-", "_") not in given for x in (flag, value)]
    try:
        args, trainer = parser.parse_args_and_config(args=argv, fail_with_unknown_args=True)
    except ValueError as e:  # TrlParser: unknown YAML keys; the TRL config's __post_init__: inconsistent options
        raise ConfigError([str(e)], _config_arg(argv)) from None
    except FileNotFoundError as e:
        raise ConfigError([f"config file not found: {e.filename}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"not valid YAML: {e}"], _config_arg(argv)) from None
    problems = type_problems(args)
    if problems:
        raise ConfigError(problems, _config_arg(argv))
    problems = args.problems(trainer) + trainer_problems(trainer)
    if problems:
        raise ConfigError(problems)
    return args, trainer


def parse_section(parser, options: Mapping[str, Any], fixed: Mapping[str, Any], section: str,
                  defaults: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """A pipeline config section -> (sidrec dataclass, TRL config).

    ``options`` holds keys of both; ``config_file`` (optional) names a YAML file of the same keys that ``options``
    override. ``fixed`` (the run directory's paths) overrides both; ``defaults`` fill keys still unset or null.
    Without CUDA the trainer runs on CPU in float32.
    """
    import torch
    import yaml

    options = dict(options)
    config_file = options.pop("config_file", None)
    where = str(config_file) if config_file else f"{section} section"
    merged: dict[str, Any] = {}
    if config_file:
        try:
            loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError([f"config_file not found: {config_file}"]) from None
        except yaml.YAMLError as e:
            raise ConfigError([f"not valid YAML: {e}"], where) from None
        if not isinstance(loaded, dict):
            raise ConfigError([f"expected a mapping of options, got {type(loaded).__name__}"], where)
        merged.update(loaded)
    merged.update(options)
    merged.update(fixed)
    for key, value in (defaults or {}).items():
        if merged.get(key) is None:
            merged[key] = value
    if not torch.cuda.is_available():
        merged.setdefault("use_cpu", True)
        merged["bf16"] = merged["fp16"] = False
    try:
        args, trainer = parser.parse_dict(merged, allow_extra_keys=False)
    except (ValueError, TypeError) as e:  # unknown keys, or the TRL config's __post_init__ refusing a combination
        raise ConfigError([str(e)], where) from None
    problems = type_problems(args)
    if problems:  # the checks below compare values: their types first
        raise ConfigError(problems, where)
    problems = args.problems(trainer) + trainer_problems(trainer)
    if problems:
        raise ConfigError(problems, where)
    return args, trainer


def type_problems(obj: Any) -> list[str]:
    """Fields of the dataclass ``obj`` whose value is not of the annotated simple type (``int``, ``float``,
    ``bool``, ``str``, optional, or a list of those): a pipeline section or YAML file is not type-converted by
    ``parse_dict``, so ``val_samples: abc`` would otherwise fail deep inside the checks."""
    import dataclasses
    import types
    import typing

    simple = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}
    hints = typing.get_type_hints(type(obj))
    problems = []
    for f in dataclasses.fields(obj):
        hint, value = hints.get(f.name), getattr(obj, f.name)
        args = typing.get_args(hint)
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
        base = next((a for a in args if a is not type(None)), None) if optional else hint
        if value is None and optional:
            continue
        if typing.get_origin(base) is list and typing.get_args(base)[0] in simple:
            kinds = simple[typing.get_args(base)[0]]
            ok = isinstance(value, list) and all(isinstance(v, kinds) and not (
                isinstance(v, bool) and bool not in kinds) for v in value)
        elif base in simple:
            kinds = simple[base]
            ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        else:
            continue
        if not ok:
            problems.append(f"{f.name}: expected {getattr(base, '__name__', str(base))}, got {value!r:.60}")
    return problems


def _config_arg(argv: Sequence[str] | None) -> str | None:
    argv = list(argv or [])
    return argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None


def trainer_problems(trainer: Any) -> list[str]:
    """Values of TRL's config that its trainer would only refuse mid-run (or silently reinterpret): a learning
    rate or batch size that is not positive, ``max_steps: 0``, zero epochs without ``max_steps``."""
    problems = []
    for name in ("learning_rate", "num_train_epochs"):
        value = getattr(trainer, name, None)
        if value is not None and value <= 0 and not (name == "num_train_epochs" and trainer.max_steps > 0):
            problems.append(f"{name}: must be > 0, got {value}")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(trainer, name, None)
        if value is not None and value < 1:
            problems.append(f"{name}: must be >= 1, got {value}")
    if getattr(trainer, "max_steps", -1) == 0 or getattr(trainer, "max_steps", -1) < -1:
        problems.append(f"max_steps: must be >= 1 (or -1: train num_train_epochs), got {trainer.max_steps}")
    return problems


BUDGET_OPTIONS = ("max_minutes", "budget_clock")
# Options added after runs were made; left out of the fingerprint while off, so those runs stay valid.
OPTIONS_ADDED_LATER = ("dropout",)


def fingerprint(stage: str, args: Any, trainer: Any) -> dict[str, Any]:
    """What the skip / resume check compares: every option that changes the trained model."""
    trainer_dict = {k: v for k, v in trainer.to_dict().items() if k not in VOLATILE_TRAINER_FIELDS}
    # A time budget decides where a run stops, not what it trains: a larger budget continues the same run.
    own = {k: v for k, v in asdict(args).items() if k not in BUDGET_OPTIONS} | {"force": False}
    for key in OPTIONS_ADDED_LATER:  # at their default they leave earlier runs' fingerprints as they were
        if key in own and not own[key]:
            del own[key]
    return {stage: to_plain(own), "trainer": to_plain(trainer_dict)}
