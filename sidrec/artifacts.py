"""Atomic artifact writing and config hashes (the DESIGN's artifact contract).

Every artifact is written to a temporary sibling and renamed into place, so an interrupted run never leaves a
file or folder that looks finished. Skipping finished work (the done marker) is :mod:`sidrec.stage`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a missing file or invalid JSON raises :class:`~sidrec.errors.InputError` naming the
    file (and the line)."""
    from sidrec.errors import InputError

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", path, e.lineno) from None


def load_npy(path: str | Path):
    """A numeric ``.npy`` array; a missing file, a file that is not ``.npy`` or holds objects raises
    :class:`~sidrec.errors.InputError` naming the file."""
    import numpy as np

    from sidrec.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError("file not found (an earlier step of this stage writes it)", path)
    with open(path, "rb") as fh:
        if fh.read(6) != b"\x93NUMPY":
            raise InputError("not a .npy file (no NumPy header)", path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"not a numeric .npy array ({e})", path) from None


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line_number, object)`` for every non-blank line of a JSON Lines file; a line that is not valid JSON raises
    :class:`~sidrec.errors.InputError` naming the file and the line."""
    from sidrec.errors import InputError

    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"invalid JSON ({e.msg})", path, line_no) from None


def _tmp_sibling(path: Path, is_dir: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if is_dir:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path; on success it is renamed to ``path``, on error it is removed."""
    path = Path(path)
    tmp = _tmp_sibling(path, is_dir=False)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` as a whole once the block succeeds.

    On error the temporary directory is deleted and an existing ``path`` is left untouched.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (use --force to overwrite)")
    tmp = _tmp_sibling(path, is_dir=True)
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_file(path: str | Path | None, option: str = "--out") -> None:
    """Raise :class:`~sidrec.errors.InputError` naming ``option`` when a file cannot be written at ``path``: it is
    a folder, or a part of its folder path is a file. Called before any work, so nothing half-written is left."""
    from sidrec.errors import InputError

    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} is a folder; give a file path", path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{option}: {parent} is a file, not a folder", path)
            break


def check_model_source(name: str | Path, option: str = "--model") -> None:
    """Raise :class:`~sidrec.errors.InputError` naming ``option`` when ``name`` is meant as a local model folder
    (it exists, or it is a path: absolute, relative with ./ or ../, or deeper than a hub id's 'org/name') but is
    not one holding ``config.json``. A hub id is left to ``from_pretrained``."""
    from sidrec.errors import InputError

    text, path = str(name), Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"{option}: not a model folder (no config.json)", path)
        return
    if path.exists():
        raise InputError(f"{option}: a file, not a model folder", path)
    if text.startswith(("/", ".", "~")) or text.count("/") >= 2 or text.endswith("/"):
        raise InputError(f"{option}: model folder not found", path)


def replace_dir(src: str | Path, dst: str | Path) -> None:
    """Move the finished folder ``src`` to ``dst``, replacing what is there by renames only: a kill at any moment
    leaves ``dst`` either absent, the old folder or the new one, never a half-deleted one."""
    src, dst = Path(src), Path(dst)
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=_json_default) + "\n")


def write_yaml(path: str | Path, obj: Any) -> None:
    write_text(path, yaml.safe_dump(to_plain(obj), sort_keys=False, allow_unicode=True))


def _json_default(o: Any) -> Any:
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_plain(obj: Any) -> Any:
    """Dataclasses, paths and numpy scalars to plain YAML/JSON types."""
    return json.loads(json.dumps(obj, default=_json_default))


def config_hash(obj: Any) -> str:
    """A short stable fingerprint of a resolved config (dataclass or dict)."""
    blob = json.dumps(to_plain(obj), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
