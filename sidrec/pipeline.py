"""``sidrec pipeline``: prepare -> semantics -> quantize -> align -> sft -> grpo -> decode -> baselines ->
report, from one YAML file.

Each stage reads its section of the config, writes under the run directory, and records a marker
``RUN/.pipeline/<stage>.json`` (:func:`sidrec.stage.write_marker`, the one marker format) whose fingerprint is the
hash of its section *and of every upstream stage's hash*. A stage whose
marker matches is skipped on re-run (resume); a changed option reruns that stage and everything downstream. The
marker also records the digests of the run folders the stage read (``STAGE_INPUTS``): one remade outside the
pipeline (a standalone ``sidrec quantize`` into ``RUN/sids``) redoes the stages that read it.
``--from`` / ``--until`` select a range and ``--force`` redoes the selected stages. Training stages resume from
their last complete checkpoint when they were interrupted (SIGKILL included), so a killed run continues where it
stopped and ends where an unkilled one does (README: Reproducibility). Before a stage is redone from scratch its
earlier outputs' done-markers and resume states are forgotten (:func:`forget_outputs`, recorded in the started
marker as ``clean``), so no attempt killed half-way leaves them counted as done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click

from sidrec.artifacts import config_hash, write_yaml
from sidrec.config import opt, resolve
from sidrec.errors import ConfigError, SidrecError
from sidrec.stage import (
    MARKER_FILE,
    PARTS_FILE,
    Marker,
    file_marker,
    input_digests,
    read_marker,
    write_marker,
)
from sidrec.train.options import BUDGET_OPTIONS

log = logging.getLogger("sidrec.pipeline")

STAGES: tuple[str, ...] = ("prepare", "semantics", "quantize", "align", "sft", "grpo", "decode", "baselines",
                           "report")


@dataclass
class PipelineConfig:
    """The whole run: one section per stage (each section holds that stage's own options)."""

    run_dir: str = opt("runs/demo", "run directory; every artifact goes below it")
    seed: int = opt(0, "global seed passed to every stage that has one")
    data: dict = opt({}, "options of `sidrec data prepare` (minus --out)")
    semantics: dict = opt({}, "options of `sidrec semantics all` (minus data/out)")
    quantize: dict = opt({}, "options of `sidrec quantize` (minus data/out)")
    model: dict = opt({}, "base model: {base_model: path or hub name} or {tiny: {...}} to build one locally")
    align: dict = opt({}, "options of `sidrec align` (SID tokens, SA-Init, TS-Align data)")
    sft: dict = opt({}, "SFT options: TRL SFTConfig fields plus sidrec's own")
    grpo: dict = opt({}, "GRPO options: TRL GRPOConfig fields plus sidrec's own; {enabled: false} skips it")
    decode: dict = opt({}, "options of `sidrec decode` (backend, beams, topk)")
    baselines: list = opt([], "list of baseline option mappings, e.g. [{model: sasrec, fusion: id}]")
    evaluate: dict = opt({}, "evaluation: {split: test}")
    deterministic: bool = opt(False, "torch's deterministic algorithms (GPU kernels); CPU runs are repeatable "
                                     "without it. Not part of any stage's hash")

    def problems(self) -> list[str]:
        p = []
        for i, b in enumerate(self.baselines):
            if not isinstance(b, dict) or "model" not in b:
                p.append(f"baselines[{i}]: expected a mapping with a 'model' key")
        if self.evaluate.get("split", "test") not in ("valid", "test"):
            p.append("evaluate.split: must be valid or test")
        return p


@dataclass
class EvaluateSection:
    """The pipeline's ``evaluate:`` section."""

    split: Literal["valid", "test"] = opt("test", "split the predictions are made for and scored on")


@dataclass
class ModelSection:
    """The pipeline's ``model:`` section: a base model, or a tiny one built locally (``tiny:`` holds options of
    `sidrec model init-tiny`)."""

    base_model: str | None = opt(None, "path or hub name of the base model")
    tiny: dict = opt({}, "options of `sidrec model init-tiny` (minus data/out), used when base_model is unset")


@dataclass
class Run:
    """Paths of one run directory (DESIGN: run directory layout)."""

    cfg: PipelineConfig
    force: bool = False  # the stage being run must redo its work (its options or inputs changed, or --force)

    @property
    def root(self) -> Path:
        return Path(self.cfg.run_dir)

    def __getattr__(self, name: str) -> Path:  # run.data, run.sids, run.sft, ...
        if name in ("data", "semantics", "sids", "align", "sft", "grpo", "predictions", "metrics", "plots", "model"):
            return self.root / name
        raise AttributeError(name)

    @property
    def split(self) -> str:
        return self.cfg.evaluate.get("split", "test")

    @property
    def generative_model(self) -> Path:
        """The checkpoint decoding uses: GRPO's when it ran, else SFT's."""
        grpo_final = self.grpo / "final"
        return grpo_final if self.cfg.grpo.get("enabled", True) and grpo_final.is_dir() else self.sft / "final"


def stage_prepare(run: Run) -> None:
    from sidrec.data.prepare import PrepareConfig, prepare

    section = {"seed": run.cfg.seed, **run.cfg.data, "out": str(run.data), "force": run.force}
    prepare(resolve(PrepareConfig, overrides=section))


def stage_semantics(run: Run) -> None:
    from sidrec.semantics import SemanticsConfig, run_semantics

    run_semantics(resolve(SemanticsConfig, overrides={**run.cfg.semantics, "data": str(run.data),
                                                      "out": str(run.semantics), "force": run.force}))


def stage_quantize(run: Run) -> None:
    from sidrec.quantize import QuantizeConfig, run_quantize

    run_quantize(resolve(QuantizeConfig, overrides={"seed": run.cfg.seed, **run.cfg.quantize,
                                                    "semantics": str(run.semantics), "data": str(run.data),
                                                    "out": str(run.sids), "force": run.force}))


def stage_align(run: Run) -> None:
    from sidrec.align import AlignConfig, run_align

    run_align(resolve(AlignConfig, overrides={**run.cfg.align, **_model_source(run), "data": str(run.data),
                                              "sids": str(run.sids), "semantics": str(run.semantics),
                                              "out": str(run.align), "force": run.force}))


def _model_source(run: Run) -> dict[str, Any]:
    """The base model for alignment: a hub name / path, or a tiny model built locally from the catalogue."""
    base = run.cfg.model.get("base_model")
    if base:
        return {"model": base}
    from sidrec.align import init_tiny_model

    # init_tiny_model skips only when the folder was built with the same options (its done marker), so a changed
    # `model.tiny` section rebuilds the base model instead of reusing the old one.
    out = init_tiny_model(run.data, run.root / "model" / "tiny", seed=run.cfg.seed, **run.cfg.model.get("tiny", {}))
    return {"model": str(out)}


def stage_sft(run: Run) -> None:
    from sidrec.train.sft import run_sft_from_dict

    run_sft_from_dict({"seed": run.cfg.seed, **run.cfg.sft, "force": run.force}, align_dir=run.align,
                      output_dir=run.sft)


def stage_grpo(run: Run) -> None:
    if not run.cfg.grpo.get("enabled", True):
        log.info("grpo disabled in the config")
        return
    from sidrec.train.grpo import run_grpo_from_dict

    section = {k: v for k, v in run.cfg.grpo.items() if k != "enabled"}
    run_grpo_from_dict({"seed": run.cfg.seed, **section, "force": run.force}, model_dir=run.sft / "final", align_dir=run.align,
                       data_dir=run.data, sids_dir=run.sids, output_dir=run.grpo)


def stage_decode(run: Run) -> None:
    from sidrec.decode import DecodeConfig, run_decode

    name = "grpo" if run.generative_model.parent == run.grpo else "sft"
    align_stats = run.align / "stats.json"
    max_history = json.loads(align_stats.read_text()).get("max_history") if align_stats.is_file() else None
    run_decode(resolve(DecodeConfig, overrides={"max_history": max_history, **run.cfg.decode,
                                                "model": str(run.generative_model),
                                                "sids": str(run.sids), "data": str(run.data), "split": run.split,
                                                "out": str(run.predictions / f"{name}.jsonl"),
                                                "force": run.force}))


def stage_baselines(run: Run) -> None:
    from sidrec.baselines import BaselineConfig, train_baseline

    for spec in run.cfg.baselines:
        name = _baseline_name(spec)
        options = {k: v for k, v in spec.items() if k != "name"}
        train_baseline(resolve(BaselineConfig, overrides={"seed": run.cfg.seed, **options, "data": str(run.data),
                                                          "semantics": str(run.semantics), "split": run.split,
                                                          "out": str(run.predictions / f"{name}.jsonl"),
                                                          "checkpoint_dir": str(run.root / "baselines" / name),
                                                          "force": run.force}))


def stage_report(run: Run) -> None:
    from sidrec.eval.report import write_report

    baselines = [_baseline_name(b) for b in run.cfg.baselines]
    out = write_report(run.root, run.data, run.split, generative=("sft", "grpo"), baselines=baselines)
    log.info("report: %s", out)


STAGE_FUNCTIONS: dict[str, Callable[[Run], None]] = {
    "prepare": stage_prepare, "semantics": stage_semantics, "quantize": stage_quantize, "align": stage_align,
    "sft": stage_sft, "grpo": stage_grpo, "decode": stage_decode, "baselines": stage_baselines,
    "report": stage_report,
}
# Which config sections each stage's output depends on directly (upstream stages are chained by hash).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "prepare": ("data", "seed"), "semantics": ("semantics",), "quantize": ("quantize", "seed"),
    "align": ("align", "model", "seed"), "sft": ("sft", "seed"), "grpo": ("grpo", "seed"), "decode": ("decode",),
    "baselines": ("baselines", "seed", "evaluate"), "report": ("evaluate",),
}
# The run folders each stage reads. Their markers' digests are recorded with the stage's done marker, so outputs
# remade outside this pipeline (new SIDs from a standalone `sidrec quantize` into RUN/sids) redo what read them,
# even though every section of the config is unchanged.
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "prepare": (), "semantics": ("data",), "quantize": ("data", "semantics"), "align": ("data", "semantics", "sids"),
    "sft": ("align",), "grpo": ("data", "sids", "sft"), "decode": ("data", "sids", "sft", "grpo"),
    "baselines": ("data", "semantics"), "report": (),
}
UPSTREAM: dict[str, tuple[str, ...]] = {
    "prepare": (), "semantics": ("prepare",), "quantize": ("semantics",), "align": ("quantize",),
    "sft": ("align",), "grpo": ("sft",), "decode": ("grpo",), "baselines": ("semantics",),
    "report": ("decode", "baselines"),
}


