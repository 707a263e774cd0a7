"""Model preparation: source model -> clean mesh -> symmetric UV map -> R x R grid model.

:func:`prepare_grid_model` runs the whole pipeline and returns the grid model together with
a :class:`PrepareReport` of what it measured (mesh checks, UV bijectivity, mirror and
resampling errors, time per step). Where prepared files are kept, and how a model is found
by name, is :mod:`.store`'s job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .mesh import MeshReport, closest_points_on_mesh, face_normals, mesh_report
from .morphable import MorphableModel
from .resample import (grid_faces, grid_midline, grid_mirror, grid_uv, resampling_matrix,
                       uv_of_points)
from .symmetry import canonical_frame, cut_at_midplane, mirror_pairs, mirror_plane
from .triangulate import fill_holes, recover_mesh
from .uv import embed_half, signed_areas
from .uv_repair import make_bijective
from ..core.defaults import GRID_RES

#: Written into every prepared file; bump it when preparation changes what it writes, so that a
#: default model cached by an earlier version is prepared again (2: the source UV map repair).
PREPARED_BY = "stn3dmm grid preparation 2"


@dataclass
class PrepareReport:
    """Figures measured while preparing a grid model (all lengths in mm)."""

    res: int
    mesh: MeshReport | None = None
    mirror_plane: tuple = ()
    uv_flipped: int = 0
    uv_min_area: float = 0.0
    uv_clamped: float = 0.0
    source_uv_folded: int = 0              # whole source mesh, mirror-mapped, before repair
    source_uv_moved: int = 0               # vertices the repair moved off the mirror map
    source_uv_asym: tuple = (0.0, 0.0)     # (mean over moved, max) UV distance they moved
    source_uv_min_area: float = 0.0        # whole source mesh, after repair
    grid_mirror_error: tuple = ()          # (mean, max) over grid vertices, mean shape
    resampling_rms: float = 0.0            # original mean vertices -> grid surface
    resampling_rms_face: float = 0.0       # same, inner face only (no ears, neck, rim)
    grid_to_source_rms: float = 0.0        # grid surface (centroids, edge midpoints) -> original
    grid_to_source_rms_face: float = 0.0   # same, inner face only
    grid_folds: int = 0                    # grid triangles facing opposite to the source surface
    seconds: dict = field(default_factory=dict)       # wall time per step
    cpu_seconds: dict = field(default_factory=dict)   # CPU time per step (all threads)

    def lines(self) -> list[str]:
        """The figures as log lines (the mesh line is logged by the mesh step itself)."""
        n, d = self.mirror_plane
        out = [
            f"mirror plane: n = ({n[0]:.5f}, {n[1]:.5f}, {n[2]:.5f}), d = {d:.3f} mm",
            f"UV map (left half): {self.uv_flipped} flipped triangles, smallest area {self.uv_min_area:.2e}, "
            f"{100 * self.uv_clamped:.2f}% of cotangent weights clamped",
            f"UV map (whole source mesh): {self.source_uv_folded} bad triangles through the mirror, "
            f"repaired by moving {self.source_uv_moved} vertices (mean {self.source_uv_asym[0]:.4f}, "
            f"max {self.source_uv_asym[1]:.4f} in UV); now 0 flipped, smallest area {self.source_uv_min_area:.2e}",
            f"grid {self.res}x{self.res}: mirror error mean {self.grid_mirror_error[0]:.3f} mm, "
            f"max {self.grid_mirror_error[1]:.3f} mm",
            f"resampling error (original vertices to grid surface): RMS {self.resampling_rms:.3f} mm, "
            f"inner face {self.resampling_rms_face:.3f} mm; grid surface to original: RMS "
            f"{self.grid_to_source_rms:.3f} mm, inner face {self.grid_to_source_rms_face:.3f} mm",
            f"grid folds: {self.grid_folds} of {2 * (self.res - 1) ** 2} triangles face away from the source surface",
            "time: " + ", ".join(f"{k} {v:.1f} s (CPU {self.cpu_seconds.get(k, 0):.1f} s)" for k, v in self.seconds.items()),
        ]
        return out


def _ensure_disk(V, F, log):
    """A mesh with triangles from its source: close every hole but the outer boundary."""
    rep = mesh_report(V, F)
    if len(rep.boundary_loops) > 1:
        log(f"closing {len(rep.boundary_loops) - 1} hole(s) of the source mesh before flattening")
        F = fill_holes(V, F)
        rep = mesh_report(V, F)
    if not rep.is_disk or rep.unused_vertices:
        raise ValueError(f"the source mesh must be one disk using every vertex: {rep}")
    return F, rep


@dataclass
class SymmetricUV:
    """The symmetric UV map of a source mesh (result of :func:`symmetric_uv`).

    Rot (3, 3), off (3,): the canonical frame, x_c = (x - off) @ Rot.T; Vc: (N, 3) the mean
    in it; left: the Tutte-embedded left half (:class:`.uv.HalfEmbedding`); source_uv:
    (N, 2) the whole source mesh's UV map, a bijection; mirrored_uv: (N, 2) the same before
    the repair (exactly mirror-symmetric, folded at the ears); moved: (N,) bool, the
    vertices the repair moved."""

    plane: tuple
    Rot: np.ndarray
    off: np.ndarray
    Vc: np.ndarray
    left: object
    source_uv: np.ndarray
    mirrored_uv: np.ndarray
    moved: np.ndarray


def source_mesh(src: MorphableModel, log=print):
    """Step "mesh": the source's triangles (recovered when it has none) as one disk.
    Returns (F (T, 3), MeshReport)."""
    V = src.mean.astype(np.float64)
    if len(src.faces) == 0:
        log(f"recovering a triangle mesh for {len(V)} vertices ...")
        F = recover_mesh(V, log=log)
        return F, mesh_report(V, F)                 # recover_mesh logged its report
    F, rep = _ensure_disk(V, src.faces, log)
    log(f"mesh: {rep}")
    return F, rep


def symmetric_uv(V: np.ndarray, F: np.ndarray) -> SymmetricUV:
    """Step "UV": mirror plane, canonical frame, Tutte map of the left half, and the whole
    source mesh's UV map (mirrored, then repaired into a bijection by :mod:`.uv_repair`)."""
    n, d = mirror_plane(V)
    Rot, off = canonical_frame(n, d)
    Vc = (V - off) @ Rot.T
    Vh, Fh, Wh, on_plane = cut_at_midplane(Vc, F)
    left = embed_half(Vh, Fh, Wh, on_plane)
    mirrored = uv_of_points(left, Vc, Vc[:, 0] > 0)
    uv, moved, _ = make_bijective(mirrored, Vc, F, anchor=Vc[:, 0] <= 0)
    return SymmetricUV((n, d), Rot, off, Vc, left, uv, mirrored, moved)


