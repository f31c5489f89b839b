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

A stage whose output is one file (``output_file``: ``sidrec decode``'s predictions) is written to a temporary
sibling and renamed, and its marker sits beside it (``<file>.config.json``, :func:`file_marker`). A stage that works
part by part records each finished part in a ledger (``_parts.json``, :func:`run_parts`), so a killed run resumes
with the first unfinished part.

The marker (format 2) is the one resume record of sidrec; the pipeline's ``RUN/.pipeline/<stage>.json``, the
trainers' and the baselines' ``_stage.json``, decode's ``<file>.config.json`` and the entries of a part ledger are
written by :func:`write_marker` / :func:`marker_fields` too::

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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from sidrec.artifacts import atomic_dir, atomic_path, config_hash, to_plain, write_json, write_yaml

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


MARKER_SUFFIX = ".config.json"  # a file-level stage's marker: ``<output file>.config.json``
PARTS_FILE = "_parts.json"  # the part ledger of a stage that works part by part


def file_marker(path: str | Path) -> Path:
    """The marker of a stage whose output is the one file ``path`` (``predictions/sft.jsonl.config.json``)."""
    path = Path(path)
    return path.with_name(path.name + MARKER_SUFFIX)


def read_marker(path: str | Path) -> Marker | None:
    """The marker at ``path``; None when there is none or it cannot be read (then nothing counts as done)."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return parse_marker(found)


def parse_marker(found: Any) -> Marker | None:
    """A marker from its JSON object (a marker file's, or a part ledger's entry); None when it is not one."""
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
    fields = marker_fields(stage, fingerprint, inputs=inputs, outputs=outputs, config=config, **extra)
    write_json(path, fields)
    return parse_marker(fields)


def marker_fields(stage: str, fingerprint: str, *, inputs: Mapping[str, Any] | None = None,
                  outputs: Mapping[str, str] | None = None, config: Any = None, **extra: Any) -> dict[str, Any]:
    """The JSON object of a format-2 marker (what :func:`write_marker` writes)."""
    digest = config_hash({"fingerprint": fingerprint, "outputs": dict(outputs)}) if outputs else fingerprint
    fields: dict[str, Any] = {"format": MARKER_FORMAT, "stage": stage, "fingerprint": fingerprint, "digest": digest}
    if inputs is not None:
        fields["inputs"] = dict(inputs)
    if outputs:
        fields["outputs"] = dict(outputs)
    if config is not None:
        fields["config"] = to_plain(config)
    fields.update(to_plain(extra))
    return fields


def clear_marker(folder: str | Path) -> None:
    """Remove ``folder``'s done marker: call it before changing outputs in place, so a kill half-way leaves them
    unfinished rather than finished with another run's marker."""
    (Path(folder) / MARKER_FILE).unlink(missing_ok=True)


def input_marker(path: str | Path | None) -> Marker | None:
    """The marker of the stage that made ``path``: a file-level stage's marker beside it, else the marker of the stage
    folder that holds it: the folder itself, or the folder of a file in it or of a model subfolder in it
    (``RUN/sids/sids.json``, ``RUN/align/model``, ``RUN/sft/final``)."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        return None
    if p.is_file() and (own := read_marker(file_marker(p))) is not None:
        return own
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


def is_done(marker_path: str | Path, fingerprint_: str, *, legacy_view: Any = None,
            inputs: Mapping[str, str | Path | None] | None = None) -> bool:
    """True when the marker at ``marker_path`` (``folder/_stage.json``, or :func:`file_marker`) marks finished
    outputs with this fingerprint.

    A pre-format-2 marker counts when its hash equals ``config_hash(legacy_view)`` (what its stage hashed then;
    ``legacy_view`` may be a function that computes it, called only for such a marker) and no input in ``inputs``
    (name -> path) has been remade since, i.e. none carries a format-2 marker.
    """
    marker = read_marker(marker_path)
    if marker is None:
        return False
    if marker.fingerprint is not None:
        return marker.fingerprint == fingerprint_
    if callable(legacy_view):
        legacy_view = legacy_view()
    if legacy_view is None or marker.legacy_hash != config_hash(legacy_view):
        return False
    remade = [name for name, path in (inputs or {}).items()
              if (m := input_marker(path)) is not None and m.current]
    if remade:
        log.info("%s: made before its input(s) %s were remade: redoing it", marker_path, ", ".join(remade))
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
    The options object must have ``out`` (the output folder or file; :meth:`target` otherwise) and ``force``.
    """

    name: ClassVar[str]
    unhashed: ClassVar[tuple[str, ...]] = ("out", "force")  # options that do not change what is written
    outputs: ClassVar[tuple[str, ...]] = ()  # files / folders ``run`` must write (checked before the marker)
    digest_outputs: ClassVar[tuple[str, ...]] = ()  # files whose bytes join the digest downstream stages record
    in_place: ClassVar[bool] = False  # write into ``out`` directly (a stage that resumes part by part)
    output_file: ClassVar[bool] = False  # ``out`` is one file; its marker is :func:`file_marker` beside it
    saves_config: ClassVar[bool] = True  # write the resolved options to ``out/config.yaml``

    def resolve(self, cfg: C) -> C:
        """``cfg`` with defaults that depend on other options filled in (what is saved and hashed)."""
        return cfg

    def target(self, cfg: C) -> Path:
        """The output folder (or file, with ``output_file``)."""
        return Path(cfg.out)

    def inputs(self, cfg: C) -> dict[str, str | Path | None]:
        """``{option name: path}`` of the artifacts the stage reads; their digests replace the paths in the
        fingerprint."""
        return {}

    def input_digests(self, cfg: C) -> dict[str, str | None]:
        """``{name: digest}`` of :meth:`inputs` (their markers' digests; override to hash contents instead)."""
        return input_digests(self.inputs(cfg))

    @abstractmethod
    def run(self, cfg: C, out: Path) -> bool | dict | None:
        """Write the outputs into ``out`` (a temporary folder or file unless ``in_place``); return False when the
        work is not complete (an in-place stage asked for some parts only), so no done marker is written, or a
        dict of figures to keep in the marker as ``summary`` (seconds, counts)."""
        raise NotImplementedError

    def options(self, cfg: C) -> dict[str, Any]:
        """Every option but the unhashed ones (what ``config`` in the marker holds)."""
        return {k: v for k, v in vars(cfg).items() if k not in self.unhashed}

    def legacy_view(self, cfg: C) -> Any:
        """What this stage's marker hashed before format 2 (to recognise outputs made then)."""
        return self.options(cfg)

    def legacy_inputs(self, cfg: C) -> dict[str, str | Path | None]:
        """Inputs whose remaking since makes a pre-format-2 marker stale (:func:`is_done`)."""
        return self.inputs(cfg)

    def reusable(self, cfg: C, marker: Marker | None) -> bool:
        """Finished outputs whose marker holds another fingerprint (or none) that still serve ``cfg`` (a baseline
        that stopped on its own within a new time budget); False by default."""
        return False

    def fingerprint(self, cfg: C) -> tuple[str, dict[str, str | None]]:
        """(fingerprint, input digests) of ``cfg``."""
        paths = self.inputs(cfg)
        digests = self.input_digests(cfg)
        own = {k: v for k, v in self.options(cfg).items() if k not in paths}
        return fingerprint(own, digests), digests

    def marker_path(self, cfg: C) -> Path:
        out = self.target(cfg)
        return file_marker(out) if self.output_file else out / MARKER_FILE


def _check_target(stage: Stage, out: Path) -> None:
    """Refuse a target whose replacement would lose something that is not this stage's own earlier output: a file
    where the stage writes a folder (or a folder where it writes a file), or a non-empty folder without this
    stage's marker (``--out RUN`` instead of ``RUN/data``, a folder of the user's own files, another stage's
    output)."""
    from sidrec.errors import InputError

    if stage.output_file:
        from sidrec.artifacts import check_output_file

        check_output_file(out)
        return
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"is a file; {stage.name} writes a folder here: give another path or remove the file", out)
    if stage.in_place or not any(out.iterdir()):
        return
    found = read_marker(out / MARKER_FILE)
    owner = found.stage if found is not None else None
    legacy = found is None and (out / "config.yaml").is_file()  # written before the markers named their stage
    if legacy or (found is not None and owner in ("", stage.name)):
        return
    what = f"the output of stage {owner!r}" if owner else f"files that no sidrec stage wrote (no {MARKER_FILE})"
    raise InputError(f"holds {what}; {stage.name} would replace the whole folder: give a new folder, or remove "
                     "this one yourself", out)


