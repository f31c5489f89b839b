"""The stage runner (sidrec/stage.py): skip, redo on a changed option or a changed input, atomic output folder,
the format-2 marker, and run folders made before it (old markers) staying done."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidrec.artifacts import config_hash
from sidrec.stage import MARKER_FILE, Stage, read_marker, run_stage


@dataclass
class ValueConfig:
    out: str
    value: str = "a"
    force: bool = False


@dataclass
class CopyConfig:
    out: str
    source: str
    suffix: str = "!"
    force: bool = False


class ValueStage(Stage[ValueConfig]):
    """Writes ``value.txt``; its bytes join the digest downstream stages record."""

    name = "value"
    outputs = ("value.txt",)
    digest_outputs = ("value.txt",)

    def __init__(self):
        self.runs = 0

    def run(self, cfg: ValueConfig, out: Path) -> None:
        self.runs += 1
        (out / "value.txt").write_text(cfg.value)


class CopyStage(Stage[CopyConfig]):
    """Reads ``source/value.txt`` (an input artifact) and writes it with a suffix."""

    name = "copy"
    outputs = ("copy.txt",)

    def __init__(self, fail: bool = False):
        self.runs = 0
        self.fail = fail

    def inputs(self, cfg: CopyConfig) -> dict:
        return {"source": cfg.source}

    def run(self, cfg: CopyConfig, out: Path) -> None:
        self.runs += 1
        (out / "copy.txt").write_text((Path(cfg.source) / "value.txt").read_text() + cfg.suffix)
        if self.fail:
            raise RuntimeError("killed half-way")


def test_runner_skips_the_same_work_and_redoes_on_an_option_or_an_upstream_change(tmp_path):
    up, down = ValueStage(), CopyStage()
    up_cfg = ValueConfig(out=str(tmp_path / "up"), value="a")
    down_cfg = CopyConfig(out=str(tmp_path / "down"), source=str(tmp_path / "up"))
    run_stage(up, up_cfg)
    run_stage(down, down_cfg)
    assert (tmp_path / "down" / "copy.txt").read_text() == "a!"
    marker = read_marker(tmp_path / "down" / MARKER_FILE)
    assert marker.current and marker.stage == "copy"
    assert marker.fields["inputs"] == {"source": read_marker(tmp_path / "up" / MARKER_FILE).digest}
    assert marker.fields["config"] == {"source": str(tmp_path / "up"), "suffix": "!"}
    assert (tmp_path / "down" / "config.yaml").is_file()  # the resolved config travels with the outputs

    run_stage(up, up_cfg)
    run_stage(down, down_cfg)
    assert (up.runs, down.runs) == (1, 1)  # both skipped

    run_stage(down, CopyConfig(out=down_cfg.out, source=down_cfg.source, suffix="?"))  # its own option changed
    assert down.runs == 2 and (tmp_path / "down" / "copy.txt").read_text() == "a?"
    run_stage(down, down_cfg)
    assert down.runs == 3

    # Upstream redone with the same bytes: nothing downstream changes, so nothing is redone.
    run_stage(up, ValueConfig(out=up_cfg.out, value="a", force=True))
    run_stage(down, down_cfg)
    assert (up.runs, down.runs) == (2, 3)
    # Upstream remade with other contents, downstream options unchanged: downstream is redone, not skipped.
    run_stage(up, ValueConfig(out=up_cfg.out, value="b"))
    run_stage(down, down_cfg)
    assert down.runs == 4 and (tmp_path / "down" / "copy.txt").read_text() == "b!"


def test_the_same_input_through_another_path_is_the_same_input(tmp_path):
    """An input counts by its marker's digest, not its path (a benchmark arm reaches the main run's folders
    through symlinks)."""
    up, down = ValueStage(), CopyStage()
    run_stage(up, ValueConfig(out=str(tmp_path / "up")))
    (tmp_path / "link").symlink_to(tmp_path / "up", target_is_directory=True)
    run_stage(down, CopyConfig(out=str(tmp_path / "down"), source=str(tmp_path / "up")))
    run_stage(down, CopyConfig(out=str(tmp_path / "down"), source=str(tmp_path / "link")))
    assert down.runs == 1


def test_a_failed_run_leaves_the_earlier_outputs_and_marker_untouched(tmp_path):
    run_stage(ValueStage(), ValueConfig(out=str(tmp_path / "up")))
    cfg = CopyConfig(out=str(tmp_path / "down"), source=str(tmp_path / "up"))
    run_stage(CopyStage(), cfg)
    before = (tmp_path / "down" / MARKER_FILE).read_bytes()
    with pytest.raises(RuntimeError, match="half-way"):
        run_stage(CopyStage(fail=True), CopyConfig(out=cfg.out, source=cfg.source, suffix="?"))
    assert (tmp_path / "down" / "copy.txt").read_text() == "a!"
    assert (tmp_path / "down" / MARKER_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["down", "up"]  # no temporary folder left behind


def test_a_stage_that_forgets_an_output_is_not_marked_done(tmp_path):
    class Forgetful(ValueStage):
        def run(self, cfg, out):
            pass

    with pytest.raises(AssertionError, match="value.txt"):
        run_stage(Forgetful(), ValueConfig(out=str(tmp_path / "up")))
    assert not (tmp_path / "up").exists()


def _legacy_marker(folder: Path, stage: str, view: dict) -> None:
    """A marker as sidrec wrote them before format 2."""
    (folder / MARKER_FILE).write_text(json.dumps({"stage": stage, "config_hash": config_hash(view),
                                                  "config": view}))


def test_old_markers_stay_done_until_an_input_is_remade(tmp_path):
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "value.txt").write_text("a")
    _legacy_marker(tmp_path / "up", "value", {"value": "a"})
    (tmp_path / "down").mkdir()
    (tmp_path / "down" / "copy.txt").write_text("a!")
    cfg = CopyConfig(out=str(tmp_path / "down"), source=str(tmp_path / "up"))
    _legacy_marker(tmp_path / "down", "copy", {"source": cfg.source, "suffix": "!"})
    up, down = ValueStage(), CopyStage()
    run_stage(up, ValueConfig(out=str(tmp_path / "up")))
    run_stage(down, cfg)
    assert (up.runs, down.runs) == (0, 0)
    run_stage(down, CopyConfig(out=cfg.out, source=cfg.source, suffix="?"))  # another option: redone
    assert down.runs == 1
    _legacy_marker(tmp_path / "down", "copy", {"source": cfg.source, "suffix": "!"})
    run_stage(up, ValueConfig(out=str(tmp_path / "up"), force=True))  # upstream remade (format 2)
    run_stage(down, cfg)
    assert down.runs == 2 and read_marker(tmp_path / "down" / MARKER_FILE).current


# The marker runs/demo/data/_stage.json holds, as `sidrec data prepare --source synthetic` wrote it before format 2.
OLD_PREPARE_MARKER = {
    "stage": "prepare", "config_hash": "058541056dace038",
    "config": {"source": "synthetic", "path": None, "dataset": None, "reviews": None, "meta": None, "items": None,
               "split": "loo", "k_core": 0, "max_history": 20, "valid_frac": 0.1, "test_frac": 0.1, "seed": 0,
               "n_users": 1000, "n_items": 300, "lenient": False},
}


def test_a_dataset_prepared_before_format_2_is_not_prepared_again(tmp_path):
    from sidrec.data import PrepareConfig, prepare

    out = tmp_path / "data"
    out.mkdir()
    (out / MARKER_FILE).write_text(json.dumps(OLD_PREPARE_MARKER, indent=2))
    (out / "sentinel").write_text("made by the old code")
    prepare(PrepareConfig(source="synthetic", out=str(out)))
    assert (out / "sentinel").is_file() and not (out / "stats.json").exists()
    assert json.loads((out / MARKER_FILE).read_text()) == OLD_PREPARE_MARKER  # read, never rewritten

    prepare(PrepareConfig(source="synthetic", out=str(out), n_users=50, n_items=20))  # another option: redone
    assert not (out / "sentinel").exists() and read_marker(out / MARKER_FILE).current


def test_a_pipeline_run_marked_before_format_2_is_skipped(tmp_path):
    from sidrec.config import resolve
    from sidrec.pipeline import PipelineConfig, run_pipeline, stage_hashes

    cfg = resolve(PipelineConfig, overrides={"run_dir": str(tmp_path / "run"),
                                             "data": {"source": "synthetic", "n_users": 50, "n_items": 20}})
    markers = tmp_path / "run" / ".pipeline"
    markers.mkdir(parents=True)
    old = {"stage": "prepare", "hash": stage_hashes(cfg)["prepare"], "seconds": 1.5}
    (markers / "prepare.json").write_text(json.dumps(old))
    run_pipeline(cfg, until="prepare")
    assert not (tmp_path / "run" / "data").exists()  # skipped: nothing prepared
    assert json.loads((markers / "prepare.json").read_text()) == old


def test_a_training_stage_is_redone_after_its_aligned_model_is_remade(tmp_path):
    """SFT and GRPO keep the same record (sidrec/train/run.py): options plus their inputs' digests."""
    from sidrec.train.run import TrainingRecord

    run_stage(ValueStage(), ValueConfig(out=str(tmp_path / "align")))
    view = {"sft": {"learning_rate": 1e-3}}

    def record() -> TrainingRecord:
        return TrainingRecord("sft", tmp_path / "sft", view, {"align": tmp_path / "align", "model": None})

    (tmp_path / "sft" / "final").mkdir(parents=True)
    assert not record().done()
    record().mark_done()
    assert record().done()
    marker = read_marker(tmp_path / "sft" / MARKER_FILE)
    assert marker.fields["config"] == view and marker.fields["inputs"]["model"] is None
    run_stage(ValueStage(), ValueConfig(out=str(tmp_path / "align"), value="b"))  # align remade
    assert not record().done()
    # A trainer's marker from before format 2 (its options alone) still counts while align is as it was.
    run_stage(ValueStage(), ValueConfig(out=str(tmp_path / "align2")))
    _legacy_marker(tmp_path / "align2", "value", {"value": "a"})
    _legacy_marker(tmp_path / "sft", "sft", view)
    assert TrainingRecord("sft", tmp_path / "sft", view, {"align": tmp_path / "align2"}).done()


