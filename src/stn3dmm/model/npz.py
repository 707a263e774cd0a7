"""Reading ``.npz`` files safely: the sizes they declare are checked before any array is read.

Owns :func:`read_npz` and :data:`MAX_NPZ_BYTES`. A ``.npz`` file is a zip archive of ``.npy``
members, and both layers declare sizes ahead of the data: the zip's central directory gives
each member's uncompressed size, each member's ``.npy`` header its shape and dtype. NumPy
allocates the array a header declares before it reads a byte of it, so a small file can make a
reader take gigabytes: a compressed member that claims 2 GB, or a header whose shape is larger
than its member. :func:`read_npz` reads only the declarations first (the central directory and
each header, a few hundred bytes), refuses a file whose members claim more than ``max_bytes`` in
all or whose header claims more than its member holds, and only then loads the arrays, with
``allow_pickle=False`` (a pickled member is refused, never run).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

#: The most a model file's arrays may claim in all, uncompressed (1 GiB). The default model at
#: R = 112 holds about 25 MB; 199 + 100 components at R = 256 would hold 0.24 GB.
MAX_NPZ_BYTES = 1 << 30
#: The most members a model file may have (it has about 15).
MAX_NPZ_MEMBERS = 1024


class NpzError(ValueError):
    """A ``.npz`` file is unreadable, declares too much, or holds a pickle (the message names the
    file and, where there is one, the array)."""


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:,.1f} MiB"


def _header(f, version):
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported here")


def check_declared_sizes(path: str | os.PathLike, max_bytes: int = MAX_NPZ_BYTES) -> None:
    """Refuse (:class:`NpzError`) a ``.npz`` whose declarations ask for too much memory: more
    than ``max_bytes`` of members in all, more than :data:`MAX_NPZ_MEMBERS` members, or an array
    header that claims more bytes than its member holds. Reads no array data."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_NPZ_MEMBERS:
                raise NpzError(f"{path}: {len(infos)} members, more than the {MAX_NPZ_MEMBERS} a model file "
                               "may have; refused before reading")
            total = sum(i.file_size for i in infos)
            if total > max_bytes:
                raise NpzError(f"{path}: its arrays claim {_mib(total)} uncompressed, more than the "
                               f"{_mib(max_bytes)} a model file may hold; refused before reading "
                               "(a damaged or hostile file)")
            for info in infos:
                _check_member(path, zf, info)
    except NpzError:
        raise
    except Exception as e:  # zipfile.BadZipFile, OSError, EOFError, zlib.error ...
        raise NpzError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None


def _check_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse a member whose ``.npy`` header claims more than the member's declared size."""
    name = info.filename.removesuffix(".npy")
    if not info.filename.endswith(".npy"):
        return                                        # np.load reads it as raw bytes, bounded by its size
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            shape, _, dtype = _header(f, version)
    except Exception as e:
        raise NpzError(f"{path}: array {name!r} has no readable .npy header ({type(e).__name__}: {e})") from None
    if dtype.hasobject:
        return                                        # a pickle: np.load refuses it (allow_pickle=False)
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > info.file_size:
        raise NpzError(f"{path}: array {name!r} claims shape {shape} of {dtype} ({_mib(claimed)}), more than "
                       f"its member holds ({info.file_size} bytes); refused before reading")


def read_npz(path: str | os.PathLike, max_bytes: int = MAX_NPZ_BYTES) -> dict:
    """Every array of a ``.npz`` file, name -> ndarray, after :func:`check_declared_sizes`.

    Raises:
        NpzError: unreadable file, declarations over the bounds, a pickled or truncated member
            (the message names the file and the array).
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise NpzError(f"{path}: not a readable .npz file (not a zip archive)")
    check_declared_sizes(path, max_bytes)
    try:
        z = np.load(path, allow_pickle=False)
        names = list(z.files)
    except Exception as e:  # zipfile.BadZipFile, OSError, EOFError, ValueError ...
        raise NpzError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    data = {}
    with z:
        for k in names:
            try:
                data[k] = z[k]
            except ValueError as e:
                if "pickle" in str(e).lower():
                    raise NpzError(f"{path}: array {k!r} holds pickled objects, which are refused") from None
                raise NpzError(f"{path}: array {k!r} is not readable ({e})") from None
            except Exception as e:  # a truncated member: zlib.error, EOFError, BadZipFile ...
                raise NpzError(f"{path}: array {k!r} is not readable ({type(e).__name__}: {e})") from None
    return data


__all__ = ["MAX_NPZ_BYTES", "MAX_NPZ_MEMBERS", "NpzError", "check_declared_sizes", "read_npz"]
