"""The ``sidrec`` console entry point: help, clear one-line errors, non-zero exit, no partial output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sidrec.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_help_lists_stages():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("data", "evaluate", "compare", "baseline"):
        assert cmd in r.stdout


def test_bad_input_exits_nonzero_with_file_and_line(tmp_path):
    bad = tmp_path / "reviews.json"
    bad.write_text(json.dumps({"reviewerID": "u", "asin": "i", "unixReviewTime": 1}) + "\n{broken\n")
    out = tmp_path / "out"
    r = run_cli("data", "prepare", "--source", "amazon2018", "--reviews", str(bad), "--out", str(out))
    assert r.returncode == 2
    assert f"{bad}:2: invalid JSON record" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_invalid_config_lists_every_problem(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  source: minionerec\n  max_histroy: 5\n")
    r = run_cli("data", "prepare", "--config", str(cfg))
    assert r.returncode == 2
    assert "max_histroy" in r.stderr and "did you mean 'max_history'" in r.stderr


@pytest.mark.parametrize("flag,value", [("--split", "nope"), ("--n-users", "many")])
def test_bad_flag_values_are_rejected(flag, value, tmp_path):
    r = run_cli("data", "prepare", flag, value, "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Invalid value" in r.stderr


def test_scripts_report_a_bad_input_as_one_error_line(tmp_path):
    """Every script runs its main through sidrec.errors.run_script: a missing input is `error: ...`, exit 2."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for script in sorted((root / "scripts").glob("*.py")):
        assert "run_script(" in script.read_text() or script.name in ("sft.py", "grpo.py"), script.name
    proc = subprocess.run([sys.executable, str(root / "scripts" / "bench_pipeline.py"), "--config",
                           str(tmp_path / "missing.yaml")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("missing.yaml: not found"), proc.stderr
    assert "Traceback" not in proc.stderr