def test_one_weight_dtype_rule_for_both_trainers():
    from types import SimpleNamespace

    import torch

    from sidrec.train.run import model_dtype

    gpu = torch.cuda.is_available()
    assert model_dtype(SimpleNamespace(bf16=False, fp16=True)) == torch.float32  # fp16 AMP: float32 masters
    assert model_dtype(SimpleNamespace(bf16=True, fp16=False)) == (torch.bfloat16 if gpu else torch.float32)


def test_runner_never_replaces_what_it_did_not_write(tmp_path):
    """A folder of the user's own files, another stage's output, or a file where a folder goes is refused with its
    path named and left as it was; the stage's own earlier output is replaced (``force``)."""
    from sidrec.errors import InputError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match=r"mine: holds files that no sidrec stage wrote"):
        run_stage(ValueStage(), ValueConfig(out=str(mine)))
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    run_stage(ValueStage(), ValueConfig(out=str(tmp_path / "up")))
    with pytest.raises(InputError, match=r"up: holds the output of stage 'value'; copy would replace"):
        run_stage(CopyStage(), CopyConfig(out=str(tmp_path / "up"), source=str(tmp_path / "up")))
    assert (tmp_path / "up" / "value.txt").read_text() == "a"

    (tmp_path / "file.txt").write_text("keep")
    with pytest.raises(InputError, match=r"file.txt: is a file"):
        run_stage(ValueStage(), ValueConfig(out=str(tmp_path / "file.txt")))
    assert (tmp_path / "file.txt").read_text() == "keep"

    (tmp_path / "empty").mkdir()
    run_stage(ValueStage(), ValueConfig(out=str(tmp_path / "empty"), value="b"))
    run_stage(ValueStage(), ValueConfig(out=str(tmp_path / "empty"), value="c", force=True))
    assert (tmp_path / "empty" / "value.txt").read_text() == "c"


