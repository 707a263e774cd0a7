"""A restricted unpickler for data pickles that hold only NumPy arrays.

Owns :func:`safe_load`, the only way this package reads a pickle. A pickle can name any
importable callable and have it called while loading, so :class:`pickle.Unpickler` would run
whatever a downloaded file asks for. :func:`safe_load` resolves only the few globals NumPy
needs to rebuild arrays, dtypes and scalars; dicts, lists, tuples, strings and numbers need no
globals at all. Anything else is refused with :class:`pickle.UnpicklingError` before it runs.
"""

from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import io
import os
import pickle

import numpy as np

try:  # NumPy >= 2 (the old ``numpy.core`` names still appear in files written by NumPy 1)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


def _numpy_globals() -> dict:
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _multiarray._reconstruct  # protocols 0-4
        allowed[(f"{core}.multiarray", "scalar")] = _multiarray.scalar  # NumPy scalars
        allowed[(f"{core}.numeric", "_frombuffer")] = _numeric._frombuffer  # protocol 5
    return allowed


# (module, name) -> the object it may resolve to. Nothing here can run code or touch files.
ALLOWED_GLOBALS = {
    **_numpy_globals(),
    ("_codecs", "encode"): _codecs.encode,  # protocol 2 stores bytes as latin-1 text
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
}


class _Refused(pickle.UnpicklingError):
    """A global outside the allow-list (the message already names it and the file)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, where: str):
        super().__init__(file, encoding="latin1")  # latin1: arrays pickled by Python 2
        self._where = where

    def find_class(self, module: str, name: str):
        key = (module, name)  # Python 2 names (``__builtin__.set``) -> Python 3 names
        key = _compat_pickle.NAME_MAPPING.get(key, (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        try:
            return ALLOWED_GLOBALS[key]
        except KeyError:
            raise _Refused(
                f"{self._where}: refused to load global '{module}.{name}': only NumPy arrays "
                "and plain containers are allowed (the file is not a plain data pickle, "
                "or it is malicious)") from None


def safe_load(path_or_file):
    """Unpickle a file that holds only NumPy arrays, scalars and plain containers.

    Args:
        path_or_file: a path, or a binary file object opened for reading.

    Returns:
        The unpickled object, e.g. a dict of ``np.ndarray``.

    Raises:
        pickle.UnpicklingError: the pickle names a global outside :data:`ALLOWED_GLOBALS`
            (the message names the global and the file), or it is not a valid pickle.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        where = os.fspath(path_or_file)
        with open(path_or_file, "rb") as f:
            return _load(f, where)
    return _load(path_or_file, str(getattr(path_or_file, "name", "<pickle stream>")))


def _load(f: io.BufferedIOBase, where: str):
    try:
        return _RestrictedUnpickler(f, where).load()
    except _Refused:
        raise
    except Exception as e:  # EOFError, UnpicklingError, ... from a truncated or foreign file
        raise pickle.UnpicklingError(f"{where}: not a valid pickle ({type(e).__name__}: {e})") from None
