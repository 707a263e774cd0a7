"""Training checkpoints on disk: durable atomic writes, written once, loaded safely.

Owns :func:`write_durably` (temporary file, fsync, rename, fsync of the folder),
:func:`link_or_copy` (``last.pt`` as a hard link to the newest step file, else an atomic copy)
and :func:`load_checkpoint` (``weights_only=True``: no code runs; clear errors). The state
itself is :meth:`stn3dmm.training.loop.Trainer.state`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..core.paths import write_atomically

def write_durably(path: Path, write) -> Path:
    """Write a file atomically and durably: ``write(f)`` into a temporary file beside it,
    flush + fsync, rename into place, fsync the folder (a crash leaves the old or the new file)."""
    path = write_atomically(path, write, durable=True)
    _fsync_dir(path.parent)
    return path


def link_or_copy(src: Path, dst: Path) -> Path:
    """Make ``dst`` the same content as ``src`` atomically: a hard link when the file system
    allows it (no second write), else a durable copy."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link")
    try:
        if tmp.exists():
            tmp.unlink()
        os.link(src, tmp)
        os.replace(tmp, dst)
        _fsync_dir(dst.parent)
    except OSError:
        if tmp.exists():
            tmp.unlink()
        with open(src, "rb") as f:
            write_durably(dst, lambda out: shutil.copyfileobj(f, out, 1 << 20))
    return dst


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path) -> dict:
    """A training checkpoint, loaded with ``weights_only=True`` (no code runs); clear errors."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such checkpoint")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated files, foreign pickles ...
        raise ValueError(f"{path}: not a readable stn3dmm checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict) or ck.get("format") != "stn3dmm-checkpoint-1":
        raise ValueError(f"{path}: not an stn3dmm training checkpoint")
    return ck


__all__ = ["write_durably", "link_or_copy", "load_checkpoint"]
