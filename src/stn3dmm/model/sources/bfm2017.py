"""Basel Face Model 2017 and 2019, from their HDF5 (Statismo) files.

Owns reading ``shape/model/{mean, pcaBasis, pcaVariance}``,
``expression/model/{mean, pcaBasis, pcaVariance}`` and ``shape/representer/{points, cells}``
(the ``color`` group is ignored) into a :class:`~stn3dmm.model.morphable.MorphableModel`.
In these files ``mean`` is (3N,) vertex-interleaved x, y, z, ``pcaBasis`` (3N, K) has
orthonormal columns and ``pcaVariance`` (K,) holds variances, so column k is scaled by
sqrt(pcaVariance[k]); ``points`` is (3, N) and ``cells`` (3, T), 0-based.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from ..morphable import ModelFileError, MorphableModel
from .wheel import log_stderr

UNITS_TO_MM = {"mm": 1.0, "um": 1e-3}


def load_bfm2017(path: str | os.PathLike, n_id: int = 10, n_exp: int = 10, units: str = "auto",
                 landmarks: dict | None = None,
                 log: Callable[[str], None] = log_stderr) -> MorphableModel:
    """BFM 2017/2019 with ``n_id`` identity and ``n_exp`` expression components, in mm.

    mean = shape mean + expression mean; basis_id[k] = pcaBasis[:, k] * sqrt(pcaVariance[k]).

    Args:
        path: the ``.h5`` file (e.g. ``model2017-1_face12_nomouth.h5``, ``model2019_bfm.h5``).
        n_id, n_exp: components to keep (``n_exp=0`` also allows a file without expressions).
        units: unit of the file's coordinates: ``"mm"`` (the Basel 2017/2019 releases),
            ``"um"``, or ``"auto"`` (default): millimetres, unless the mean face is more than
            1000 units wide, which only micrometres can explain (said in the log).
        landmarks: optional name -> (L,) vertex indices (names as in ``LANDMARK_SETS``).
        log: progress messages.

    Raises:
        ModelFileError: unreadable file, or a missing or malformed dataset (named).
    """
    if n_id < 1 or n_exp < 0:
        raise ValueError(f"need n_id >= 1 and n_exp >= 0, got n_id={n_id}, n_exp={n_exp}")
    if units not in ("auto", *UNITS_TO_MM):
        raise ValueError(f"units must be 'auto', 'mm' or 'um', got {units!r}")
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    log(f"Reading {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        points = _dataset(f, path, "shape/representer/points")
        if points.ndim != 2 or points.shape[0] != 3:
            raise ModelFileError(f"{path}: dataset shape/representer/points has shape "
                                 f"{points.shape}, expected (3, N)")
        n = points.shape[1]
        cells = _dataset(f, path, "shape/representer/cells")[()]
        if cells.ndim != 2 or cells.shape[0] != 3 or cells.dtype.kind not in "iu":
            raise ModelFileError(f"{path}: dataset shape/representer/cells has shape {cells.shape} "
                                 f"and dtype {cells.dtype}, expected (3, T) integers")
        faces = cells.T.astype(np.int64)
        if faces.size and (faces.min() < 0 or faces.max() >= n):
            raise ModelFileError(f"{path}: dataset shape/representer/cells must hold 0-based "
                                 f"indices in [0, {n})")
        mean, basis_id = _pca(f, path, "shape", n, n_id)
        if n_exp or "expression" in f:
            exp_mean, basis_exp = _pca(f, path, "expression", n, n_exp)
            mean = mean + exp_mean
        else:
            basis_exp = np.zeros((0, n, 3))

    scale = UNITS_TO_MM.get(units)
    width = float(np.ptp(mean[:, 0]))
    if scale is None:
        scale = 1e-3 if width > 1000 else 1.0
        if scale != 1.0:
            log(f"{path}: the mean face is {width:.0f} units wide; assuming micrometres")
    elif width * scale > 1000:
        log(f"{path}: warning: with units={units!r} the mean face is {width * scale:.0f} mm wide")
    return MorphableModel(
        mean=mean * scale, basis_id=basis_id * scale, basis_exp=basis_exp * scale, faces=faces,
        landmarks=landmarks or {}, source=f"BFM 2017/2019 ({path.name}), {n_id} id + {n_exp} exp")


def _dataset(f: h5py.File, path: Path, name: str) -> h5py.Dataset:
    if name not in f or not isinstance(f[name], h5py.Dataset):
        raise ModelFileError(f"{path}: missing dataset {name}")
    return f[name]


def _pca(f: h5py.File, path: Path, group: str, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The (N, 3) mean and the (k, N, 3) basis scaled by standard deviations of one PCA model."""
    g = f"{group}/model"
    mean, basis, var = (_dataset(f, path, f"{g}/{name}") for name in ("mean", "pcaBasis", "pcaVariance"))
    if mean.size != 3 * n:
        raise ModelFileError(f"{path}: dataset {g}/mean has shape {mean.shape}, expected ({3 * n},) "
                             f"for the {n} vertices of shape/representer/points")
    if basis.ndim != 2 or basis.shape[0] != 3 * n or basis.shape[1] < k:
        raise ModelFileError(f"{path}: dataset {g}/pcaBasis has shape {basis.shape}, "
                             f"expected ({3 * n}, >= {k})")
    var = var[()].ravel().astype(np.float64)
    if len(var) < k or not (var[:k] >= 0).all():
        raise ModelFileError(f"{path}: dataset {g}/pcaVariance must hold at least {k} "
                             f"non-negative variances, got shape {var.shape}")
    mean = mean[()].astype(np.float64).reshape(n, 3)
    out = basis[:, :k].astype(np.float64) * np.sqrt(var[:k])
    if not (np.isfinite(out).all() and np.isfinite(mean).all()):
        raise ModelFileError(f"{path}: group {g} contains NaN or infinity")
    return mean, out.T.reshape(k, n, 3)