# Sections whose ``seed`` defaults to the run's: an explicit seed equal to it hashes as the default does.
SEEDED_SECTIONS = ("data", "quantize", "sft", "grpo")

# Options that decide where a run stops, not what it trains: a larger time budget continues the same run.
VOLATILE_OPTIONS = BUDGET_OPTIONS  # the trainers' own resume fingerprint leaves out the same options


def _without_volatile(section: Any) -> Any:
    if isinstance(section, dict):
        return {k: v for k, v in section.items() if k not in VOLATILE_OPTIONS}
    return section


def _with_file_contents(section: Any) -> Any:
    """A section whose ``config_file`` is replaced by the file's path and content hash: editing the file changes
    the stage's hash (by path alone, an edited file would leave the stage marked done)."""
    if isinstance(section, dict) and section.get("config_file"):
        path = Path(section["config_file"])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None
        return {**section, "config_file": {"path": str(path), "sha256": digest}}
    return section


def stage_hashes(cfg: PipelineConfig) -> dict[str, str]:
    """Hash per stage over its own sections (time budgets left out, config files by content) and its upstream
    stages' hashes."""
    values = {k: _with_file_contents(_without_volatile(v)) for k, v in dataclasses.asdict(cfg).items()
              if k != "deterministic"}
    for name, section in values.items():
        if isinstance(section, dict) and name in SEEDED_SECTIONS and section.get("seed") == cfg.seed:
            values[name] = {k: v for k, v in section.items() if k != "seed"}  # the default written out
    if isinstance(values.get("quantize"), dict):  # where the CF model trains, not what the SIDs are
        values["quantize"] = {k: v for k, v in values["quantize"].items() if k != "collaborative_dir"}
    hashes: dict[str, str] = {}
    for stage in STAGES:
        hashes[stage] = config_hash({"sections": {s: values[s] for s in STAGE_SECTIONS[stage]},
                                     "upstream": [hashes[u] for u in UPSTREAM[stage]]})
    return hashes


