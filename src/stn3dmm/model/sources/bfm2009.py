"""Basel Face Model 2009 with the 3DDFA expression model, from the original ``.mat`` files.

Owns reading ``01_MorphableModel.mat``, ``Model_Expression.mat`` and the map of the expression
model's vertices into BFM's, and the original's preparation (docs/paper.md, "Morphable
models"): the BFM vertices the expression model lacks (inside the mouth) get expression
displacements by Laplacian extrapolation (:func:`extrapolate_displacements`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import igl
import numpy as np
import scipy.io
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..morphable import ModelFileError, MorphableModel
from .wheel import SourceUnavailable, log_stderr


def load_bfm2009(bfm_path: str | os.PathLike, expression_path: str | os.PathLike,
                 index_map: str | os.PathLike | np.ndarray, n_id: int = 10, n_exp: int = 10,
                 landmarks: dict | None = None, add_mu_exp: bool = True,
                 scale_exp: bool | None = False, exact: bool = True,
                 log: Callable[[str], None] = log_stderr) -> MorphableModel:
    """BFM 2009 identity + 3DDFA expression model, in mm, coefficients ~ N(0, 1).

    basis_id[k] = shapePC[:, k] * shapeEV[k] / 1000. ``shapeEV`` is called "eigenvalues" in the
    BFM documentation, but BFM's own sampling code builds shapes as
    ``shapeMU + shapePC * (shapeEV .* alpha)`` with alpha ~ N(0, 1), and the original
    (3DMM-STN) multiplies by ``shapeEV`` too: it holds standard deviations, not variances,
    so it is used without a square root.

    Expression: w_exp (3M, E) covers the M vertices ``index_map`` names (0-based, in BFM's
    N-vertex numbering). Assumption: a file without ``sigma_exp``/``ev_exp`` has columns
    already scaled to N(0, 1) coefficients. ``scale_exp``: ``False`` (default) never scales,
    which is what the original (3DMM-STN) did with 3DDFA's file although that file carries
    ``sigma_exp``; ``None`` multiplies the columns by ``sigma_exp`` (or ``ev_exp``) when the
    file has one; ``True`` requires it. The log reports the resulting RMS displacement per
    component so a doubly scaled basis is noticed. ``mu_exp`` (3M, 1), when present and
    ``add_mu_exp``, is extrapolated like the basis and added to the mean (the original did not
    add it). All lengths are divided by 1000 (micrometres to mm).

    Args:
        bfm_path: ``01_MorphableModel.mat`` (shapeMU 3N x 1, shapePC 3N x K, shapeEV K x 1,
            tl T x 3 1-based; micrometres, vertex-interleaved x, y, z).
        expression_path: ``Model_Expression.mat`` (w_exp 3M x E, optional mu_exp, sigma_exp).
        index_map: (M,) array, or a .npy / .txt / .mat file holding it.
        n_id, n_exp: components to keep.
        landmarks: optional name -> (L,) BFM vertex indices (names as in ``LANDMARK_SETS``).
        exact: see :func:`extrapolate_displacements`.
        log: progress messages.
    """
    if n_id < 1 or n_exp < 0:
        raise ValueError(f"need n_id >= 1 and n_exp >= 0, got n_id={n_id}, n_exp={n_exp}")
    bfm_path, expression_path = Path(bfm_path), Path(expression_path)
    log(f"Reading {bfm_path}")
    bfm = _read_mat(bfm_path, ["shapeMU", "shapePC", "shapeEV", "tl"])
    mu = _column(bfm_path, "shapeMU", bfm["shapeMU"])
    n = len(mu) // 3
    pc = _matrix(bfm_path, "shapePC", bfm["shapePC"], 3 * n, n_id, f"3 x {n} vertices, n_id={n_id}")
    ev = _column(bfm_path, "shapeEV", bfm["shapeEV"], min_len=n_id)
    faces = _faces(bfm_path, bfm["tl"], n)

    ex = _read_mat(expression_path, ["w_exp"], ["mu_exp", "sigma_exp", "ev_exp"])
    idx = _index_map(index_map, n)
    m = len(idx)
    w_exp = _matrix(expression_path, "w_exp", ex["w_exp"], 3 * m, n_exp,
                    f"3 x the {m} vertices of the index map, n_exp={n_exp}")
    sigma_name = next((k for k in ("sigma_exp", "ev_exp") if k in ex), None)
    if scale_exp and sigma_name is None:
        raise ModelFileError(f"{expression_path}: scale_exp=True but there is no variable "
                             "sigma_exp or ev_exp")
    if sigma_name and scale_exp is not False:
        sigma = _column(expression_path, sigma_name, ex[sigma_name], min_len=n_exp)[:n_exp]
        w_exp = w_exp * sigma
        log(f"Scaling the expression basis by {sigma_name}")
    fields = [w_exp[:, e].reshape(m, 3) for e in range(n_exp)]
    if add_mu_exp and "mu_exp" in ex:
        fields.append(_column(expression_path, "mu_exp", ex["mu_exp"], exact_len=3 * m).reshape(m, 3))

    vertices = mu.reshape(n, 3)
    if fields:
        log(f"Extrapolating {len(fields)} expression fields to the {n - m} vertices the "
            "expression model lacks (Laplacian extrapolation)")
        disp = extrapolate_displacements(vertices, faces, idx, np.stack(fields), exact=exact)
    else:
        disp = np.zeros((0, n, 3))
    mean = vertices + (disp[n_exp] if len(fields) > n_exp else 0.0)
    basis_id = (pc * ev[:n_id]).T.reshape(n_id, n, 3)
    if n_exp:
        rms = np.sqrt((disp[:n_exp] ** 2).sum(-1).mean(-1)) / 1000.0
        log(f"Expression components move vertices by {rms.min():.3g} to {rms.max():.3g} mm RMS"
            + ("" if 0.01 < rms.max() < 20 else " - implausible for a face; check scale_exp"))
    return MorphableModel(
        mean=mean / 1000.0, basis_id=basis_id / 1000.0, basis_exp=disp[:n_exp] / 1000.0,
        faces=faces, landmarks=landmarks or {},
        source=f"BFM 2009 + 3DDFA expressions ({bfm_path.name}), {n_id} id + {n_exp} exp")


def extrapolate_displacements(vertices: np.ndarray, faces: np.ndarray, known: np.ndarray,
                              disp: np.ndarray, exact: bool = True) -> np.ndarray:
    """Extend displacement fields known on some vertices to the whole mesh.

    Least squares for the displaced shape Y: [L; S] Y = [L V; S V + E], displacement Y - V,
    where L is the cotangent Laplace-Beltrami matrix of the mesh (V, faces), S selects the
    known vertices and E holds their displacements. With ``exact=False`` this system is solved
    as written, with the original's scaling of L (twice ``igl.cotmatrix``, as its
    gradient/divergence construction gives); the known displacements then come back slightly
    smoothed. With ``exact=True`` (default) the rows S Y = S V + E are imposed exactly (the
    limit of weighting them infinitely): known vertices keep E, and only the unknown ones are
    solved for. One sparse factorisation serves every field and coordinate.

    Args:
        vertices: (N, 3) mean shape V.
        faces: (F, 3) 0-based triangles.
        known: (M,) distinct vertex indices with known displacement.
        disp: (C, M, 3) displacements of the known vertices, C fields.

    Returns:
        (C, N, 3) displacements of all vertices.
    """
    v = np.ascontiguousarray(vertices, dtype=np.float64)
    n, c = len(v), len(disp)
    known = np.asarray(known, dtype=np.int64)
    rhs_known = np.asarray(disp, dtype=np.float64).transpose(1, 0, 2).reshape(len(known), 3 * c)
    lap = igl.cotmatrix(v, np.ascontiguousarray(faces, dtype=np.int64)).tocsc()
    out = np.zeros((n, 3 * c))
    if exact:
        unknown = np.setdiff1d(np.arange(n), known)
        out[known] = rhs_known
        if len(unknown):
            a = lap[:, unknown]
            out[unknown] = _solve_normal(a, -(lap[:, known] @ rhs_known))
    else:
        s = sp.csr_matrix((np.ones(len(known)), (np.arange(len(known)), known)), shape=(len(known), n))
        a = sp.vstack([2.0 * lap, s]).tocsc()
        out = _solve_normal(a, np.vstack([np.zeros((n, 3 * c)), rhs_known]))
    return out.reshape(n, c, 3).transpose(1, 0, 2)


def _solve_normal(a: sp.spmatrix, b: np.ndarray) -> np.ndarray:
    """Least-squares solution of a x = b (b may have many columns) via the normal equations."""
    try:
        lu = spla.splu((a.T @ a).tocsc())
    except RuntimeError as e:  # "Factor is exactly singular"
        raise ValueError("Laplacian extrapolation failed: some vertices without known "
                         f"displacement are not connected to vertices with one ({e})") from None
    return lu.solve(np.asarray(a.T @ b))


def _read_mat(path: Path, required: Sequence[str], optional: Sequence[str] = ()) -> dict:
    """Variables of a MATLAB file (v5 through scipy, v7.3 through h5py), in MATLAB's layout."""
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    names = [*required, *optional]
    try:
        data = scipy.io.loadmat(path, variable_names=names)
        found = [w[0] for w in scipy.io.whosmat(path)]
    except NotImplementedError:  # MATLAB v7.3 = HDF5, arrays stored transposed
        import h5py
        with h5py.File(path, "r") as f:
            found = list(f.keys())
            data = {k: np.asarray(f[k]).T for k in names if k in f}
    except Exception as e:
        raise ModelFileError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
    missing = [k for k in required if k not in data]
    if missing:
        raise ModelFileError(f"{path}: missing variable(s) {', '.join(missing)} "
                             f"(the file holds: {', '.join(found) or 'nothing'})")
    return data


