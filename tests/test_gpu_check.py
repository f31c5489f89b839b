"""scripts/gpu_check.sh --smoke: the GPU check end to end on CPU with tiny shapes, so the script a lent GPU runs in
its one device call cannot rot while no GPU is lent. Marked slow and deepspeed (one DeepSpeed launch among its
steps, ~1.5 min in all): ``bash scripts/test.sh`` (CI) runs it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.deepspeed]


def test_gpu_check_smoke_runs_every_step_and_writes_the_page(tmp_path):
    env = os.environ | {"PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    [page] = tmp_path.glob("gpu_*.md")
    result = json.loads(page.with_suffix(".json").read_text())
    assert result["failed_steps"] == [] and result["benchmark"] == "gpu_check"

    # SFT: both arms in one process, and the TRL arm again under DeepSpeed ZeRO-2 through accelerate launch, on the
    # same batches (the same tokens per timed round).
    single, zero2 = result["sft"]["single"], result["sft"]["zero2"]
    assert set(single["arms"]) == {"trl", "plain"} and set(zero2["arms"]) == {"trl"}
    assert not single["deepspeed"] and zero2["deepspeed"] and zero2["deepspeed_zero_stage"] == 2
    assert single["tokens_per_round"] == zero2["tokens_per_round"] == 3 * 4 * single["seq_len"]  # no padding
    assert all(a["tokens_per_s"] > 0 and a["tflops"] > 0 for part in (single, zero2) for a in part["arms"].values())
    assert single["matmul_parameters"] <= single["n_parameters"]

    # Decoding: three backends at beams 10 and 50 on one model and prompt set, every returned item valid.
    decode = result["decode"]
    assert {(r["beams"], r["backend"]) for r in decode["results"]} == {
        (b, k) for b in (10, 50) for k in ("torch", "hf-prefix-fn", "hf")}
    assert all(r["valid_items"] == r["items_returned"] > 0 for r in decode["results"])
    assert decode["prefill_floor"]["users_per_s"] > 0

    text = page.read_text()
    for heading in ("## SFT tokens/s", "DeepSpeed ZeRO-2", "## Constrained decoding users/s", "H100 reference"):
        assert heading in text
    assert (tmp_path / "logs" / "zero2.log").is_file()
