"""Where stn3dmm keeps downloaded and prepared files.

Everything goes under one cache directory: ``$STN3DMM_CACHE`` if set, else
``$XDG_CACHE_HOME/stn3dmm``, else ``~/.cache/stn3dmm``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The root of the stn3dmm cache (created on demand by the callers that write to it)."""
    env = os.environ.get("STN3DMM_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "stn3dmm"


def default_model_path(res: int = 112, source: str = "default") -> Path:
    """Where ``prepare-model`` writes, and every other command looks, when no file is named."""
    name = "grid_model.npz" if (source, res) == ("default", 112) else f"grid_model_{source}_r{res}.npz"
    return cache_dir() / "models" / name


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move a finished temporary file into place atomically, with the permissions a newly
    created file would have (mkstemp makes files private)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path)
    return Path(path)