def resample_model(src: MorphableModel, suv: SymmetricUV, F: np.ndarray, res: int):
    """Step "resample": mean and bases on the R x R grid, and the landmarks carried over.
    Returns (mean (R*R, 3), basis_id (K, R*R, 3), basis_exp (E, R*R, 3), landmarks)."""
    Vc, Rot, left = suv.Vc, suv.Rot, suv.left
    # the right half, reflected onto x <= 0 (faces reversed to keep normals outward); its
    # weights Wr still refer to the original, unreflected vertices
    Vr, Fr, Wr, _ = cut_at_midplane(Vc * np.array([-1.0, 1, 1]), F[:, ::-1])
    G = resampling_matrix(left, (Vr, Fr, Wr), res)
    mean = G @ Vc
    b_id = np.stack([G @ (b @ Rot.T) for b in src.basis_id.astype(np.float64)])
    b_exp = np.stack([G @ (b @ Rot.T) for b in src.basis_exp.astype(np.float64)]) if src.n_exp else \
        np.zeros((0, res * res, 3))
    # landmarks: UV of the source vertex, then the nearest grid vertex in 3D around that cell
    landmarks = {}
    for name, idx in src.landmarks.items():
        P = Vc[idx]
        uv = uv_of_points(left, P, P[:, 0] > 0)
        i0, j0 = np.rint((1 - uv[:, 1]) * (res - 1)).astype(int), np.rint(uv[:, 0] * (res - 1)).astype(int)
        best = []
        for p, i, j in zip(P, i0, j0):
            ii, jj = np.meshgrid(np.clip(np.arange(i - 2, i + 3), 0, res - 1), np.clip(np.arange(j - 2, j + 3), 0, res - 1))
            cand = (ii * res + jj).ravel()
            best.append(cand[np.argmin(np.linalg.norm(mean[cand] - p, axis=1))])
        landmarks[name] = np.array(best, dtype=np.int64)
    return mean, b_id, b_exp, landmarks