def _column(path: Path, name: str, a: np.ndarray, min_len: int = 1,
            exact_len: int | None = None) -> np.ndarray:
    """A (L, 1) or (1, L) MATLAB vector as (L,) float64, checked."""
    a = np.asarray(a)
    if a.ndim != 2 or 1 not in a.shape or a.dtype.kind not in "fiu":
        raise ModelFileError(f"{path}: variable {name} must be a numeric vector, "
                             f"got shape {a.shape}, dtype {a.dtype}")
    a = a.astype(np.float64).ravel()
    if exact_len is not None and len(a) != exact_len:
        raise ModelFileError(f"{path}: variable {name} has {len(a)} entries, expected {exact_len}")
    if len(a) < min_len or (name == "shapeMU" and len(a) % 3):
        raise ModelFileError(f"{path}: variable {name} has {len(a)} entries, expected "
                             + ("a multiple of 3" if name == "shapeMU" else f"at least {min_len}"))
    if not np.isfinite(a).all():
        raise ModelFileError(f"{path}: variable {name} contains NaN or infinity")
    return a


def _matrix(path: Path, name: str, a: np.ndarray, rows: int, cols: int, why: str) -> np.ndarray:
    """The first ``cols`` columns of a (rows, >= cols) numeric matrix, as float64."""
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[0] != rows or a.shape[1] < cols or a.dtype.kind not in "fiu":
        raise ModelFileError(f"{path}: variable {name} has shape {a.shape} and dtype {a.dtype}, "
                             f"expected a numeric matrix of shape ({rows}, >= {cols}) ({why})")
    return a[:, :cols].astype(np.float64)


