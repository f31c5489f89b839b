"""Ablation arms as data: named sets of overrides of a pipeline config, read from a YAML file.

The shipped arms are ``configs/variants/ablations.yaml`` (its header documents the format); ``bench_pipeline
--variants-file`` takes another. A file is checked as it is read: an unknown key of a variant, an override of a
section the pipeline lacks or a malformed relative value is a :class:`~sidrec.errors.ConfigError` naming the file,
the variant and the key. Whether an override's own key exists (``quantize.embeding``) is checked against the
pipeline config it is applied to (:func:`check_overrides`), before any arm trains.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidrec.errors import ConfigError

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "configs" / "variants" / "ablations.yaml"
VARIANT_KEYS = ("description", "default", "seed_repeat", "labels", "set")
MODELS = ("sft", "grpo")  # the decoded models a variant's rows are named for
TIMES, FROM = frozenset({"times"}), frozenset({"from", "add"})  # relative values: the config's own x n, key + n


@dataclass(frozen=True)
class Variant:
    """One arm: its overrides (dotted key -> value, a ``{times: n}`` or ``{from: key, add: n}`` relative value)."""

    name: str
    source: str  # the file it was read from (errors name it)
    description: str = ""
    default: bool = False
    seed_repeat: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def apply(self, tree: dict, config: str = "the config") -> dict:
        """A copy of the raw pipeline config ``tree`` with the overrides applied (``config`` names it in errors:
        a ``{times: n}`` of a key it does not set cannot be applied)."""
        tree = copy.deepcopy(tree)
        for key, value in self.overrides.items():
            if isinstance(value, Mapping) and set(value) == TIMES:
                current = _get(tree, key)
                if current is None:
                    raise SystemExit(f"variant {self.name}: {config} sets no {key} to change")
                value = value["times"] * current
            elif isinstance(value, Mapping) and set(value) == FROM:
                value = int(_get(tree, value["from"]) or 0) + value["add"]
            set_dotted(tree, key, value)
        return tree


def load_variants(path: str | Path = DEFAULT_FILE) -> dict[str, Variant]:
    """``{name: Variant}`` in file order from a YAML file with a ``variants:`` mapping; ConfigError listing every
    problem (file, variant, key) otherwise."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError([f"cannot read the variants file: {e}"], source=str(path)) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("variants"), dict):
        raise ConfigError(["expected a mapping with a 'variants:' section (name -> overrides)"], source=str(path))
    problems = [f"unknown top-level key {k!r} (expected 'variants')" for k in raw if k != "variants"]
    variants = {}
    for name, spec in raw["variants"].items():
        where = f"variants.{name}"
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            problems.append(f"{where}: expected a mapping of {', '.join(VARIANT_KEYS)}")
            continue
        problems += [f"{where}: unknown key {k!r} (expected one of {', '.join(VARIANT_KEYS)})"
                     for k in spec if k not in VARIANT_KEYS]
        labels = spec.get("labels") or {}
        if not isinstance(labels, dict):
            problems.append(f"{where}.labels: expected a mapping of {' / '.join(MODELS)} to row names")
            labels = {}
        problems += [f"{where}.labels: unknown model {k!r} (expected {' or '.join(MODELS)})"
                     for k in labels if k not in MODELS]
        overrides = _flatten(spec.get("set") or {}, f"{where}.set", problems)
        for flag in ("default", "seed_repeat"):
            if not isinstance(spec.get(flag, False), bool):
                problems.append(f"{where}.{flag}: expected true or false")
        variants[str(name)] = Variant(str(name), str(path), str(spec.get("description", "")),
                                      spec.get("default", False) is True, spec.get("seed_repeat", False) is True,
                                      dict(labels), overrides)
    if problems:
        raise ConfigError(problems, source=str(path))
    return variants


def check_overrides(variant: Variant, tree: dict, config: str = "the config") -> None:
    """Resolve every section of ``tree`` with ``variant`` applied (:func:`sidrec.pipeline.resolve_sections`) and
    raise ConfigError, naming the variants file and the variant, for each problem the variant brings in (a
    misspelt option of a section, a bad value); problems the config has on its own are left to the pipeline."""
    from sidrec.config import resolve
    from sidrec.pipeline import PipelineConfig, resolve_sections

    def problems(raw: dict) -> list[str]:
        try:
            resolve_sections(resolve(PipelineConfig, overrides=raw))
        except ConfigError as e:
            return e.problems
        return []

    if not variant.overrides:
        return
    new = [p for p in problems(variant.apply(tree, config)) if p not in problems(tree)]
    if new:
        raise ConfigError([f"variants.{variant.name}: {p}" for p in new], source=variant.source)


def set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """``tree[a][b] = value`` for ``a.b``, making the sections on the way."""
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SystemExit(f"{dotted}: {key} is not a section")
    node[leaf] = value


def _get(tree: dict, dotted: str) -> Any:
    node: Any = tree
    for key in dotted.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _flatten(overrides: Any, where: str, problems: list[str], prefix: str = "") -> dict[str, Any]:
    """Dotted ``{section.key: value}`` of a ``set:`` mapping (dotted keys, nested sections or both), checking each
    key's section and each relative value."""
    from sidrec.pipeline import PipelineConfig

    if not isinstance(overrides, dict):
        problems.append(f"{where}: expected a mapping of dotted keys to values")
        return {}
    sections = {f.name for f in dataclasses.fields(PipelineConfig)}
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and set(value) not in (TIMES, FROM):
            out.update(_flatten(value, where, problems, dotted + "."))
            continue
        section = dotted.split(".")[0]
        if section not in sections:
            problems.append(f"{where}: {dotted!r}: unknown section {section!r} (the pipeline config has "
                            f"{', '.join(sorted(sections))})")
        elif isinstance(value, dict) and set(value) == TIMES and not isinstance(value["times"], (int, float)):
            problems.append(f"{where}: {dotted!r}: times must be a number, got {value['times']!r}")
        elif isinstance(value, dict) and set(value) == FROM and not (
                isinstance(value["from"], str) and isinstance(value["add"], int)):
            problems.append(f"{where}: {dotted!r}: expected {{from: <dotted key>, add: <integer>}}")
        out[dotted] = value
    return out
