"""Reproducible runs (issue 22): a small pipeline that still runs every stage (semantic fusion, SFT with validation
and early stopping, GRPO with sampled rollouts, fused baselines) gives the same artifacts in two processes with
different hash seeds, and a run SIGKILLed inside semantics, quantize, SFT (twice, one kill leaving a partial
checkpoint), GRPO and the baselines, rerun each time, ends with the uninterrupted run's predictions, byte for byte.

One run takes ~35 s on an idle 2-core machine; the module ~2.5 min of CPU time (5.3 min wall measured on a machine
loaded by other jobs, load average 5 on 2 cores).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "seed": 0,
    "data": {"source": "synthetic", "n_users": 120, "n_items": 40},
    "semantics": {"student_epochs": 3, "sensory_dim": 8, "fusion": "concat", "progress": False},
    "quantize": {"levels": 3, "codebook_size": 8, "latent_dim": 16, "hidden_dims": [64], "epochs": 60},
    "model": {"tiny": {"vocab_size": 600, "hidden_size": 64, "num_layers": 1, "intermediate_size": 128,
                       "lm_epochs": 0.2, "lm_max_texts": 400}},
    "align": {"valid_samples": 20, "max_history": 8},
    # The demo's SFT file (group_by_length batches, ranking validation, early stopping, best checkpoint) with
    # checkpoints every 5 steps, which falls mid-epoch: a resume must skip into the epoch's own order.
    "sft": {"config_file": "configs/sft/demo.yaml", "num_train_epochs": 3, "per_device_train_batch_size": 16,
            "learning_rate": 3.0e-3, "eval_strategy": "steps", "eval_steps": 5, "save_strategy": "steps",
            "save_steps": 5, "save_total_limit": 1, "early_stopping_patience": 3, "val_samples": 10,
            "val_beams": 10, "logging_steps": 5, "report_to": "none", "disable_tqdm": True},
    "grpo": {"enabled": True, "config_file": "configs/grpo/demo.yaml", "rollout": "sample", "num_generations": 4,
             "per_device_train_batch_size": 8, "max_steps": 6, "save_steps": 2, "logging_steps": 1,
             "max_train_samples": 64, "valid_samples": 10, "valid_beams": 10, "report_to": "none",
             "disable_tqdm": True},
    "decode": {"beams": 10, "topk": 10},
    "baselines": [{"model": "popularity"},
                  {"model": "sasrec", "fusion": "id", "epochs": 3, "hidden_size": 32},
                  {"model": "sasrec", "fusion": "asegr", "epochs": 3, "hidden_size": 32},
                  {"model": "sasrec", "fusion": "llmesr", "epochs": 3, "hidden_size": 32}],
    "evaluate": {"split": "test"},
}

# Files that record wall-clock times: compared without their timing fields. Everything else byte for byte.
TIMED = re.compile(r"(^|/)(stats\.json|sft_summary\.json|log_history\.json|trainer_state\.json|"
                   r"sidrec_progress\.json|train_curves\.json|summary\.json|log\.jsonl|.*\.config\.json|"
                   r"tiny_model\.json)$")
TIMING_KEY = re.compile(r"seconds|runtime|_s$|per_s$|per_second|step_time|time_")
NOT_ARTIFACTS = re.compile(r"^(pipeline\.log|\.pipeline/.*)$")  # the run's own log and stage timings


def _env(hash_seed: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": str(hash_seed),
            "PYTHONPATH": str(ROOT)}


def _start(config: Path, hash_seed: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sidrec.cli", "pipeline", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(hash_seed),
                            cwd=ROOT, start_new_session=True)


def _run_to_end(config: Path, hash_seed: int) -> None:
    proc = _start(config, hash_seed)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-4000:]


def _write_config(root: Path) -> Path:
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "run_dir": str(root / "run")}))
    return config


def _files(run: Path) -> dict[str, Path]:
    return {p.relative_to(run).as_posix(): p for p in sorted(run.rglob("*")) if p.is_file()}


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if not TIMING_KEY.search(k)}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _content(path: Path, rel: str):
    if TIMED.search(rel):
        text = path.read_text()
        if rel.endswith(".jsonl"):
            return [_without_timings(json.loads(line)) for line in text.splitlines() if line.strip()]
        return _without_timings(json.loads(text))
    return path.read_bytes()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path]:
    """One run to the end (PYTHONHASHSEED=1), moved to ``ROOT/a``; returns (root, a). Runs always happen at
    ``ROOT/run``, so the paths recorded inside artifacts are the same for every run."""
    root = tmp_path_factory.mktemp("repro")
    config = _write_config(root)
    _run_to_end(config, hash_seed=1)
    (root / "run").rename(root / "a")
    return root, root / "a"


def test_two_processes_with_other_hash_seeds_give_identical_artifacts(uninterrupted):
    root, a = uninterrupted
    _run_to_end(root / "config.yaml", hash_seed=2)
    b = root / "b"
    (root / "run").rename(b)
    files_a, files_b = _files(a), _files(b)
    artifacts = sorted(rel for rel in files_a if not NOT_ARTIFACTS.match(rel))
    assert sorted(rel for rel in files_b if not NOT_ARTIFACTS.match(rel)) == artifacts
    # Every stage's outputs are among them (a stage that silently wrote nothing would also "match").
    for rel in ("semantics/text_emb.npy", "semantics/sensory_emb.npy", "semantics/item_emb.npy",
                "semantics/sensory.jsonl", "sids/sids.json", "align/sid_keywords.json", "sft/final/model.safetensors",
                "grpo/final/model.safetensors", "predictions/grpo.jsonl", "predictions/sasrec_llmesr.jsonl",
                "predictions/sasrec_asegr.jsonl", "predictions/popularity.jsonl", "metrics/comparison.json",
                "report.md"):
        assert rel in artifacts, rel
    different = [rel for rel in artifacts if _content(files_a[rel], rel) != _content(files_b[rel], rel)]
    assert not different, f"differ between the two runs: {different}"


def _in_progress(run: Path) -> list[str]:
    return sorted(p.name.removesuffix(".started.json") for p in (run / ".pipeline").glob("*.started.json"))


def _kill_when(config: Path, run: Path, condition: Callable[[], bool], delay: float, stage: str,
               hash_seed: int) -> None:
    """Start the pipeline, SIGKILL it ``delay`` seconds after ``condition`` holds, and check that ``stage`` was
    the one running."""
    proc = _start(config, hash_seed)
    deadline = time.monotonic() + 600
    try:
        while not condition():
            if proc.poll() is not None:
                pytest.fail(f"the pipeline ended before the kill point in {stage}:\n{proc.stdout.read()[-3000:]}")
            assert time.monotonic() < deadline, f"no kill point in {stage} within 10 minutes"
            time.sleep(0.02)
        time.sleep(delay)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert _in_progress(run) == [stage], f"killed during {_in_progress(run)}, meant {stage}"


def _checkpoints(folder: Path) -> list[Path]:
    """Complete trainer checkpoints in ``folder``."""
    from sidrec.train.checkpoints import is_complete

    return [p for p in sorted(folder.glob("checkpoint-*")) if is_complete(p)]


def test_a_run_killed_in_every_stage_ends_with_the_uninterrupted_predictions(uninterrupted):
    root, a = uninterrupted
    config, run = root / "config.yaml", root / "run"
    shutil.rmtree(run, ignore_errors=True)
    started = lambda stage: lambda: (run / ".pipeline" / f"{stage}.started.json").is_file()  # noqa: E731
    # 1. semantics, as soon as its first part is in the part ledger (the others still to do: a point inside the
    #    stage on a machine of any speed); 2. quantize, at its start.
    _kill_when(config, run, lambda: (run / "semantics" / "_parts.json").is_file(), 0.0, "semantics", hash_seed=3)
    _kill_when(config, run, started("quantize"), 0.0, "quantize", hash_seed=4)
    # 3. SFT, as its first checkpoint folder appears (the save is under way); a partial checkpoint of a later
    #    step, as a kill in the middle of a save leaves it, must not be resumed from.
    _kill_when(config, run, lambda: any((run / "sft").glob("checkpoint-*")), 0.0, "sft", hash_seed=5)
    partial = run / "sft" / "checkpoint-999"
    partial.mkdir(parents=True)
    (partial / "trainer_state.json").write_text('{"global_step": 99')  # cut short
    # 4. SFT again, mid-epoch, a little after a later checkpoint was complete.
    first = len(_checkpoints(run / "sft"))
    _kill_when(config, run, lambda: any(int(p.name.split("-")[1]) >= 10 for p in _checkpoints(run / "sft")),
               0.3, "sft", hash_seed=6)
    assert not partial.exists(), "the partial checkpoint was not removed"
    assert first <= 1
    # 5. GRPO after its first checkpoint (sampled rollouts: the RNG state must come back too).
    _kill_when(config, run, lambda: bool(_checkpoints(run / "grpo")), 0.0, "grpo", hash_seed=7)
    # 6. the baselines, while SASRec-id trains (after its first epoch's resume state).
    _kill_when(config, run, lambda: (run / "baselines" / "sasrec_id" / "last.pt").is_file(), 0.0, "baselines",
               hash_seed=8)
    _run_to_end(config, hash_seed=9)
    log = (run / "pipeline.log").read_text()
    for line in ("[semantics] resuming an interrupted run", "[sft] resuming an interrupted run",
                 "[grpo] resuming an interrupted run", "[baselines] resuming an interrupted run",
                 "sft: resuming from", "grpo: resuming from"):
        assert line in log, line
    for rel in sorted(_files(a)):
        if rel.startswith("predictions/") and rel.endswith(".jsonl"):
            assert (run / rel).read_bytes() == (a / rel).read_bytes(), f"{rel} differs from the uninterrupted run"
    for rel in ("sids/sids.json", "semantics/item_emb.npy", "metrics/comparison.json", "report.md",
                "sft/final/model.safetensors", "grpo/final/model.safetensors"):
        assert (run / rel).read_bytes() == (a / rel).read_bytes(), f"{rel} differs from the uninterrupted run"


def test_bpe_vocabulary_depends_on_the_words_alone():
    """Equally frequent pairs are merged in string order, whatever order the words come in."""
    from collections import Counter

    from sidrec.bpe import learn_bpe

    words = {"lowest": 2, "newer": 2, "wider": 2, "low": 5, "slow": 1}
    forward = learn_bpe(Counter(words), 40, special_tokens=["<pad>"])
    backward = learn_bpe(Counter(dict(reversed(list(words.items())))), 40, special_tokens=["<pad>"])
    assert forward == backward
    vocab, merges = forward
    assert merges[:2] == [("l", "o"), ("lo", "w")]  # "l o" and "o w" both occur 8 times: "l" < "o"
    assert merges[2] == ("e", "r") and vocab["<pad>"] == 0  # "e r" and "w e" both occur 4 times: "e" < "w"


def test_stage_hashes_follow_the_sft_config_file_content(tmp_path):
    from sidrec.config import resolve
    from sidrec.pipeline import PipelineConfig, stage_hashes

    file = tmp_path / "sft.yaml"
    file.write_text("learning_rate: 1.0e-3\n")
    cfg = resolve(PipelineConfig, overrides={"sft": {"config_file": str(file)}})
    before = stage_hashes(cfg)
    file.write_text("learning_rate: 2.0e-3\n")
    after = stage_hashes(cfg)
    assert before["sft"] != after["sft"] and before["grpo"] != after["grpo"]
    assert before["align"] == after["align"]


def test_resume_skips_incomplete_checkpoints(tmp_path):
    from sidrec.train.checkpoints import last_complete_checkpoint

    for step, state in ((4, '{"global_step": 4}'), (8, '{"global_step": 8}'), (12, '{"global_st'), (16, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights")
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-8"]
    assert last_complete_checkpoint(tmp_path / "missing") is None
