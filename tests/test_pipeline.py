"""The whole pipeline on a tiny synthetic run: end to end, SIGKILL during SFT then resume, cold-start items, and
every shipped YAML config resolving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "seed": 0,
    "data": {"source": "synthetic", "n_users": 120, "n_items": 40},
    "semantics": {"student_epochs": 3, "sensory_dim": 8, "progress": False},
    "quantize": {"levels": 3, "codebook_size": 8, "latent_dim": 16, "hidden_dims": [64], "epochs": 60},
    "model": {"tiny": {"vocab_size": 600, "hidden_size": 64, "num_layers": 1, "intermediate_size": 128,
                       "lm_epochs": 0}},
    "align": {"valid_samples": 20, "max_history": 8},
    "sft": {"num_train_epochs": 10, "per_device_train_batch_size": 16, "learning_rate": 3.0e-3, "max_length": 256,
            "save_strategy": "steps", "save_steps": 8, "save_total_limit": 2, "eval_strategy": "no",
            "val_samples": 0, "logging_steps": 4, "report_to": "none", "disable_tqdm": True},
    "grpo": {"enabled": False},
    "decode": {"beams": 10, "topk": 10},
    "baselines": [{"model": "popularity"}],
}


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": str(ROOT)}


def _pipeline(config: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "sidrec.cli", "pipeline", "--config", str(config), *extra],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _log_since(run: Path, offset: int) -> str:
    return (run / "pipeline.log").read_text()[offset:]


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """A tiny run SIGKILLed while SFT is training (after its second checkpoint), then run again to the end."""
    root = tmp_path_factory.mktemp("pipe")
    run = root / "run"
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "run_dir": str(run)}))
    proc = subprocess.Popen([sys.executable, "-m", "sidrec.cli", "pipeline", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while not (run / "sft" / "checkpoint-16" / "trainer_state.json").is_file():
            assert proc.poll() is None, "the pipeline ended before SFT wrote its second checkpoint"
            assert time.monotonic() < deadline, "no SFT checkpoint within 10 minutes"
            time.sleep(0.2)
        time.sleep(1.0)  # let it train a little past the checkpoint
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (run / "sft" / "final").exists()
    before = {p.name: p.stat().st_mtime_ns for p in (run / "data").iterdir()}
    offset = len((run / "pipeline.log").read_text())
    _pipeline(config)
    return run, config, offset, before


def test_kill_during_sft_then_resume(killed_and_resumed):
    run, _, offset, before = killed_and_resumed
    log = _log_since(run, offset)
    for stage in ("prepare", "semantics", "quantize", "align"):
        assert f"[{stage}] up to date, skipped" in log
    assert "[sft] resuming an interrupted run" in log
    assert "sft: resuming from" in log and "checkpoint-" in log.split("sft: resuming from")[1].splitlines()[0]
    assert {p.name: p.stat().st_mtime_ns for p in (run / "data").iterdir()} == before
    state = json.loads((run / "sft" / "final" / ".." / "log_history.json").resolve().read_text())
    assert state, "SFT wrote no log history"
    metrics = json.loads((run / "metrics" / "sft.json").read_text())
    # Every test user is scored on a 10-item list (decode topk 10): nothing is found past rank 10, and the tiny
    # model does find some targets.
    assert (metrics["n_samples"], metrics["n_missing"], metrics["min_list_length"]) == (120, 0, 10)
    assert 0 < metrics["overall"]["HR@10"] == metrics["overall"]["HR@20"]
    # The run saved its resolved options, and the SFT model names the SID table it was trained with.
    resolved = yaml.safe_load((run / "resolved.yaml").read_text())
    assert resolved["decode"]["beams"] == 10 and resolved["align"]["max_history"] == 8
    described = json.loads((run / "sft" / "final" / "sidrec.json").read_text())
    assert described["stage"] == "sft" and described["max_history"] == 8
    assert (run / "sft" / "final" / described["sid_table"]["path"]).resolve() == (run / "sids" / "sids.json").resolve()
    assert (run / "report.md").is_file() and (run / "plots" / "metrics.png").is_file()


def test_resumed_run_equals_uninterrupted_run(killed_and_resumed):
    """Redo SFT from scratch in the same run (same seed): predictions and metrics equal the resumed run's."""
    run, config, _, _ = killed_and_resumed
    resumed_metrics = json.loads((run / "metrics" / "sft.json").read_text())
    resumed_preds = (run / "predictions" / "sft.jsonl").read_text()
    offset = len((run / "pipeline.log").read_text())
    _pipeline(config, "--from", "sft")
    log = _log_since(run, offset)
    assert "[sft] running (from scratch)" in log and "[decode] running" in log
    assert "[semantics]" not in log
    fresh_metrics = json.loads((run / "metrics" / "sft.json").read_text())
    assert fresh_metrics["overall"] == pytest.approx(resumed_metrics["overall"], abs=1e-9)
    assert [json.loads(line)["items"] for line in (run / "predictions" / "sft.jsonl").read_text().splitlines()] == \
        [json.loads(line)["items"] for line in resumed_preds.splitlines()]


