"""Line readers for raw review dumps: JSON lines or the older Python-literal lines, plain or gzip.

Every error names the file and the 1-based line. ``lenient=True`` skips bad lines instead and counts them.
"""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidrec.errors import InputError


@dataclass
class ReadReport:
    """What a reader skipped in lenient mode (reported in stats.json and on the console)."""

    path: str
    lines: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def skip_or_raise(self, error: InputError, line: int, lenient: bool) -> None:
        """A record with a bad field: counted as skipped when ``lenient``, else ``error`` is raised."""
        if not lenient:
            raise error
        self.skipped.append((line, str(error).split(": ", 1)[-1][:120]))

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "lines": self.lines, "skipped": len(self.skipped),
                "first_skipped": [f"line {n}: {why}" for n, why in self.skipped[:5]]}


def _open_text(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def parse_record_line(line: str) -> Any:
    """Parse one strict-JSON or Python-literal line (Amazon 2014/2018 dumps used ``eval``-style lines)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as json_error:
        try:
            return ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise json_error from None


def iter_records(path: str | Path, lenient: bool = False, report: ReadReport | None = None,
                 lenient_hint: bool = True) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-empty line of ``path``.

    Raises :class:`InputError` naming file and line for invalid lines (unless ``lenient``; ``lenient_hint``: say
    that --lenient exists), a truncated or corrupt gzip stream, a missing file, or a file with no records at all.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    report = report if report is not None else ReadReport(str(path))
    n_records = 0
    line_no = 0
    try:
        with _open_text(path) as fh:
            for line_no, line in enumerate(fh, start=1):
                report.lines = line_no
                line = line.strip()
                if not line:
                    continue
                try:
                    record = parse_record_line(line)
                    if not isinstance(record, dict):
                        raise ValueError(f"expected an object, got {type(record).__name__}")
                except (json.JSONDecodeError, ValueError) as e:
                    if lenient:
                        report.skipped.append((line_no, str(e)[:120]))
                        continue
                    hint = "; pass --lenient to skip bad lines" if lenient_hint else ""
                    raise InputError(f"invalid JSON record ({e}){hint}", path, line_no) from None
                n_records += 1
                yield line_no, record
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(f"truncated or corrupt gzip stream after line {line_no} ({e})", path) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text near line {line_no + 1} ({e.reason})", path) from None
    if n_records == 0:
        raise InputError("no records (empty file)", path)


def require(record: dict[str, Any], keys: tuple[str, ...], path: str | Path, line: int) -> None:
    """Raise :class:`InputError` naming the first missing required field."""
    for key in keys:
        if record.get(key) in (None, ""):
            raise InputError(f"missing required field '{key}'", path, line)


def number(record: dict[str, Any], key: str, path: str | Path, line: int, kind: type = float,
           default: float | None = None) -> Any:
    """``record[key]`` as ``kind`` (int or float); ``default`` when absent or empty (a required field has none).
    A value that is not a number (``"yesterday"``, ``"five"``, a list) is an :class:`InputError` naming the field."""
    value = record.get(key)
    if value in (None, ""):
        if default is None:
            raise InputError(f"missing required field '{key}'", path, line)
        return default
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"field '{key}' should be a number, got {value!r:.60}", path, line) from None


def identifier(record: dict[str, Any], key: str, path: str | Path, line: int) -> str:
    """``record[key]`` as an id string: a non-empty string or an integer; anything else (an object, a list) is an
    :class:`InputError` naming the field."""
    value = record.get(key)
    if value in (None, ""):
        raise InputError(f"missing required field '{key}'", path, line)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"field '{key}' should be an id (a string or an integer), got {type(value).__name__} "
                         f"{value!r:.60}", path, line)
    text = str(value).strip()
    if not text:
        raise InputError(f"field '{key}' is blank", path, line)
    return text
