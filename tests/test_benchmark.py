"""The environment every benchmark result names (device, commit, date, torch)."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime

import torch

from sidrec.benchmark import ROOT, cpu_name, environment, git_commit


def test_environment_names_commit_device_and_date():
    env = environment("cpu")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=ROOT).stdout.strip()
    assert git_commit(None) == head
    assert re.fullmatch(re.escape(head) + r"(\+dirty)?", env["commit"]) if head else env["commit"] == ""
    assert env["device"] == f"CPU ({cpu_name()}, {torch.get_num_threads()} torch threads)"
    assert env["torch"] == torch.__version__ and datetime.fromisoformat(env["date"]).tzinfo is not None


def test_write_report_writes_json_and_markdown(tmp_path):
    import json

    from sidrec.benchmark import write_report

    write_report(tmp_path / "results", "bench_x", {"HR@10": 0.5, "device": "CPU é"}, "# bench x\n")
    assert json.loads((tmp_path / "results" / "bench_x.json").read_text()) == {"HR@10": 0.5, "device": "CPU é"}
    assert (tmp_path / "results" / "bench_x.md").read_text() == "# bench x\n"
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["bench_x.json", "bench_x.md"]
