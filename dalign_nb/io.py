"""Files that must never be torn: every file the project writes goes through ``atomic_write``.

The lowest layer of the package (it imports nothing of it): the clip cache of ``data``, the
trainer's checkpoints (``training.checkpoint``) and histories (``write_json``) and the
experiments' results all use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "write_json"]


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # make a rename durable (not every file system allows it)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path, write) -> None:
    """``write(file)`` into a temporary file of this process's own next to ``path``, fsync it,
    then ``os.replace`` it onto ``path``.

    A crash at any point leaves either the old file or the new one, never a torn one; a
    failure removes the temporary file. Several processes may write the same path at once:
    each has its own temporary file, and the last rename wins with a complete file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename (and a commit)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_json(path, obj) -> None:
    """``obj`` as JSON indented by one space, with a final newline, through ``atomic_write``."""
    text = (json.dumps(obj, indent=1) + "\n").encode()
    atomic_write(path, lambda f: f.write(text))