def run_stage(stage: Stage[C], cfg: C) -> Path:
    """Run ``stage`` with ``cfg`` into its target (``cfg.out``) unless that already holds the outputs of the same
    options and inputs (``cfg.force`` redoes them); returns the target."""
    from sidrec.errors import ConfigError

    cfg = stage.resolve(cfg)
    problems = cfg.problems() if hasattr(cfg, "problems") else []
    if problems:
        raise ConfigError(problems)
    out = stage.target(cfg)
    _check_target(stage, out)
    marker = stage.marker_path(cfg)
    fingerprint_, digests = stage.fingerprint(cfg)
    if not cfg.force and (
            is_done(marker, fingerprint_, legacy_view=lambda: stage.legacy_view(cfg), inputs=stage.legacy_inputs(cfg))
            or stage.reusable(cfg, read_marker(marker))):
        log.info("%s: %s holds the outputs of the same options and inputs: skipped (--force to redo)",
                 stage.name, out)
        return out

    def finish(folder: Path, result: bool | dict | None) -> None:
        missing = [name for name in stage.outputs if not (folder / name).exists()]
        if missing:  # a bug in the stage, not a user error
            raise AssertionError(f"stage {stage.name} did not write {missing} into {folder}")
        if stage.saves_config:
            write_yaml(folder / "config.yaml", cfg)
        summary = {"summary": result} if isinstance(result, dict) else {}
        write_marker(folder / MARKER_FILE, stage.name, fingerprint_, inputs=digests,
                     outputs={name: file_digest(folder / name) for name in stage.digest_outputs},
                     config=stage.options(cfg), **summary)

    if stage.output_file:
        marker.unlink(missing_ok=True)  # the file is about to change: never leave it marked with another run
        with atomic_path(out) as tmp:
            result = stage.run(cfg, tmp)
        summary = {"summary": result} if isinstance(result, dict) else {}
        write_marker(marker, stage.name, fingerprint_, inputs=digests, outputs={out.name: file_digest(out)},
                     config=stage.options(cfg), **summary)
    elif stage.in_place:
        clear_marker(out)
        made = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        try:
            result = stage.run(cfg, out)
        except BaseException:
            if made:  # a failed first attempt leaves no empty folders behind
                for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    if not any(folder.iterdir()):
                        folder.rmdir()
                if not any(out.iterdir()):
                    out.rmdir()
            raise
        if result is not False:
            finish(out, result)
    else:
        with atomic_dir(out) as tmp:
            finish(tmp, stage.run(cfg, tmp))
    return out