def test_model_sources_that_are_paths_must_be_model_folders(tmp_path):
    """A local model path that is missing, empty (no config.json) or a file is an InputError naming the option; a
    hub id ('org/name') is left to from_pretrained."""
    from sidrec.artifacts import check_model_source
    from sidrec.errors import InputError

    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("")
    for name, expect in ((tmp_path / "missing", "model folder not found"),
                         (tmp_path / "empty", r"not a model folder \(no config.json\)"),
                         (tmp_path / "file", "a file, not a model folder"), ("./nowhere", "model folder not found")):
        with pytest.raises(InputError, match=f"--model: {expect}"):
            check_model_source(name)
    (tmp_path / "empty" / "config.json").write_text("{}")
    check_model_source(tmp_path / "empty")
    check_model_source("Qwen/Qwen2.5-0.5B-Instruct")


def test_a_failed_first_attempt_of_an_in_place_stage_leaves_no_empty_folders(tmp_path):
    class Failing(Stage[ValueConfig]):
        name = "failing"
        in_place = True

        def run(self, cfg: ValueConfig, out: Path) -> None:
            (out / "ck" / "inner").mkdir(parents=True)
            raise RuntimeError("stopped")

    with pytest.raises(RuntimeError):
        run_stage(Failing(), ValueConfig(out=str(tmp_path / "bl")))
    assert not (tmp_path / "bl").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "log.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        run_stage(Failing(), ValueConfig(out=str(tmp_path / "kept")))
    assert (tmp_path / "kept" / "log.txt").read_text() == "mine"  # a folder that was there is left as it was
