"""Atomic writes: a file or folder appears under its final name complete, or not at all, so a
killed stage never leaves half an output that a later stage would read."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sweep_temporaries(parent: Path, prefix: str) -> None:
    """Remove what a killed run left behind: temporary files and folders named `prefix*` (a clean
    exit removes its own; SIGKILL does not)."""
    for stale in parent.glob(f"{prefix}*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`data` under `path` whole or not at all; a failed write (a full disk, a read-only folder)
    raises the system's OSError and leaves no temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(path.parent, f".{path.name}.")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder to its final name, replacing an older one."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


@contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `final`; when the block ends without an error, the
    folder replaces `final` whole. On an error nothing under `final` changes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(final.parent, f".{final.name}.")
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
