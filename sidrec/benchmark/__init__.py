"""What every ``scripts/bench_*.py`` result names: date, commit, device and library versions."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def git_commit(dirty_paths: tuple[str, ...] | None = ()) -> str:
    """Short HEAD commit of the checkout, ``+dirty`` when tracked files under ``dirty_paths`` (all tracked files
    when empty; no check when None) differ from it; "" outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
        if dirty_paths is None or not commit:
            return commit
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *dirty_paths],
                               capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return ""
    return commit + ("+dirty" if dirty else "")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (the platform's processor name elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str | None = None) -> str:
    """The GPU's name when ``device`` is a CUDA device (or None and CUDA is available), else the CPU and the
    number of torch threads."""
    import torch

    if (device is None and torch.cuda.is_available()) or (device is not None and str(device).startswith("cuda")):
        return torch.cuda.get_device_name(device if device is not None else 0)
    return f"CPU ({cpu_name()}, {torch.get_num_threads()} torch threads)"


def environment(device: str | None = None, dirty_paths: tuple[str, ...] | None = ()) -> dict[str, str]:
    """``date``, ``commit``, ``device`` and ``torch`` for a benchmark's JSON."""
    import torch

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(dirty_paths),
            "device": device_name(device), "torch": torch.__version__}


# The first commit whose runs repeat exactly (issue 22: before it, the tokenizers' trainers broke ties by a
# per-process hash seed, and everything downstream of the sensory student and the tiny model's tokenizer varied).
REPRODUCIBLE_SINCE = "e4fb7df"


def _budgets(report: dict) -> list[str]:
    """Every ``max_minutes`` set in a report, as a JSON key or inside the YAML config text it quotes."""
    import json
    import re

    text = json.dumps(report, default=str)
    return sorted(set(re.findall(r'max_minutes\\?"?\s*:\s*([0-9][0-9.]*)', text)), key=float)


def reproducibility(report: dict) -> str:
    """Whether a result page's figures repeat when its command is run again (README: Reproducibility), from its
    commit, device and time budgets."""
    env = report.get("env") if isinstance(report.get("env"), dict) else report
    commit, device = str(env.get("commit") or ""), str(env.get("device") or "")
    lines = ["Timings and throughput are measurements of the machine and its load at the time, never repeatable."]
    if commit and not _is_descendant(commit.removesuffix("+dirty"), REPRODUCIBLE_SINCE):
        lines.insert(0, f"Made at {commit}, before runs were made repeatable ({REPRODUCIBLE_SINCE}, issue 22): "
                        "rerunning the command now gives figures that may differ in the last digits.")
    elif "cpu" in device.lower():
        lines.insert(0, "Model figures repeat exactly when the command is run again at this commit with the same "
                        "seeds and thread count on CPU (tests/test_reproducibility.py).")
    else:
        lines.insert(0, "GPU kernels are not all deterministic: a rerun may differ in the last digits "
                        "(`sidrec pipeline --deterministic` switches on torch's deterministic algorithms).")
    budgets = _budgets(report)
    if budgets:
        lines.insert(1, f"Training stopped on time budgets (max_minutes {', '.join(budgets)}): where a run stops "
                        "depends on the machine's speed and load, so those figures are not exactly repeatable.")
    return " ".join(lines)


def _is_descendant(commit: str, ancestor: str) -> bool:
    try:
        return subprocess.run(["git", "merge-base", "--is-ancestor", ancestor, commit], capture_output=True,
                              cwd=ROOT).returncode == 0
    except OSError:
        return False


def write_report(out_dir: str | Path, stem: str, report: dict, markdown: str) -> None:
    """``<out_dir>/<stem>.json`` and ``<stem>.md``, each written atomically (an interrupted write leaves the old
    result in place); both say whether the figures are reproducible (:func:`reproducibility`)."""
    from sidrec.artifacts import write_json, write_text

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    note = reproducibility(report)
    write_json(Path(out_dir) / f"{stem}.json", {**report, "reproducibility": note})
    write_text(Path(out_dir) / f"{stem}.md", markdown.rstrip("\n") + f"\n\n## Reproducibility\n\n{note}\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a count, a size, a cut-off): 0 or -5 is a usage error, not an empty run."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value
