"""Exceptions that carry *where* a problem is, so the CLI can print one clear line and exit non-zero."""

from __future__ import annotations

from pathlib import Path


class SidrecError(Exception):
    """Base class for every user-facing error: the message says what is wrong, where, and what was expected."""


class InputError(SidrecError):
    """Bad input data: a malformed file, a missing field, an unknown item.

    ``path`` and ``line`` (1-based) are folded into the message when given.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(where + message)
        self.path = str(path) if path is not None else None
        self.line = line


class ConfigError(SidrecError):
    """An invalid configuration; the message lists every problem found, not just the first."""

    def __init__(self, problems: list[str], source: str | None = None):
        head = f"invalid configuration{f' in {source}' if source else ''}:"
        super().__init__("\n".join([head] + [f"  - {p}" for p in problems]))
        self.problems = problems


def run_script(main, *args, **kwargs):
    """Run a script's ``main``: a user-facing error (:class:`SidrecError`, or a missing input file) prints one
    ``error:`` line and exits 2, as the ``sidrec`` command does, instead of a traceback."""
    import sys

    try:
        return main(*args, **kwargs)
    except SidrecError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except FileNotFoundError as e:  # an input path given on the command line that is not there
        print(f"error: {e.filename}: not found", file=sys.stderr)
        raise SystemExit(2) from None