def _faces(path: Path, tl: np.ndarray, n: int) -> np.ndarray:
    tl = np.asarray(tl)
    if tl.ndim != 2 or tl.shape[1] != 3 or not np.array_equal(tl, np.round(tl)):
        raise ModelFileError(f"{path}: variable tl must be a (T, 3) integer triangle list, "
                             f"got shape {tl.shape}")
    faces = tl.astype(np.int64) - 1
    if faces.size and (faces.min() < 0 or faces.max() >= n):
        raise ModelFileError(f"{path}: variable tl must hold 1-based vertex indices in 1..{n}")
    return faces


def _index_map(index_map, n: int) -> np.ndarray:
    """The (M,) 0-based BFM indices of the expression model's vertices."""
    where = "index map"
    if not isinstance(index_map, np.ndarray):
        path = Path(index_map)
        where = str(path)
        try:
            if path.suffix == ".npy":
                index_map = np.load(path, allow_pickle=False)
            elif path.suffix == ".mat":
                d = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
                if len(d) != 1:
                    raise ValueError(f"expected exactly one variable, found {', '.join(d) or 'none'}")
                index_map = next(iter(d.values()))
            else:
                index_map = np.loadtxt(path)
        except Exception as e:
            raise ModelFileError(f"{path}: not a readable index map ({type(e).__name__}: {e})") from None
    a = np.asarray(index_map).ravel()
    if a.dtype.kind not in "fiu" or not np.array_equal(a, np.round(a)):
        raise ModelFileError(f"{where}: must hold integer vertex indices")
    a = a.astype(np.int64)
    if a.size == 0:
        raise ModelFileError(f"{where}: is empty")
    if a.min() < 0 or a.max() >= n:
        raise ModelFileError(f"{where}: indices must be 0-based and lie in [0, {n}) "
                             f"(got [{a.min()}, {a.max()}]; a 1-based map?)")
    if len(np.unique(a)) != len(a):
        raise ModelFileError(f"{where}: repeats vertex indices")
    return a


def default_landmarks(index_map: str | os.PathLike | np.ndarray,
                      log: Callable[[str], None] = log_stderr) -> dict[str, list[int]]:
    """AFLW-21 and iBUG-68 in BFM 2009's numbering, mapped through the 3DDFA index map.

    The two sets are the default model's (whose 53,215 vertices are the index map's), so the
    iBUG-68 vertices come from the default model's data, fetched as ``--source default`` would
    fetch it when it is not cached.
    """
    from . import default_3ddfa

    idx = _index_map(index_map, n=10 ** 9)
    if len(idx) != default_3ddfa.N_VERTICES:
        raise ValueError(f"{index_map}: {len(idx)} entries, but mapping the default landmarks needs the "
                         f"{default_3ddfa.N_VERTICES}-vertex 3DDFA index map; or pass --landmarks FILE.json")
    try:
        folder = default_3ddfa.fetch_default_files(log=log)
    except SourceUnavailable as e:
        raise SourceUnavailable(f"--source bfm2009 takes its iBUG-68 landmarks from the default model's data, "
                                f"which is not cached and could not be fetched (or pass --landmarks FILE.json "
                                f"with both sets). {e}") from None
    kp = default_3ddfa.ibug68_indices(np.load(folder / "keypoints_sim.npy", allow_pickle=False), folder)
    return {"aflw21": idx[default_3ddfa.AFLW21].tolist(), "ibug68": idx[kp].tolist()}
