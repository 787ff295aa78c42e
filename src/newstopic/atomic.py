"""Atomic writes: every output is written under a temporary name in the same directory,
then renamed, so an interrupted job never leaves a file that a later rule would accept."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success rename it onto `target`.

    Works for files and directories. On error the temporary is removed and any
    previous `target` is left untouched. A process killed mid-write leaves only a hidden
    `.NAME.XXXXXXXX.tmp/` directory, removed by the next write of the same target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp_target = tmp / target.name
    try:
        yield tmp_target
        # Data on disk before the rename, so a crash of the machine cannot leave a
        # complete-looking name with missing contents.
        _fsync_tree(tmp_target)
        if target.is_dir() and not target.is_symlink():
            # os.replace cannot replace a non-empty directory: move the old one aside first.
            old = tmp / (target.name + ".old")
            os.replace(target, old)
        os.replace(tmp_target, target)
        _fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_temporaries(target: Path) -> None:
    """Remove what a killed earlier write of `target` left (one job writes a given output)."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp")
    for entry in target.parent.iterdir():
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def _fsync_tree(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for f in files:
        with contextlib.suppress(OSError), open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_pretrained_dir(out_dir: str | os.PathLike[str], *objects: Any) -> None:
    """`save_pretrained` each object (model, tokenizer) into one directory, atomically."""
    with atomic_path(out_dir) as tmp:
        for obj in objects:
            obj.save_pretrained(tmp)
