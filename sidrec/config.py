"""Stage configs: dataclasses filled from defaults, then a YAML file, then command-line flags.

Every field carries a one-line help (``opt(default, "help")``). :func:`click_options` turns a dataclass into click
options so a stage's CLI is generated, never hand-copied; :func:`resolve` merges the three sources, rejects unknown
YAML keys (with a suggestion) and collects every problem from the dataclass's ``problems()`` before anything runs.
The trainer stages use TRL's own ``SFTConfig`` / ``GRPOConfig`` through ``TrlParser`` instead (scripts/sft.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
import yaml

from sidrec.errors import ConfigError

T = TypeVar("T")


def opt(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:  # noqa: A002
    """A dataclass field with a default and a one-line help shown by ``--help``."""
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert a YAML/CLI value to the field's declared type; raise ValueError with the field name."""
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name}: null is not allowed (expected {getattr(tp, '__name__', tp)})")
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and {"on", "off"} <= set(choices):
            value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
        if value not in choices:
            raise ValueError(f"{name}: {value!r} is not one of {list(choices)}")
        return value
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1] or (str,)
        if isinstance(value, str):  # a CLI value: "256,128", or the list as --help shows it, "[256, 128]"
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            value = [v.strip() for v in text.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list, got {value!r}")
        return [_coerce(name, inner, v) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{name}: expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != int(value):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        return out
    if tp is str:
        return str(value)
    return value


def _section_of(loaded: Any, section: str, fields: dict[str, Any], source: str | None) -> Any:
    """The options for ``section`` in a loaded YAML file: its ``section:`` mapping (a pipeline config), or the
    whole file when it holds this stage's options at the top level (a flat options file). A file that is neither
    is an error, so a flat file's options are never silently ignored."""
    if not isinstance(loaded, dict):
        raise ConfigError([f"expected a mapping of options, got {type(loaded).__name__}"], source)
    if section in loaded:
        return loaded[section] or {}
    keys = [str(k).replace("-", "_") for k in loaded]
    if not keys or any(k in fields for k in keys):
        return loaded
    import dataclasses as dc

    from sidrec.pipeline import PipelineConfig  # a pipeline file without this section: the defaults

    if any(k in {f.name for f in dc.fields(PipelineConfig)} for k in keys):
        return {}
    raise ConfigError([f"no '{section}:' section, and none of its options at the top level (found: "
                       f"{', '.join(map(str, list(loaded)[:8]))})"], source)


def resolve(cls: type[T], yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None,
            section: str | None = None) -> T:
    """Build ``cls`` from its defaults, then ``yaml_path`` (optionally one ``section`` of it), then ``overrides``.

    Raises :class:`ConfigError` listing every unknown key, bad value and failed check at once.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    problems: list[str] = []
    source = str(yaml_path) if yaml_path else None
    if yaml_path is not None:
        try:
            loaded = yaml.safe_load(Path(yaml_path).read_text())
        except FileNotFoundError:
            raise ConfigError([f"config file not found: {yaml_path}"]) from None
        except yaml.YAMLError as e:
            raise ConfigError([f"not valid YAML: {e}"], source) from None
        if loaded is None:
            raise ConfigError(["the file is empty (no options)"], source)
        if section is not None:
            loaded = _section_of(loaded, section, fields, source)
        if not isinstance(loaded, dict):
            raise ConfigError([f"expected a mapping of options, got {type(loaded).__name__}"], source)
        for key, value in loaded.items():
            key_norm = str(key).replace("-", "_")
            if key_norm not in fields:
                problems.append(_unknown(key, key_norm, fields))
                continue
            values[key_norm] = value
    for key, value in (overrides or {}).items():
        if key not in fields:
            problems.append(_unknown(key, str(key), fields))
            continue
        values[key] = value
    coerced: dict[str, Any] = {}
    for key, value in values.items():
        try:
            coerced[key] = _coerce(key, hints[key], value)
        except ValueError as e:
            problems.append(str(e))
    missing = [n for n, f in fields.items() if n not in coerced and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    problems += [f"{n}: required" for n in missing]
    if problems:
        raise ConfigError(problems, source)
    obj = cls(**coerced)
    check = getattr(obj, "problems", None)
    if check is not None:
        found = check()
        if found:
            raise ConfigError(found, source)
    return obj


def _unknown(key: Any, key_norm: str, fields: dict[str, Any]) -> str:
    """The problem line of an unknown option: the nearest known name, else every known one."""
    near = difflib.get_close_matches(key_norm, list(fields), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else f" (known: {', '.join(fields)})"
    return f"unknown option '{key}'{hint}"


def _click_type(tp: Any) -> tuple[Any, bool]:
    """(click type, is_flag) for a field type."""
    tp, _ = _strip_optional(tp)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return click.Choice([str(c) for c in typing.get_args(tp)]), False
    if tp is bool:
        return bool, True
    if tp in (int, float):
        return tp, False
    return str, False


def click_options(cls: type) -> Callable[[Callable], Callable]:
    """Decorate a click command with one option per dataclass field (``--max-history``) plus ``--config``.

    The wrapped function receives ``config_path`` and ``overrides`` (only the flags the user actually gave),
    ready for :func:`resolve`.
    """
    hints = typing.get_type_hints(cls)

    def decorate(fn: Callable) -> Callable:
        def wrapper(**kwargs: Any) -> Any:
            config_path = kwargs.pop("config_path", None)
            overrides = {k: v for k, v in kwargs.items() if v is not None}
            return fn(config_path=config_path, overrides=overrides)

        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        for f in reversed(dataclasses.fields(cls)):
            ctype, is_flag = _click_type(hints[f.name])
            flag = "--" + f.name.replace("_", "-")
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            help_text = f.metadata.get("help", "")
            if default is not None and default != [] and default != "":
                help_text += f"  [default: {default}]"
            if is_flag:
                decl = f"{flag}/--no-{f.name.replace('_', '-')}"
                wrapper = click.option(decl, f.name, default=None, help=help_text)(wrapper)
            else:
                wrapper = click.option(flag, f.name, type=ctype, default=None, help=help_text)(wrapper)
        wrapper = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                               help="YAML file with these options; flags given here override it.")(wrapper)
        return wrapper

    return decorate
