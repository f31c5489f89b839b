"""One stage runner: fingerprint, skip or redo, atomic output folder, saved config and done marker.

A stage is a :class:`Stage`: a name, the input artifacts its options point at, the outputs it writes, and a
``run(cfg, out)`` that does its own work and nothing else. :func:`run_stage` does the rest, the same way for
``sidrec <stage>`` and for ``sidrec pipeline``:

1. the fingerprint hashes the options that change the outputs together with the *digest* of every input artifact
   (read from the marker of the folder that holds it), so an upstream change -- new SIDs, a new dataset -- redoes
   the stage even when its own options are unchanged, while the same data reached through another path (a
   benchmark arm's symlink) does not;
2. a folder whose marker holds the same fingerprint is skipped; ``force`` redoes it;
3. the stage writes into a temporary sibling folder that replaces ``out`` only when complete (a stage that resumes
   part by part writes in place instead, after its marker has been removed, so a kill never leaves it "done");
4. the resolved config (``config.yaml``) and the done marker (``_stage.json``) are saved with the outputs.

The marker (format 2) is the one resume record of sidrec; the pipeline's ``RUN/.pipeline/<stage>.json`` and the
trainers' ``_stage.json`` are written by :func:`write_marker` too::

    {"format": 2, "stage": "align", "fingerprint": "...", "digest": "...", "inputs": {"sids": "<digest>", ...},
     "outputs": {"sids.json": "<sha256>"}, "config": {options as resolved}}

``digest`` is what a downstream stage records for this folder: the fingerprint, plus the content hash of the files
the stage names in ``digest_outputs``, so a redone stage whose outputs changed redoes what depends on it and one
that rewrote the same bytes does not.

Markers written before format 2 are still read, so existing run folders stay done: a stage folder's
``{"stage", "config_hash", "config"}`` matches when ``config_hash`` equals the hash of what that stage hashed then
(:meth:`Stage.legacy_view`, options only) and none of its inputs has been remade since (an input with a format-2
marker was); the pipeline's ``{"stage", "hash"}`` reads as the fingerprint it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from sidrec.artifacts import atomic_dir, config_hash, to_plain, write_json, write_yaml

log = logging.getLogger(__name__)

MARKER_FILE = "_stage.json"
MARKER_FORMAT = 2

C = TypeVar("C")


# ---- the marker ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Marker:
    """A done (or started) marker as read from disk, whatever format wrote it."""

    stage: str
    fingerprint: str | None  # None for a stage folder's pre-format-2 marker (it hashed the options only)
    digest: str | None  # what a downstream stage records for this folder
    legacy_hash: str | None = None  # the options hash of a pre-format-2 stage folder marker
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # everything the file holds

    @property
    def current(self) -> bool:
        """Written in the current format (so after every pre-format-2 marker of its run)."""
        return self.fields.get("format") == MARKER_FORMAT


def read_marker(path: str | Path) -> Marker | None:
    """The marker at ``path``; None when there is none or it cannot be read (then nothing counts as done)."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict):
        return None
    stage = str(found.get("stage", ""))
    if found.get("format") == MARKER_FORMAT:
        return Marker(stage, found.get("fingerprint"), found.get("digest"), fields=found)
    if "config_hash" in found:  # a stage folder's _stage.json before format 2
        return Marker(stage, None, found["config_hash"], legacy_hash=found["config_hash"], fields=found)
    if "hash" in found:  # the pipeline's .pipeline/<stage>.json before format 2: the same hash, another key
        return Marker(stage, found["hash"], found["hash"], fields=found)
    return None


def write_marker(path: str | Path, stage: str, fingerprint: str, *, inputs: Mapping[str, Any] | None = None,
                 outputs: Mapping[str, str] | None = None, config: Any = None, **extra: Any) -> Marker:
    """Write a format-2 marker (atomically) and return it. ``outputs`` are content hashes of the files whose bytes
    join the digest; ``extra`` holds what else the writer records (the pipeline's ``seconds``, ``clean``)."""
    digest = config_hash({"fingerprint": fingerprint, "outputs": dict(outputs)}) if outputs else fingerprint
    fields: dict[str, Any] = {"format": MARKER_FORMAT, "stage": stage, "fingerprint": fingerprint, "digest": digest}
    if inputs is not None:
        fields["inputs"] = dict(inputs)
    if outputs:
        fields["outputs"] = dict(outputs)
    if config is not None:
        fields["config"] = to_plain(config)
    fields.update(extra)
    write_json(path, fields)
    return Marker(stage, fingerprint, digest, fields=fields)


def clear_marker(folder: str | Path) -> None:
    """Remove ``folder``'s done marker: call it before changing outputs in place, so a kill half-way leaves them
    unfinished rather than finished with another run's marker."""
    (Path(folder) / MARKER_FILE).unlink(missing_ok=True)


def input_marker(path: str | Path | None) -> Marker | None:
    """The marker of the stage folder that holds ``path``: the folder itself, or the folder of a file in it or of
    a model subfolder in it (``RUN/sids/sids.json``, ``RUN/align/model``, ``RUN/sft/final``)."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return None
    for folder in (p, p.parent) if p.is_dir() else (p.parent,):
        marker = read_marker(folder / MARKER_FILE)
        if marker is not None:
            return marker
    return None


def input_digests(inputs: Mapping[str, str | Path | None]) -> dict[str, str | None]:
    """``{name: digest}`` of a stage's inputs. An input no stage made is identified by its content when it is a
    file (a hand-made sids.json), else by its path (a hub model name, a folder made elsewhere)."""
    out: dict[str, str | None] = {}
    for name, path in inputs.items():
        marker = input_marker(path)
        if marker is not None:
            out[name] = marker.digest
        elif path is not None and Path(path).is_file():
            out[name] = "sha256:" + file_digest(path)
        else:
            out[name] = None if path is None else str(path)
    return out


def fingerprint(options: Any, inputs: Mapping[str, str | None]) -> str:
    """The hash a done marker records: the options that change the outputs and the inputs' digests."""
    return config_hash({"options": to_plain(options), "inputs": dict(inputs)})


