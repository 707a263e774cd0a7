"""Model preparation: source model -> clean mesh -> symmetric UV map -> R x R grid model.

:func:`prepare_grid_model` runs the whole pipeline and returns the grid model together with
a :class:`PrepareReport` of what it measured (mesh checks, UV bijectivity, mirror and
resampling errors, time per step). :func:`load_model` is the one-call entry point the rest
of the package uses: it returns the prepared default model, preparing it on first use.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .mesh import MeshReport, closest_points_on_mesh, mesh_report
from .morphable import MorphableModel, load_model_file, save_model
from .resample import (grid_faces, grid_midline, grid_mirror, grid_uv, resampling_matrix,
                       uv_of_points)
from .symmetry import canonical_frame, cut_at_midplane, mirror_pairs, mirror_plane
from .triangulate import fill_holes, recover_mesh
from .uv import embed_half, signed_areas


@dataclass
class PrepareReport:
    """Figures measured while preparing a grid model (all lengths in mm)."""

    res: int
    mesh: MeshReport | None = None
    mirror_plane: tuple = ()
    uv_flipped: int = 0
    uv_min_area: float = 0.0
    uv_clamped: float = 0.0
    grid_mirror_error: tuple = ()          # (mean, max) over grid vertices, mean shape
    resampling_rms: float = 0.0            # original mean vertices -> grid surface
    resampling_rms_face: float = 0.0       # same, inner face only (no ears, neck, rim)
    seconds: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"mesh: {self.mesh}"] if self.mesh else []
        n, d = self.mirror_plane
        out += [
            f"mirror plane: n = ({n[0]:.5f}, {n[1]:.5f}, {n[2]:.5f}), d = {d:.3f} mm",
            f"UV map (left half): {self.uv_flipped} flipped triangles, smallest area {self.uv_min_area:.2e}, "
            f"{100 * self.uv_clamped:.2f}% of cotangent weights clamped",
            f"grid {self.res}x{self.res}: mirror error mean {self.grid_mirror_error[0]:.3f} mm, "
            f"max {self.grid_mirror_error[1]:.3f} mm",
            f"resampling error (original vertices to grid surface): RMS {self.resampling_rms:.3f} mm, "
            f"inner face {self.resampling_rms_face:.3f} mm",
            "time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()),
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


def prepare_grid_model(src: MorphableModel, res: int = 112, log=print):
    """Resample ``src`` onto a symmetric ``res`` x ``res`` UV grid. Returns (model, report).

    The prepared model lives in a canonical frame: the mirror plane of the mean shape is
    x = 0 (a rigid change of at most a fraction of a degree for BFM-based models; it is
    stored in the file as ``frame_rotation`` and ``frame_offset``)."""
    if res < 16:
        raise ValueError(f"grid resolution must be at least 16, got {res}")
    rep = PrepareReport(res=res)
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        rep.seconds[name] = rep.seconds.get(name, 0.0) + now - clock
        clock = now

    V = src.mean.astype(np.float64)
    if len(src.faces) == 0:
        log(f"recovering a triangle mesh for {len(V)} vertices ...")
        F = recover_mesh(V, log=log)
        rep.mesh = mesh_report(V, F)
    else:
        F, rep.mesh = _ensure_disk(V, src.faces, log)
    lap("mesh")

    n, d = mirror_plane(V)
    rep.mirror_plane = (n, d)
    Rot, off = canonical_frame(n, d)
    Vc = (V - off) @ Rot.T
    Vh, Fh, Wh, on_plane = cut_at_midplane(Vc, F)
    left = embed_half(Vh, Fh, Wh, on_plane)
    A = signed_areas(left.uv, left.F)
    rep.uv_flipped, rep.uv_min_area, rep.uv_clamped = int((A <= 0).sum()), float(A.min()), left.clamped
    log(f"UV map: {rep.uv_flipped} flipped of {len(A)} triangles, {100 * left.clamped:.2f}% of weights clamped")
    lap("uv")

    # the right half, reflected onto x <= 0 (faces reversed to keep normals outward); its
    # weights Wr still refer to the original, unreflected vertices
    Vr, Fr, Wr, _ = cut_at_midplane(Vc * np.array([-1.0, 1, 1]), F[:, ::-1])
    G = resampling_matrix(left, (Vr, Fr, Wr), res)
    mean = G @ Vc
    b_id = np.stack([G @ (b @ Rot.T) for b in src.basis_id.astype(np.float64)])
    b_exp = np.stack([G @ (b @ Rot.T) for b in src.basis_exp.astype(np.float64)]) if src.n_exp else \
        np.zeros((0, res * res, 3))
    lap("resample")

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
    src_uv = uv_of_points(left, Vc, Vc[:, 0] > 0)

    # quality: mirror error of the grid and distance of the source surface to the grid surface
    g = mean.reshape(res, res, 3)
    m = g[:, ::-1] * np.array([-1.0, 1, 1])
    err = np.linalg.norm(g - m, axis=2)
    rep.grid_mirror_error = (float(err.mean()), float(err.max()))
    _, _, dist = closest_points_on_mesh(mean, grid_faces(res), Vc)
    rep.resampling_rms = float(np.sqrt(np.mean(dist ** 2)))
    inner = (src_uv[:, 0] > 0.15) & (src_uv[:, 0] < 0.85) & (src_uv[:, 1] > 0.15) & (src_uv[:, 1] < 0.9)
    rep.resampling_rms_face = float(np.sqrt(np.mean(dist[inner] ** 2)))
    lap("checks")

    mirror, midline = mirror_pairs(Vc, midline_tol=0.25 * np.median(np.linalg.norm(Vc[F[:, 0]] - Vc[F[:, 1]], axis=1)))
    model = MorphableModel(
        mean=mean, basis_id=b_id, basis_exp=b_exp, faces=grid_faces(res), landmarks=landmarks,
        mirror=grid_mirror(res), midline=grid_midline(res),
        source=f"{src.source}; symmetric Tutte UV grid {res}x{res}", res=res, uv=grid_uv(res),
        extras={"source_faces": F.astype(np.int64), "source_uv": src_uv.astype(np.float32),
                "source_mirror": mirror, "source_midline": midline,
                "frame_rotation": Rot, "frame_offset": off})
    for line in rep.lines():
        log(line)
    return model, rep


def load_model(path=None, res: int = 112, log=None) -> MorphableModel:
    """The grid model at ``path``; with no path, the prepared default model (prepared, and
    cached under :func:`stn3dmm.paths.default_model_path`, on first use)."""
    from ..paths import default_model_path

    if path is not None:
        return load_model_file(path)
    target = default_model_path(res)
    if target.exists():
        return load_model_file(target)
    from .sources import load_default_source

    log = log or (lambda msg: print(msg, flush=True))
    log(f"preparing the default model (once; cached at {target}) ...")
    model, _ = prepare_grid_model(load_default_source(log=log), res=res, log=log)
    save_model(model, target)
    return model
