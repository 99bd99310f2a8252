"""Atomic file writes and advisory locks: a killed process never leaves a half-written file visible.

Standard library only, so the gate command can write its --output with it without loading the store. A path
that is not a local ``Path`` is inside an ``s3://`` evidence home: ``store/remote.py`` writes and locks it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Have ``write`` fill a temporary file beside ``path``, fsync it, then rename it over ``path``.

    The one way every file of maml-evidence is written (JSON, Markdown, Parquet from pyarrow or DuckDB, the
    gate command's --output): readers see the old file or the new one, never half of one; a writer killed
    midway leaves only a ``.<name>.*.partial`` file that ``doctor`` clears. In a bucket the file is written
    locally, then sent with one PUT: an object appears whole or not at all.
    """
    if not isinstance(path, Path):
        return _put(path, write)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return path
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _put(path: Path, write: Callable[[Path], object]) -> Path:
    from maml_evidence.store import remote

    with tempfile.TemporaryDirectory(prefix="maml-evidence-put-") as folder:
        tmp = Path(folder) / path.name
        write(tmp)
        remote.upload(tmp, path)
    return path


def move(path: Path, target: Path) -> None:
    """Move a file into ``target`` (a folder or a bucket prefix of the same home), keeping its name."""
    if isinstance(path, Path):
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), target / path.name)
        return
    from maml_evidence.store import remote

    remote.move(path, target / path.name)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """An exclusive advisory lock across processes; yields False when ``blocking=False`` and it is taken.

    In a bucket: a Postgres advisory lock shared by every machine (``remote.remote_lock``).
    """
    if not isinstance(path, Path):
        from maml_evidence.store import remote

        with remote.remote_lock(path, blocking=blocking) as taken:
            yield taken
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(handle.fileno(), flags)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
