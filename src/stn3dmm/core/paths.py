"""Where stn3dmm keeps downloaded and prepared files, and how every file is written.

Everything goes under one cache directory: ``$STN3DMM_CACHE`` if set, else
``$XDG_CACHE_HOME/stn3dmm``, else ``~/.cache/stn3dmm``. :func:`write_atomically` (and its
``bytes`` / text forms) is the project's only way to write an output file: a temporary file
beside the target, then a rename, so no reader ever sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """The root of the stn3dmm cache (created on demand by the callers that write to it)."""
    env = os.environ.get("STN3DMM_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "stn3dmm"


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move a finished temporary file into place atomically, with the permissions a newly
    created file would have (mkstemp makes files private)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path)
    return Path(path)


def write_atomically(path: str | os.PathLike, write: Callable, *, durable: bool = False) -> Path:
    """Write ``path`` by calling ``write(f)`` on a binary file object of a temporary file beside
    it, then rename it into place (creating the folder). ``durable``: also fsync the file
    before the rename (checkpoints, data sets). On any error the temporary file is removed
    and the target is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        return publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomically(path: str | os.PathLike, data: bytes, *, durable: bool = False) -> Path:
    """:func:`write_atomically` of ``data``."""
    return write_atomically(path, lambda f: f.write(data), durable=durable)


def write_text_atomically(path: str | os.PathLike, text: str, *, durable: bool = False) -> Path:
    """:func:`write_atomically` of ``text`` as UTF-8."""
    return write_bytes_atomically(path, text.encode("utf-8"), durable=durable)