def test_new_sids_from_a_standalone_quantize_redo_what_read_them(killed_and_resumed, tmp_path):
    """The pipeline records the digests of the run folders each stage read: SIDs remade by a standalone
    `sidrec quantize` into RUN/sids (every section of the config unchanged) redo align, not skip it."""
    import shutil

    run, config, _, _ = killed_and_resumed
    copy = tmp_path / "run"
    shutil.copytree(run, copy, symlinks=True, ignore=shutil.ignore_patterns("checkpoint-*"))
    config_copy = tmp_path / "tiny.yaml"
    config_copy.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "run_dir": str(copy)}))
    before = (copy / "sids" / "sids.json").read_text()
    q = TINY["quantize"]
    proc = subprocess.run([sys.executable, "-m", "sidrec.cli", "quantize", "--semantics", str(copy / "semantics"),
                           "--out", str(copy / "sids"), "--levels", str(q["levels"]), "--codebook-size",
                           str(q["codebook_size"]), "--latent-dim", str(q["latent_dim"]), "--hidden-dims", "[64]",
                           "--epochs", str(q["epochs"]), "--seed", "7", "--device", "cpu"],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    new_sids = (copy / "sids" / "sids.json").read_text()
    assert json.loads(new_sids) != json.loads(before)

    offset = len((copy / "pipeline.log").read_text())
    _pipeline(config_copy, "--until", "align")
    log = _log_since(copy, offset)
    assert "[quantize] up to date, skipped" in log
    assert "[align] its input(s) sids were remade since it ran: redoing it" in log
    assert json.loads((copy / "align" / "sids" / "sids.json").read_text()) == json.loads(new_sids)
    offset = len((copy / "pipeline.log").read_text())
    _pipeline(config_copy, "--until", "align")
    assert "[align] up to date, skipped" in _log_since(copy, offset)  # redone once, then done


def test_add_items_makes_new_items_recommendable(killed_and_resumed, tmp_path):
    import shutil

    from sidrec.data import load_data
    from sidrec.serve import add_items, recommend_for_history
    from sidrec.sid import SidTable

    run, _, _, _ = killed_and_resumed
    copy = tmp_path / "run"
    for part in ("data", "semantics", "sids", "align", "sft"):
        shutil.copytree(run / part, copy / part, ignore=shutil.ignore_patterns("checkpoint-*"))
    data = load_data(copy / "data")
    new_file = tmp_path / "new.jsonl"
    rows = [{**data.items[i], "item_id": f"NEW{i}", "title": data.items[i]["title"] + " (new)"} for i in (0, 1, 2)]
    new_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    new = add_items(copy, new_file)
    table = SidTable.load(copy / "sids")
    assert set(new) == {"NEW0", "NEW1", "NEW2"} and table.n_items == 43
    assert len(set(map(tuple, table.codes.tolist()))) == 43  # every SID still unique
    assert load_data(copy / "data").item_ids[-3:] == ["NEW0", "NEW1", "NEW2"]
    # Exhaustive constrained decoding (beams >= catalogue) ranks every item, the new ones included.
    ranked = recommend_for_history(copy, data.split("test")["history"][0], topk=43, beams=64)
    assert {"NEW0", "NEW1", "NEW2"} <= {item for item, _ in ranked} and len(ranked) == 43
    # Adding them again is refused and changes nothing.
    sids_before = (copy / "sids" / "sids.json").read_text()
    from sidrec.errors import InputError

    with pytest.raises(InputError, match="already in the catalogue"):
        add_items(copy, new_file)
    assert (copy / "sids" / "sids.json").read_text() == sids_before


def test_add_items_bad_file_names_the_line(tmp_path):
    from sidrec.errors import InputError
    from sidrec.serve import read_new_items

    bad = tmp_path / "new.jsonl"
    bad.write_text('{"item_id": "a", "title": "A"}\n{"item_id": "b"}\n')
    with pytest.raises(InputError, match="title") as e:
        read_new_items(bad)
    assert ":2" in str(e.value)
    for line, expect in (('{"item_id": ["a", "b"], "title": "A"}', "field 'item_id' should be an id"),
                         ('{"item_id": true, "title": "A"}', "field 'item_id' should be an id"),
                         ('{"item_id": " ", "title": "A"}', "field 'item_id' is blank"),
                         ('{"item_id": "c", "title": {"en": "x"}}', "field 'title' should be text, got dict"),
                         ('{"item_id": "c", "title": "C", "price": "nan"}', "expected a finite number >= 0"),
                         ('{"item_id": "c", "title": "C", "price": -5}', "expected a finite number >= 0"),
                         ('{"item_id": "c", "title": "C",', "invalid JSON record")):
        bad.write_text('{"item_id": "a", "title": "A"}\n' + line + "\n")
        with pytest.raises(InputError, match=expect) as e:
            read_new_items(bad)
        assert "new.jsonl:2" in str(e.value) and "--lenient" not in str(e.value)
    bad.write_text('{"item_id": 7, "title": ["Cedar", "Candle"], "price": 3}\n')
    assert read_new_items(bad)[0] | {} == {"item_id": "7", "title": "Cedar Candle", "description": "",
                                          "categories": [], "brand": "", "price": 3.0}


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml")))
def test_every_shipped_config_resolves(path, monkeypatch):
    """Each YAML under configs/ parses into its stage's options (unknown keys or bad values fail here)."""
    from sidrec.config import resolve

    text = yaml.safe_load((ROOT / path).read_text())
    part = Path(path).parts[1] if len(Path(path).parts) > 2 else None
    if part is None:
        from sidrec.pipeline import PipelineConfig, resolve_sections

        monkeypatch.chdir(ROOT)  # sft / grpo config_file paths are relative to the repository
        resolved = resolve_sections(resolve(PipelineConfig, overrides=text))
        assert set(resolved) >= {"data", "semantics", "quantize", "align", "sft", "grpo", "decode", "baselines",
                                 "evaluate"}
    elif part == "semantics":
        from sidrec.semantics import SemanticsConfig

        resolve(SemanticsConfig, overrides=text["semantics"])
    elif part == "quantize":
        from sidrec.quantize import QuantizeConfig

        resolve(QuantizeConfig, overrides=text["quantize"])
    elif part == "baselines":
        from sidrec.baselines import BaselineConfig

        resolve(BaselineConfig, overrides=text.get("baseline", text))
    elif part in ("sft", "grpo"):
        module = __import__(f"sidrec.train.{part}", fromlist=["make_parser"])
        args = module.make_parser().parse_dict({**text, "use_cpu": True, "bf16": False}, allow_extra_keys=False)
        problems = args[0].problems(args[1])
        assert not problems, problems
    elif part == "variants":  # ablation arms: read, and each one's overrides resolve on a shipped pipeline config
        from sidrec.benchmark.variants import check_overrides, load_variants

        monkeypatch.chdir(ROOT)
        base = yaml.safe_load((ROOT / "configs" / "industrial.yaml").read_text())
        base.setdefault("align", {}).setdefault("max_train_samples", 1000)  # more_data doubles the config's cap
        for variant in load_variants(ROOT / path).values():
            check_overrides(variant, base)
    else:
        pytest.fail(f"no check for configs/{part}")


def test_misspelled_key_in_the_last_section_stops_before_any_stage(tmp_path):
    """Every section is resolved before the first stage runs: a typo in `evaluate` (the last section) and a bad
    value in `decode` are both reported, with their section, exit status 2, and no folder is made."""
    run = tmp_path / "run"
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({**TINY, "run_dir": str(run), "decode": {"beams": "ten"},
                                      "evaluate": {"spilt": "test"}}))
    proc = subprocess.run([sys.executable, "-m", "sidrec.cli", "pipeline", "--config", str(config)],
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "evaluate: unknown option 'spilt' (did you mean 'split'?)" in proc.stderr
    assert "decode: beams: expected int, got 'ten'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run.exists()


def test_a_time_budget_does_not_change_what_a_stage_is():
    """sft.max_minutes decides where training stops, not what it trains: a changed budget resumes the same run,
    while any other changed option redoes the stage."""
    from sidrec.config import resolve
    from sidrec.pipeline import PipelineConfig, stage_hashes

    base = resolve(PipelineConfig, overrides={**TINY, "sft": {**TINY["sft"], "max_minutes": 30}})
    longer = resolve(PipelineConfig, overrides={**TINY, "sft": {**TINY["sft"], "max_minutes": 55}})
    other = resolve(PipelineConfig, overrides={**TINY, "sft": {**TINY["sft"], "learning_rate": 1e-3}})
    assert stage_hashes(base) == stage_hashes(longer)
    assert stage_hashes(base)["sft"] != stage_hashes(other)["sft"]
    assert stage_hashes(base)["align"] == stage_hashes(other)["align"]


def test_a_default_written_out_does_not_change_what_a_stage_is():
    """sft.seed equal to the run's seed, or where quantize trains its CF model, leave every stage as it is; another
    sft seed redoes SFT onward and nothing upstream."""
    from sidrec.config import resolve
    from sidrec.pipeline import PipelineConfig, stage_hashes

    base = resolve(PipelineConfig, overrides=TINY)
    seed = base.seed
    same = resolve(PipelineConfig, overrides={**TINY, "sft": {**TINY["sft"], "seed": seed},
                                              "quantize": {**TINY.get("quantize", {}), "collaborative_dir": "x/cf"}})
    other = resolve(PipelineConfig, overrides={**TINY, "sft": {**TINY["sft"], "seed": seed + 1}})
    assert stage_hashes(base) == stage_hashes(same)
    changed = {k for k in stage_hashes(base) if stage_hashes(base)[k] != stage_hashes(other)[k]}
    assert changed == {"sft", "grpo", "decode", "report"}


def test_pipeline_log_records_why_a_run_stopped(tmp_path):
    """A stage that fails leaves its error in RUN/pipeline.log, not only '[stage] running'."""
    from sidrec.config import resolve
    from sidrec.errors import InputError
    from sidrec.pipeline import PipelineConfig, run_pipeline

    seq = tmp_path / "seq.txt"
    seq.write_text("1 1 2 3 4\n1 5 6 7\n")
    cfg = resolve(PipelineConfig, overrides={"run_dir": str(tmp_path / "run"),
                                             "data": {"source": "seqfile", "path": str(seq)}})
    with pytest.raises(InputError, match="has a second line"):
        run_pipeline(cfg, until="prepare")
    log = (tmp_path / "run" / "pipeline.log").read_text()
    assert "ERROR sidrec.pipeline: [prepare] stopped after" in log and "seq.txt:2: user '1' has a second line" in log


def test_a_pipeline_file_without_run_dir_is_refused(tmp_path):
    """A config file that names no run_dir would write into the demo's folder: refused, nothing made."""
    from click.testing import CliRunner

    from sidrec.cli import cli
    from sidrec.errors import ConfigError

    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({"data": {"source": "synthetic", "n_users": 30}}))
    r = CliRunner().invoke(cli, ["pipeline", "--config", str(config), "--until", "prepare"])
    assert isinstance(r.exception, ConfigError) and "run_dir: required" in str(r.exception)
    r = CliRunner().invoke(cli, ["pipeline", "--config", str(config), "--until", "prepare", "--run-dir",
                                 str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "data" / "stats.json").is_file()