def measure_quality(rep: PrepareReport, suv: SymmetricUV, F: np.ndarray, mean: np.ndarray, res: int) -> None:
    """Fill the report's quality figures (UV maps, mirror error, resampling error, folds)."""
    A = signed_areas(suv.left.uv, suv.left.F)
    rep.uv_flipped, rep.uv_min_area, rep.uv_clamped = int((A <= 0).sum()), float(A.min()), suv.left.clamped
    shift = np.linalg.norm(suv.source_uv - suv.mirrored_uv, axis=1)
    rep.source_uv_folded = int((signed_areas(suv.mirrored_uv, F) < 1e-14).sum())
    rep.source_uv_moved = int(suv.moved.sum())
    rep.source_uv_asym = (float(shift[suv.moved].mean()) if suv.moved.any() else 0.0, float(shift.max()))
    rep.source_uv_min_area = float(signed_areas(suv.source_uv, F).min())
    Vc, uv = suv.Vc, suv.source_uv
    g = mean.reshape(res, res, 3)
    err = np.linalg.norm(g - g[:, ::-1] * np.array([-1.0, 1, 1]), axis=2)
    rep.grid_mirror_error = (float(err.mean()), float(err.max()))
    GF = grid_faces(res)
    _, _, dist = closest_points_on_mesh(mean, GF, Vc)
    inner = (uv[:, 0] > 0.15) & (uv[:, 0] < 0.85) & (uv[:, 1] > 0.15) & (uv[:, 1] < 0.9)
    rep.resampling_rms = float(np.sqrt(np.mean(dist ** 2)))
    rep.resampling_rms_face = float(np.sqrt(np.mean(dist[inner] ** 2)))
    # the other direction: points of the grid surface (face centroids and edge midpoints)
    P = np.concatenate([mean[GF].mean(1), (mean[GF[:, 0]] + mean[GF[:, 1]]) / 2,
                        (mean[GF[:, 1]] + mean[GF[:, 2]]) / 2])
    guv = grid_uv(res)
    Puv = np.concatenate([guv[GF].mean(1), (guv[GF[:, 0]] + guv[GF[:, 1]]) / 2, (guv[GF[:, 1]] + guv[GF[:, 2]]) / 2])
    t, _, back = closest_points_on_mesh(Vc, F, P)
    pin = (Puv[:, 0] > 0.15) & (Puv[:, 0] < 0.85) & (Puv[:, 1] > 0.15) & (Puv[:, 1] < 0.9)
    rep.grid_to_source_rms = float(np.sqrt(np.mean(back ** 2)))
    rep.grid_to_source_rms_face = float(np.sqrt(np.mean(back[pin] ** 2)))
    # folds: grid triangles facing away from the source surface they lie on
    nt = len(GF)
    rep.grid_folds = int((np.einsum("ij,ij->i", face_normals(mean, GF), face_normals(Vc, F)[t[:nt]]) < 0).sum())


def prepare_grid_model(src: MorphableModel, res: int = GRID_RES, log=print):
    """Resample ``src`` onto a symmetric ``res`` x ``res`` UV grid. Returns (model, report).

    The steps are :func:`source_mesh`, :func:`symmetric_uv` and :func:`resample_model`; the
    report times each (wall and CPU seconds). The prepared model lives in a canonical frame:
    the mirror plane of the mean shape is x = 0 (a rigid change of at most a fraction of a
    degree for BFM-based models; it is stored in the file as ``frame_rotation`` and
    ``frame_offset``)."""
    if res < 16:
        raise ValueError(f"grid resolution must be at least 16, got {res}")
    rep = PrepareReport(res=res)
    clock = (time.perf_counter(), time.process_time())

    def lap(name):
        nonlocal clock
        now = (time.perf_counter(), time.process_time())
        rep.seconds[name] = now[0] - clock[0]
        rep.cpu_seconds[name] = now[1] - clock[1]
        clock = now

    F, rep.mesh = source_mesh(src, log)
    lap("mesh")
    suv = symmetric_uv(src.mean.astype(np.float64), F)
    rep.mirror_plane = suv.plane
    lap("uv")
    mean, b_id, b_exp, landmarks = resample_model(src, suv, F, res)
    lap("resample")
    measure_quality(rep, suv, F, mean, res)
    lap("checks")

    Vc = suv.Vc
    mirror, midline = mirror_pairs(Vc, midline_tol=0.25 * np.median(np.linalg.norm(Vc[F[:, 0]] - Vc[F[:, 1]], axis=1)))
    model = MorphableModel(
        mean=mean, basis_id=b_id, basis_exp=b_exp, faces=grid_faces(res), landmarks=landmarks,
        mirror=grid_mirror(res), midline=grid_midline(res),
        source=f"{src.source}; symmetric Tutte UV grid {res}x{res}", res=res, uv=grid_uv(res),
        extras={"source_faces": F.astype(np.int64), "source_uv": suv.source_uv,
                "source_mirror": mirror, "source_midline": midline,
                "frame_rotation": suv.Rot, "frame_offset": suv.off, "prepared_by": np.str_(PREPARED_BY)})
    for line in rep.lines():
        log(line)
    return model, rep