def is_done(folder: str | Path, fingerprint_: str, *, legacy_view: Any = None,
            inputs: Mapping[str, str | Path | None] | None = None) -> bool:
    """True when ``folder`` holds finished outputs with this fingerprint.

    A pre-format-2 marker counts when its hash equals ``config_hash(legacy_view)`` (what its stage hashed then)
    and no input in ``inputs`` (name -> path) has been remade since, i.e. none carries a format-2 marker.
    """
    marker = read_marker(Path(folder) / MARKER_FILE)
    if marker is None:
        return False
    if marker.fingerprint is not None:
        return marker.fingerprint == fingerprint_
    if legacy_view is None or marker.legacy_hash != config_hash(legacy_view):
        return False
    remade = [name for name, path in (inputs or {}).items()
              if (m := input_marker(path)) is not None and m.current]
    if remade:
        log.info("%s: made before its input(s) %s were remade: redoing it", folder, ", ".join(remade))
    return not remade


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (the first 16 hex digits, like every other hash here)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# ---- the runner ------------------------------------------------------------------------------------------------
class Stage(ABC, Generic[C]):
    """What a stage declares; :func:`run_stage` runs it.

    Subclasses set ``name`` and implement :meth:`run`; they override :meth:`inputs` when they read other stages'
    artifacts, and :meth:`legacy_view` when their pre-format-2 marker hashed something else than the options.
    The options object must have ``out`` (the output folder) and ``force`` fields.
    """

    name: ClassVar[str]
    unhashed: ClassVar[tuple[str, ...]] = ("out", "force")  # options that do not change what is written
    outputs: ClassVar[tuple[str, ...]] = ()  # files / folders ``run`` must write (checked before the marker)
    digest_outputs: ClassVar[tuple[str, ...]] = ()  # files whose bytes join the digest downstream stages record
    in_place: ClassVar[bool] = False  # write into ``out`` directly (a stage that resumes part by part)
    saves_config: ClassVar[bool] = True  # write the resolved options to ``out/config.yaml``

    def resolve(self, cfg: C) -> C:
        """``cfg`` with defaults that depend on other options filled in (what is saved and hashed)."""
        return cfg

    def inputs(self, cfg: C) -> dict[str, str | Path | None]:
        """``{option name: path}`` of the artifacts the stage reads; their digests replace the paths in the
        fingerprint."""
        return {}

    @abstractmethod
    def run(self, cfg: C, out: Path) -> bool | None:
        """Write the outputs into ``out`` (a temporary folder unless ``in_place``); return False when the work is
        not complete (an in-place stage asked for some parts only), so no done marker is written."""
        raise NotImplementedError

    def options(self, cfg: C) -> dict[str, Any]:
        """Every option but the unhashed ones (what ``config`` in the marker holds)."""
        return {k: v for k, v in vars(cfg).items() if k not in self.unhashed}

    def legacy_view(self, cfg: C) -> Any:
        """What this stage's marker hashed before format 2 (to recognise folders made then)."""
        return self.options(cfg)

    def fingerprint(self, cfg: C) -> tuple[str, dict[str, str | None]]:
        """(fingerprint, input digests) of ``cfg``."""
        paths = self.inputs(cfg)
        digests = input_digests(paths)
        own = {k: v for k, v in self.options(cfg).items() if k not in paths}
        return fingerprint(own, digests), digests


def run_stage(stage: Stage[C], cfg: C) -> Path:
    """Run ``stage`` with ``cfg`` into ``cfg.out`` unless it already holds the outputs of the same options and
    inputs (``cfg.force`` redoes them); returns the output folder."""
    from sidrec.errors import ConfigError

    cfg = stage.resolve(cfg)
    problems = cfg.problems() if hasattr(cfg, "problems") else []
    if problems:
        raise ConfigError(problems)
    out = Path(cfg.out)
    fingerprint_, digests = stage.fingerprint(cfg)
    if not cfg.force and is_done(out, fingerprint_, legacy_view=stage.legacy_view(cfg), inputs=stage.inputs(cfg)):
        log.info("%s: %s holds the outputs of the same options and inputs: skipped (--force to redo)",
                 stage.name, out)
        return out

    def finish(folder: Path) -> None:
        missing = [name for name in stage.outputs if not (folder / name).exists()]
        if missing:  # a bug in the stage, not a user error
            raise AssertionError(f"stage {stage.name} did not write {missing} into {folder}")
        if stage.saves_config:
            write_yaml(folder / "config.yaml", cfg)
        write_marker(folder / MARKER_FILE, stage.name, fingerprint_, inputs=digests,
                     outputs={name: file_digest(folder / name) for name in stage.digest_outputs},
                     config=stage.options(cfg))

    if stage.in_place:
        clear_marker(out)
        out.mkdir(parents=True, exist_ok=True)
        if stage.run(cfg, out) is not False:
            finish(out)
    else:
        with atomic_dir(out) as tmp:
            stage.run(cfg, tmp)
            finish(tmp)
    return out
