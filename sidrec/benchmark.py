"""What every ``scripts/bench_*.py`` result names: date, commit, device and library versions."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def write_report(out_dir: str | Path, stem: str, report: dict, markdown: str) -> None:
    """``<out_dir>/<stem>.json`` and ``<stem>.md``, each written atomically (an interrupted write leaves the old
    result in place)."""
    from sidrec.artifacts import write_json, write_text

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(out_dir) / f"{stem}.json", report)
    write_text(Path(out_dir) / f"{stem}.md", markdown)