def resolve_sections(cfg: PipelineConfig) -> dict[str, Any]:
    """Every section of ``cfg`` resolved into its stage's options, with the run directory's paths filled in.

    Nothing is read or written but the ``config_file`` an sft / grpo section names. Raises one
    :class:`ConfigError` listing every unknown key and bad value of every section, each prefixed by its section
    (``decode: unknown option 'beem' (did you mean 'beams'?)``), so a mistake in the last section stops the run
    before the first one starts. Returns ``{section: resolved options}``; sft and grpo map to
    ``{"sidrec": <their own options>, "trainer": <TRL config as a dict>}``.
    """
    from sidrec.align import AlignConfig, TinyModelConfig
    from sidrec.baselines import BaselineConfig
    from sidrec.data.prepare import PrepareConfig
    from sidrec.decode import DecodeConfig
    from sidrec.quantize import QuantizeConfig
    from sidrec.semantics import SemanticsConfig

    run = Run(cfg)
    resolved: dict[str, Any] = {}
    problems: list[str] = []

    def attempt(section: str, build: Callable[[], Any]) -> None:
        try:
            resolved[section] = build()
        except ConfigError as e:
            problems.extend(f"{section}: {p}" for p in e.problems)

    split = cfg.evaluate.get("split", "test")
    attempt("data", lambda: resolve(PrepareConfig, overrides={"seed": cfg.seed, **cfg.data, "out": str(run.data)}))
    attempt("semantics", lambda: resolve(SemanticsConfig, overrides={**cfg.semantics, "data": str(run.data),
                                                                     "out": str(run.semantics)}))
    attempt("quantize", lambda: resolve(QuantizeConfig, overrides={
        "seed": cfg.seed, **cfg.quantize, "semantics": str(run.semantics), "data": str(run.data),
        "out": str(run.sids)}))
    attempt("model", lambda: resolve(ModelSection, overrides=cfg.model))
    if "model" in resolved and not resolved["model"].base_model:
        attempt("model.tiny", lambda: resolve(TinyModelConfig, overrides={
            "seed": cfg.seed, **resolved["model"].tiny, "data": str(run.data), "out": str(run.model / "tiny")}))
    attempt("align", lambda: resolve(AlignConfig, overrides={
        **cfg.align, "model": str(run.model), "data": str(run.data), "sids": str(run.sids),
        "semantics": str(run.semantics), "out": str(run.align)}))
    problems += _trainer_section_problems(cfg, run, resolved)
    attempt("decode", lambda: resolve(DecodeConfig, overrides={
        **cfg.decode, "model": str(run.sft / "final"), "sids": str(run.sids), "data": str(run.data),
        "split": split, "out": str(run.predictions / "model.jsonl")}))
    resolved["baselines"] = []
    for i, spec in enumerate(cfg.baselines):
        if not isinstance(spec, dict):
            problems.append(f"baselines[{i}]: expected a mapping of options, got {spec!r}")
            continue
        name = _baseline_name(spec) if "model" in spec else f"baselines[{i}]"
        options = {k: v for k, v in spec.items() if k != "name"}
        try:
            resolved["baselines"].append({"name": name, **dataclasses.asdict(resolve(BaselineConfig, overrides={
                "seed": cfg.seed, **options, "data": str(run.data), "semantics": str(run.semantics),
                "split": split, "out": str(run.predictions / f"{name}.jsonl"),
                "checkpoint_dir": str(run.root / "baselines" / name)}))})
        except ConfigError as e:
            problems.extend(f"baselines[{i}]: {p}" for p in e.problems)
    attempt("evaluate", lambda: resolve(EvaluateSection, overrides=cfg.evaluate))
    if problems:
        raise ConfigError(problems)
    return resolved


