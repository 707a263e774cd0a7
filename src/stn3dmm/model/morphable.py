"""The morphable model type and its ``.npz`` file format.

A :class:`MorphableModel` is a linear shape model in millimetres with the y axis up::

    X(alpha_id, alpha_exp) = mean + sum_k alpha_id[k] * basis_id[k] + sum_e alpha_exp[e] * basis_exp[e]

The basis columns are pre-multiplied by their standard deviations, so coefficients are
N(0, 1). The class also carries the triangle list, the landmark vertex sets (AFLW-21 and
iBUG-68), and the bilateral symmetry: ``mirror[i]`` is the vertex that mirrors vertex ``i``
and ``midline`` lists the vertices on the symmetry line.

A *grid model* is a model whose vertices are a regular ``res x res`` grid in UV space,
row-major, row 0 at the top of the face. Its file stores the per-vertex arrays in image
layout; that layout is a contract other tools read (see :func:`save_model`):

========================  ==================  =========================================
array                     shape               meaning
========================  ==================  =========================================
``mean``                  (R, R, 3) float     mean shape, mm, y up
``basis_id``              (K, R, R, 3) float  identity basis, scaled to N(0, 1) coefficients
``basis_exp``             (E, R, R, 3) float  expression basis, same scaling
``faces``                 (F, 3) int          two triangles per grid cell
``landmarks_aflw21``      (21,) int           flat grid indices
``landmarks_ibug68``      (68,) int           flat grid indices
``res``                   () int              R
``source``                () str              where the model came from
``mirror``                (R*R,) int          mirror vertex of each vertex
``midline``               (M,) int            vertices on the symmetry line
``uv``                    (R, R, 2) float     texture coordinates, v = 1 at the top
========================  ==================  =========================================

A model that is not a grid stores the same names with a flat vertex axis: ``mean`` (N, 3),
``basis_id`` (K, N, 3), and so on, and ``res`` = 0. Files hold no pickled objects.
Required: every array above except ``mirror``, ``midline`` and ``uv``; both landmark sets
included. ``basis_id`` needs K >= 1; ``basis_exp`` may have E = 0 (no expression model).
Values: every float array finite, every vertex index in [0, N), ``mirror`` a permutation that
is its own inverse (``mirror[mirror[i]] == i``), ``uv`` in [0, 1]. The arrays may claim at most
:data:`~.npz.MAX_NPZ_BYTES` in all, checked before any is read (:mod:`.npz`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.paths import write_atomically
from .npz import MAX_NPZ_BYTES, NpzError, read_npz

LANDMARK_SETS = {"aflw21": 21, "ibug68": 68}
#: The named landmark set of each size: 21 -> "aflw21", 68 -> "ibug68".
SETS_BY_COUNT = {n: name for name, n in LANDMARK_SETS.items()}


def landmark_indices(landmarks: dict, landmark_set) -> tuple[np.ndarray, str]:
    """Resolve a landmark set against a model's ``landmarks`` dict.

    Args:
        landmarks: the model's name -> (L,) vertex indices.
        landmark_set: a name in ``landmarks``, or (L,) vertex indices.

    Returns:
        (indices (L,) int64, name): the name, or ``"custom"`` for explicit indices.
    """
    if isinstance(landmark_set, str):
        if landmark_set not in landmarks:
            raise ValueError(f"the model has no landmark set {landmark_set!r} (it has: {sorted(landmarks)})")
        return np.asarray(landmarks[landmark_set], dtype=np.int64).reshape(-1), landmark_set
    if hasattr(landmark_set, "cpu"):  # a tensor, perhaps on a GPU
        landmark_set = landmark_set.detach().cpu()
    return np.asarray(landmark_set, dtype=np.int64).reshape(-1), "custom"


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or breaks the file contract."""