# ---- stages that work part by part ------------------------------------------------------------------------------
@dataclass
class Part:
    """One part of a stage that works part by part: its fingerprint (the options it reads and the fingerprints of
    the parts it reads), the files it writes into the stage folder, and the function that writes them."""

    name: str
    fingerprint: str
    files: tuple[str, ...]
    run: Callable[[], Any]


def run_parts(stage: str, folder: str | Path, parts: Sequence[Part], wanted: Collection[str],
              force: bool = False) -> bool:
    """Run the ``wanted`` parts, in order, whose files are missing or whose ledger entry (``folder/_parts.json``)
    holds another fingerprint (every wanted part with ``force``). Each part is forgotten before it starts and
    recorded (a format-2 marker entry) once its files are written, so a killed run resumes with the first
    unfinished part. Returns True when every part of ``parts`` is done.

    A ledger from before format 2 (``{part: fingerprint}``) is read as it was written.
    """
    folder = Path(folder)
    ledger_path = folder / PARTS_FILE

    def ledger() -> dict[str, Marker]:
        try:
            found = json.loads(ledger_path.read_text())
        except (OSError, ValueError):
            return {}
        entries = found.get("parts", {}) if found.get("format") == MARKER_FORMAT else found
        out = {}
        for name, entry in entries.items():
            if isinstance(entry, str):  # before format 2: the part's fingerprint
                out[name] = Marker(f"{stage}/{name}", entry, entry)
            elif (marker := parse_marker(entry)) is not None:
                out[name] = marker
        return out

    def write(entries: dict[str, Marker]) -> None:
        write_json(ledger_path, {"format": MARKER_FORMAT, "stage": stage,
                                 "parts": {name: dict(m.fields) or marker_fields(m.stage, m.fingerprint or "")
                                           for name, m in entries.items()}})

    def done(part: Part) -> bool:
        entry = ledger().get(part.name)
        return (entry is not None and entry.fingerprint == part.fingerprint
                and all((folder / f).exists() for f in part.files))

    folder.mkdir(parents=True, exist_ok=True)
    for part in parts:
        if part.name not in wanted:
            continue
        if not force and done(part):
            log.info("%s/%s: up to date, skipped", stage, part.name)
            continue
        entries = ledger()
        if entries.pop(part.name, None) is not None:
            write(entries)
        part.run()
        missing = [f for f in part.files if not (folder / f).exists()]
        if missing:  # a bug in the stage, not a user error
            raise AssertionError(f"part {stage}/{part.name} did not write {missing} into {folder}")
        entries = ledger()
        entries[part.name] = parse_marker(marker_fields(
            f"{stage}/{part.name}", part.fingerprint, outputs={f: file_digest(folder / f) for f in part.files
                                                              if (folder / f).is_file()}))
        write(entries)
    return all(done(part) for part in parts)