def _trainer_section_problems(cfg: PipelineConfig, run: Run, resolved: dict[str, Any]) -> list[str]:
    """Resolve the sft and grpo sections through TRL's parser (as their stages will); their problems, prefixed."""
    from sidrec.train import options as options_mod
    from sidrec.train.grpo import make_parser as grpo_parser
    from sidrec.train.sft import make_parser as sft_parser

    problems: list[str] = []
    grpo = dict(cfg.grpo)
    enabled = grpo.pop("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"grpo: enabled: expected true/false, got {enabled!r}")
    sections = {
        "sft": (sft_parser, dict(cfg.sft), {"align_dir": str(run.align), "output_dir": str(run.sft)}),
        "grpo": (grpo_parser, grpo, {"sft_model": str(run.sft / "final"), "data": str(run.data),
                                     "sids": str(run.sids), "output_dir": str(run.grpo)}),
    }
    for section, (parser, options, fixed) in sections.items():
        options.setdefault("seed", cfg.seed)
        try:
            args, trainer = options_mod.parse_section(parser(), options, fixed, section)
        except ConfigError as e:
            problems.extend(f"{section}: {p}" for p in e.problems)
            continue
        resolved[section] = {"sidrec": dataclasses.asdict(args), "trainer": trainer.to_dict()}
        if section == "grpo":
            resolved[section]["enabled"] = enabled
    return problems


def run_pipeline(cfg: PipelineConfig, start: str | None = None, until: str | None = None,
                 force: bool = False) -> Path:
    """Run the stages from ``start`` to ``until`` (inclusive), skipping finished ones unless forced.

    Every section is resolved first (:func:`resolve_sections`): a bad option anywhere stops the run before any
    folder is made. The resolved options are saved as ``RUN/resolved.yaml`` beside the raw ``RUN/config.yaml``.
    """
    resolved = resolve_sections(cfg)
    run = Run(cfg)
    run.root.mkdir(parents=True, exist_ok=True)
    _log_to_file(run.root / "pipeline.log")
    if cfg.deterministic:
        from sidrec.determinism import use_deterministic_algorithms

        use_deterministic_algorithms()
    write_yaml(run.root / "config.yaml", cfg)
    write_yaml(run.root / "resolved.yaml", resolved)
    names = list(STAGES)
    lo = names.index(start) if start else 0
    hi = names.index(until) if until else len(names) - 1
    hashes = stage_hashes(cfg)
    markers = run.root / ".pipeline"
    summary = []
    ran: set[str] = set()  # stages run by this invocation: everything downstream of them is redone
    for stage in names[lo: hi + 1]:
        marker, started = markers / f"{stage}.json", markers / f"{stage}.started.json"
        finished, begun = read_marker(marker), read_marker(started)
        finished_hash = finished.fingerprint if finished else None
        started_hash = begun.fingerprint if begun else None
        upstream_ran = any(u in ran for u in UPSTREAM[stage])
        remade = _remade_inputs(run, stage, finished)
        if remade and finished_hash == hashes[stage]:
            log.info("[%s] its input(s) %s were remade since it ran: redoing it", stage, ", ".join(remade))
        if (finished_hash == hashes[stage] and not force and not (start == stage) and not upstream_ran
                and not remade):
            log.info("[%s] up to date, skipped", stage)
            summary.append((stage, "skipped", 0.0))
            continue
        # Redo from scratch when forced or when the outputs there were made from other options / inputs; an
        # interrupted attempt with the same hash resumes instead (SFT and GRPO from their last checkpoint), unless
        # it was killed before it had forgotten the earlier outputs (then it starts from scratch again).
        stale = {finished_hash, started_hash} - {None, hashes[stage]}
        unclean = started_hash == hashes[stage] and not begun.fields.get("clean", True)
        run.force = (force or bool(stale) or upstream_ran or unclean or bool(remade)
                     or (start == stage and finished_hash == hashes[stage]))
        resuming = started_hash == hashes[stage] and finished_hash != hashes[stage] and not run.force
        log.info("[%s] %s", stage, "resuming an interrupted run" if resuming else
                 "running" + (" (from scratch)" if run.force and (finished_hash or started_hash) else ""))
        marker.unlink(missing_ok=True)
        if run.force:
            # Forget every done-marker and resume state of the earlier outputs *before* any work, so that an
            # attempt killed anywhere leaves nothing of them that a later resume could take for finished.
            write_marker(started, stage, hashes[stage], clean=False)
            forget_outputs(run, stage)
        write_marker(started, stage, hashes[stage], clean=True)
        t0 = time.perf_counter()
        try:
            STAGE_FUNCTIONS[stage](run)
        except BaseException as e:  # pipeline.log keeps why the run stopped (the console shows the error itself)
            _file_log_error(run.root / "pipeline.log", f"[{stage}] stopped after {time.perf_counter() - t0:.1f} s",
                            e)
            raise
        elapsed = time.perf_counter() - t0
        run.force = False
        write_marker(marker, stage, hashes[stage], inputs=_input_digests(run, stage), seconds=round(elapsed, 2))
        started.unlink(missing_ok=True)
        ran.add(stage)
        log.info("[%s] done in %.1f s", stage, elapsed)
        summary.append((stage, "ran", elapsed))
    _print_summary(run, summary)
    return run.root


def _input_digests(run: Run, stage: str) -> dict[str, str | None]:
    return input_digests({name: getattr(run, name) for name in STAGE_INPUTS[stage]})


def _remade_inputs(run: Run, stage: str, finished: Marker | None) -> list[str]:
    """The inputs of ``stage`` whose digest differs from the one its done marker recorded (none for a marker
    written before inputs were recorded)."""
    recorded = finished.fields.get("inputs") if finished is not None else None
    if not isinstance(recorded, dict) or not recorded:
        return []
    now = _input_digests(run, stage)
    return [name for name, digest in now.items() if name in recorded and recorded[name] != digest]


def forget_outputs(run: Run, stage: str) -> None:
    """Remove what marks ``stage``'s earlier outputs as finished or resumable (done-markers, sidecars, trainer
    checkpoints, baseline resume states): a from-scratch attempt then redoes all of it, and one killed half-way
    resumes only from what it made itself. The outputs themselves stay until they are replaced (atomically)."""
    baseline_dirs = [run.root / "baselines" / _baseline_name(spec) for spec in run.cfg.baselines]
    doomed: dict[str, list[Path]] = {
        "prepare": [run.data / MARKER_FILE],
        "semantics": [run.semantics / MARKER_FILE, run.semantics / PARTS_FILE],
        "quantize": [run.sids / MARKER_FILE],
        "align": [run.align / MARKER_FILE],
        "sft": [run.sft / MARKER_FILE, *run.sft.glob("checkpoint-*")],
        "grpo": [run.grpo / MARKER_FILE, *run.grpo.glob("checkpoint-*")],
        "decode": [file_marker(run.predictions / f"{name}.jsonl") for name in ("sft", "grpo")],
        "baselines": [d / name for d in baseline_dirs for name in (MARKER_FILE, "summary.json", "last.pt")],
        "report": [],
    }
    for path in doomed[stage]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _baseline_name(spec: dict) -> str:
    return spec.get("name") or "_".join(str(spec[k]) for k in ("model", "fusion") if k in spec)


def _log_to_file(path: Path) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, logging.FileHandler) and h.baseFilename == str(path.resolve()) for h in root.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(min(root.level or logging.INFO, logging.INFO))