@dataclass
class MorphableModel:
    """A linear 3D morphable model of the face (mm, y up, coefficients ~ N(0, 1)).

    Attributes:
        mean: (N, 3) mean shape.
        basis_id: (K, N, 3) identity basis.
        basis_exp: (E, N, 3) expression basis.
        faces: (F, 3) triangles, counter-clockwise seen from outside the head.
        landmarks: name -> (L,) vertex indices; names from ``LANDMARK_SETS``.
        mirror: (N,) index of the mirror-image vertex of each vertex.
        midline: (M,) vertices on the bilateral symmetry line.
        source: a short description of where the model came from.
        res: grid resolution R when the vertices form an R x R UV grid, else 0.
        uv: (N, 2) texture coordinates in [0, 1]^2 (v = 1 at the top), or None.
        extras: further named arrays stored in the file as they are (for a prepared grid
            model: the source mesh and its UV map, and the rigid frame change applied).
    """

    mean: np.ndarray
    basis_id: np.ndarray
    basis_exp: np.ndarray
    faces: np.ndarray
    landmarks: dict = field(default_factory=dict)
    mirror: np.ndarray | None = None
    midline: np.ndarray | None = None
    source: str = ""
    res: int = 0
    uv: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self):
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.basis_id = np.asarray(self.basis_id, dtype=np.float32)
        self.basis_exp = np.asarray(self.basis_exp, dtype=np.float32)
        self.faces = np.asarray(self.faces, dtype=np.int64)
        self.landmarks = {k: np.asarray(v, dtype=np.int64) for k, v in self.landmarks.items()}
        n = self.n_vertices
        if self.mirror is None:
            self.mirror = np.arange(n, dtype=np.int64)
        self.mirror = np.asarray(self.mirror, dtype=np.int64)
        self.midline = np.asarray([] if self.midline is None else self.midline, dtype=np.int64)
        if self.uv is not None:
            self.uv = np.asarray(self.uv, dtype=np.float32)
        self.res = int(self.res)
        _check_model(self, "model")

    @property
    def n_vertices(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_id(self) -> int:
        return int(self.basis_id.shape[0])

    @property
    def n_exp(self) -> int:
        return int(self.basis_exp.shape[0])

    def shape(self, alpha_id=None, alpha_exp=None) -> np.ndarray:
        """Vertices (N, 3) for coefficient vectors (K,) and (E,); missing ones are zero."""
        x = self.mean.astype(np.float64)
        if alpha_id is not None:
            a = np.asarray(alpha_id, dtype=np.float64)
            x = x + np.tensordot(a, self.basis_id[: len(a)], axes=1)
        if alpha_exp is not None:
            a = np.asarray(alpha_exp, dtype=np.float64)
            x = x + np.tensordot(a, self.basis_exp[: len(a)], axes=1)
        return x

    def truncated(self, n_id: int, n_exp: int) -> "MorphableModel":
        """The same model keeping only the first ``n_id`` and ``n_exp`` components."""
        if not (1 <= n_id <= self.n_id and 0 <= n_exp <= self.n_exp):
            raise ValueError(f"cannot keep {n_id} + {n_exp} components of a {self.n_id} + {self.n_exp} model")
        return MorphableModel(self.mean, self.basis_id[:n_id], self.basis_exp[:n_exp], self.faces,
                              self.landmarks, self.mirror, self.midline, self.source, self.res, self.uv,
                              self.extras)


def _check_model(m: MorphableModel, where: str) -> None:
    n = m.n_vertices
    problems = []
    if m.mean.ndim != 2 or m.mean.shape[1] != 3:
        problems.append(f"mean: expected shape (N, 3), got {m.mean.shape}")
    for name in ("basis_id", "basis_exp"):
        b = getattr(m, name)
        if b.ndim != 3 or b.shape[1:] != (n, 3):
            problems.append(f"{name}: expected shape (K, {n}, 3), got {b.shape}")
    if m.faces.ndim != 2 or m.faces.shape[1] != 3:
        problems.append(f"faces: expected shape (F, 3), got {m.faces.shape}")
    elif m.faces.size and (m.faces.min() < 0 or m.faces.max() >= n):
        problems.append(f"faces: indices must lie in [0, {n}), got [{m.faces.min()}, {m.faces.max()}]")
    for k, v in m.landmarks.items():
        if k not in LANDMARK_SETS:
            problems.append(f"landmarks: unknown set {k!r} (known: {', '.join(LANDMARK_SETS)})")
        elif v.shape != (LANDMARK_SETS[k],):
            problems.append(f"landmarks_{k}: expected shape ({LANDMARK_SETS[k]},), got {v.shape}")
        elif v.size and (v.min() < 0 or v.max() >= n):
            problems.append(f"landmarks_{k}: indices must lie in [0, {n})")
    if m.mirror.shape != (n,):
        problems.append(f"mirror: expected shape ({n},), got {m.mirror.shape}")
    elif n and (m.mirror.min() < 0 or m.mirror.max() >= n):
        problems.append(f"mirror: indices must lie in [0, {n})")
    if m.midline.ndim != 1 or (m.midline.size and (m.midline.min() < 0 or m.midline.max() >= n)):
        problems.append(f"midline: expected 1-D vertex indices in [0, {n})")
    if m.uv is not None and m.uv.shape != (n, 2):
        problems.append(f"uv: expected shape ({n}, 2), got {m.uv.shape}")
    if m.res and m.res * m.res != n:
        problems.append(f"res: {m.res} x {m.res} does not match {n} vertices")
    for name in ("mean", "basis_id", "basis_exp"):
        if not np.isfinite(getattr(m, name)).all():
            problems.append(f"{name}: contains NaN or infinity")
    if problems:
        raise ModelFileError(f"{where}: " + "; ".join(problems))


def save_model(model: MorphableModel, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` (.npz) atomically: a temporary file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, r = model.n_vertices, model.res
    shp = (r, r) if r else (n,)
    arrays = {
        "mean": model.mean.reshape(*shp, 3),
        "basis_id": model.basis_id.reshape(model.n_id, *shp, 3),
        "basis_exp": model.basis_exp.reshape(model.n_exp, *shp, 3),
        "faces": model.faces,
        "res": np.int64(r),
        "source": np.str_(model.source),
        "mirror": model.mirror,
        "midline": model.midline,
    }
    missing = [k for k in LANDMARK_SETS if k not in model.landmarks]
    if missing:
        raise ValueError(f"{path}: the model has no landmark set(s) {', '.join(missing)}, which the file "
                         "contract requires (give them to the source, e.g. prepare-model --landmarks)")
    for k in LANDMARK_SETS:
        arrays[f"landmarks_{k}"] = model.landmarks[k]
    if model.uv is not None:
        arrays["uv"] = model.uv.reshape(*shp, 2)
    for k, v in model.extras.items():
        if k in arrays or k in _SPEC:
            raise ValueError(f"extra array name {k!r} clashes with a contract array")
        arrays[k] = np.asarray(v)
    return write_atomically(path, lambda f: np.savez(f, **arrays))


# name -> (dtype kind(s) allowed, number of dims for a grid file, for a flat file)
_SPEC = {
    "mean": ("f", 3, 2),
    "basis_id": ("f", 4, 3),
    "basis_exp": ("f", 4, 3),
    "faces": ("iu", 2, 2),
    "res": ("iu", 0, 0),
    "source": ("U", 0, 0),
    "mirror": ("iu", 1, 1),
    "midline": ("iu", 1, 1),
    "uv": ("f", 3, 2),
    "landmarks_aflw21": ("iu", 1, 1),
    "landmarks_ibug68": ("iu", 1, 1),
}
#: Rounding slack of the [0, 1] range of ``uv`` (float32 coordinates computed in float64).
_UV_SLACK = 1e-6
_REQUIRED = ["mean", "basis_id", "basis_exp", "faces", "res", "source", "landmarks_aflw21", "landmarks_ibug68"]


def load_model_file(path: str | os.PathLike, max_bytes: int = MAX_NPZ_BYTES) -> MorphableModel:
    """Read a model ``.npz`` written by :func:`save_model` (or by another tool that follows
    the contract). Raises :class:`ModelFileError` naming the file, the array and the problem.

    Checked before anything is read: the sizes the file declares (at most ``max_bytes`` in
    all, :mod:`.npz`). Checked after: the shapes and dtypes of the contract, and the values the
    package relies on -- finite arrays, vertex indices in range, ``mirror`` a permutation that is
    its own inverse, ``uv`` in [0, 1] (:func:`_check_values`)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    try:
        data = read_npz(path, max_bytes)
    except NpzError as e:
        raise ModelFileError(str(e)) from None
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ModelFileError(f"{path}: missing array(s) {', '.join(missing)}")
    res = data["res"]
    if res.ndim != 0 or res.dtype.kind not in "iu" or int(res) < 0:
        raise ModelFileError(f"{path}: array 'res' must be one non-negative integer (R for a grid model, "
                             f"0 for a flat one), got {res.dtype} of shape {res.shape}"
                             + (f" = {res.item()}" if res.size == 1 else ""))
    grid = int(res) > 0
    if not grid and data["mean"].ndim == 3:
        raise ModelFileError(f"{path}: array 'res' is 0 (a flat model) but 'mean' has the grid shape "
                             f"{data['mean'].shape}: res must be R")
    for k, (kinds, nd_grid, nd_flat) in _SPEC.items():
        if k not in data:
            continue
        a = data[k]
        if a.dtype.kind not in kinds:
            want = {"f": "floating point", "iu": "integer", "U": "string"}[kinds]
            raise ModelFileError(f"{path}: array {k!r} has dtype {a.dtype}, expected {want}")
        nd = nd_grid if grid else nd_flat
        if a.ndim != nd:
            raise ModelFileError(f"{path}: array {k!r} has shape {a.shape}, expected {nd} dimensions")
    if data["basis_id"].shape[0] == 0:
        raise ModelFileError(f"{path}: array 'basis_id' has no components (shape {data['basis_id'].shape}); "
                             "a model needs at least one identity component")
    r = int(data["res"])
    mean = data["mean"]
    if grid:
        if mean.shape != (r, r, 3):
            raise ModelFileError(f"{path}: array 'mean' has shape {mean.shape}, expected ({r}, {r}, 3) for res={r}")
        n = r * r
    else:
        if mean.shape[-1] != 3:
            raise ModelFileError(f"{path}: array 'mean' has shape {mean.shape}, expected (N, 3)")
        n = mean.shape[0]
    vshape = mean.shape[:-1]
    for k in ("basis_id", "basis_exp"):
        if data[k].shape[1:] != (*vshape, 3):
            raise ModelFileError(f"{path}: array {k!r} has shape {data[k].shape}, expected (K, {', '.join(map(str, vshape))}, 3)")
    if "uv" in data and data["uv"].shape != (*vshape, 2):
        raise ModelFileError(f"{path}: array 'uv' has shape {data['uv'].shape}, expected ({', '.join(map(str, vshape))}, 2)")
    landmarks = {k: data[f"landmarks_{k}"] for k in LANDMARK_SETS if f"landmarks_{k}" in data}
    try:
        model = MorphableModel(
            mean=mean.reshape(n, 3),
            basis_id=data["basis_id"].reshape(data["basis_id"].shape[0], n, 3),
            basis_exp=data["basis_exp"].reshape(data["basis_exp"].shape[0], n, 3),
            faces=data["faces"],
            landmarks=landmarks,
            mirror=data.get("mirror"),
            midline=data.get("midline"),
            source=str(data["source"]),
            res=r if grid else 0,
            uv=data["uv"].reshape(n, 2) if "uv" in data else None,
            extras={k: v for k, v in data.items() if k not in _SPEC},
        )
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {str(e).removeprefix('model: ')}") from None
    _check_values(model, path)
    return model


def _check_values(m: MorphableModel, path: Path) -> None:
    """Refuse values that pass the shape checks but break what the package relies on: NaN or
    infinite texture coordinates (they reach the OBJ files as ``vt nan nan``), coordinates
    outside [0, 1], and a ``mirror`` that is not a symmetry of the vertices (the mirror of the
    mirror must be the vertex itself: flips and the symmetry loss index with it)."""
    n = m.n_vertices
    if m.uv is not None:
        bad = ~np.isfinite(m.uv).all(1)
        if bad.any():
            raise ModelFileError(f"{path}: array 'uv' has NaN or infinite texture coordinates at {int(bad.sum())} "
                                 f"of {n} vertices (first: vertex {int(np.argmax(bad))})")
        lo, hi = float(m.uv.min(initial=0.0)), float(m.uv.max(initial=1.0))
        if lo < -_UV_SLACK or hi > 1 + _UV_SLACK:
            raise ModelFileError(f"{path}: array 'uv' must lie in [0, 1] (texture coordinates), "
                                 f"got values in [{lo:.6g}, {hi:.6g}]")
    mirror = m.mirror
    if n and not np.array_equal(np.sort(mirror), np.arange(n)):
        repeated = n - len(np.unique(mirror))
        raise ModelFileError(f"{path}: array 'mirror' must be a permutation of the {n} vertices (each vertex the "
                             f"mirror of exactly one), but {repeated} of its entries repeat others")
    if n and not np.array_equal(mirror[mirror], np.arange(n)):
        i = int(np.argmax(mirror[mirror] != np.arange(n)))
        raise ModelFileError(f"{path}: array 'mirror' must be its own inverse (the mirror of a vertex's mirror "
                             f"is the vertex), but vertex {i} -> {int(mirror[i])} -> {int(mirror[mirror[i]])}")