def _file_log_error(path: Path, what: str, error: BaseException) -> None:
    """Write ``what`` and ``error`` (with its traceback unless it is a user-facing error) to the run's log file
    only."""
    record = logging.LogRecord(log.name, logging.ERROR, __file__, 0, "%s: %s: %s",
                               (what, type(error).__name__, error), None)
    if not isinstance(error, (SidrecError, KeyboardInterrupt)):
        record.exc_info = (type(error), error, error.__traceback__)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == str(path.resolve()):
            handler.handle(record)


def _print_summary(run: Run, summary: list[tuple[str, str, float]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    table = Table(title=f"pipeline {run.root}")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    for stage, status, seconds in summary:
        table.add_row(stage, status, f"{seconds:.1f}")
    console.print(table)
    comparison = run.root / "report.md"
    if comparison.is_file():
        text = comparison.read_text()
        start = text.find("## Comparison")
        end = text.find("## Head / tail")
        if start >= 0:
            console.print(text[start:end].strip())
        console.print(f"full report: {comparison}")


@click.command("pipeline")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Pipeline YAML (e.g. configs/demo.yaml).")
@click.option("--run-dir", default=None, help="Override run_dir from the config.")
@click.option("--from", "start", type=click.Choice(STAGES), default=None, help="First stage to run (rerun it).")
@click.option("--until", type=click.Choice(STAGES), default=None, help="Last stage to run.")
@click.option("--force", is_flag=True, help="Redo the selected stages even when their outputs are up to date.")
@click.option("--deterministic", is_flag=True, default=None,
              help="torch's deterministic algorithms, for GPU runs (CPU runs repeat without it; see README).")
def pipeline_command(config_path: str, run_dir: str | None, start: str | None, until: str | None,
                     force: bool, deterministic: bool | None) -> None:
    """Run the whole pipeline from one YAML file; finished stages are skipped on re-run.

    \b
    sidrec pipeline --config configs/demo.yaml                 # offline demo, synthetic catalogue
    sidrec pipeline --config configs/industrial.yaml           # ../shared Industrial
    sidrec pipeline --config configs/demo.yaml --from sft      # redo SFT and everything after it
    sidrec pipeline --config configs/industrial.yaml --deterministic  # GPU: deterministic torch kernels
    """
    overrides: dict[str, Any] = {"run_dir": run_dir} if run_dir else {}
    if deterministic:
        overrides["deterministic"] = True
    import yaml

    try:
        raw = yaml.safe_load(Path(config_path).read_text())
    except yaml.YAMLError:
        raw = None  # resolve() reports it, with the file's name
    if isinstance(raw, dict) and not raw.get("run_dir") and not run_dir:  # never a default folder by accident
        raise ConfigError(["run_dir: required (the folder this run writes), in the file or as --run-dir"],
                          config_path)
    cfg = resolve(PipelineConfig, config_path, overrides)
    run_pipeline(cfg, start, until, force)


@click.command("explain")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False), help="Run folder.")
@click.option("--user", "user_id", required=True, help="User id (as in the data).")
@click.option("--split", default="test", show_default=True, help="Split whose sample is explained.")
@click.option("--model", default=None, help="Predictions name (default: grpo, else sft).")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many recommendations to explain.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def explain_command(run_dir, user_id, split, model, top, as_json) -> None:
    """Why these items: SID token keywords and sensory attributes shared with the user's history.

    \b
    sidrec explain --run runs/demo --user U00042
    """

    from sidrec.eval.explain import explain, format_explanation

    result = explain(run_dir, user_id, split, model, top)
    click.echo(json.dumps(result, indent=2) if as_json else format_explanation(result))
