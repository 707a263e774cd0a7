"""Synthetic grid models and meshes for the STN tests (and the benchmarks), built from formulas.

Owns: :func:`make_face_model` (a mirror-symmetric half-ellipsoid face cap with a nose ridge on a
res x res grid, smooth symmetric identity / expression components, AFLW-21 and iBUG-68
landmarks placed from 2-D templates), :func:`grid_faces`, :func:`make_sphere` /
:func:`make_plane` (known-answer visibility scenes), :func:`euler_to_axis_angle` and
:func:`brute_force_visibility`. The fixtures ``face_model`` and ``small_model`` are in
``tests/conftest.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stn3dmm.model import MorphableModel

FACE_WIDTH = 140.0   # mm, x extent of the grid
FACE_HEIGHT = 180.0  # mm, y extent

# AFLW-21 template (mm, frontal face, x right, y up), in the AFLW order of SPEC section 5.
AFLW21_TEMPLATE = np.array([
    (-52, 40), (-36, 44), (-18, 40), (18, 40), (36, 44), (52, 40),            # brows 1-6
    (-48, 22), (-34, 22), (-20, 22), (20, 22), (34, 22), (48, 22),            # eyes 7-12
    (-66, -5), (-14, -28), (0, -18), (14, -28), (66, -5),                     # ear, nose, ear 13-17
    (-25, -52), (0, -52), (25, -52), (0, -82),                                # mouth 18-20, chin 21
], dtype=np.float64)


def ibug68_template() -> np.ndarray:
    """68 iBUG points (mm, frontal, x right, y up) in the standard order, built from shapes."""
    pts = []
    for k in range(17):                      # 1-17 jaw, image-left ear to image-right ear via chin
        phi = math.pi * k / 16
        pts.append((-66 * math.cos(phi), 5 - 87 * math.sin(phi)))
    pts += [(-55, 38), (-45, 43), (-35, 45), (-25, 43), (-15, 40)]       # 18-22 brow (image left)
    pts += [(15, 40), (25, 43), (35, 45), (45, 43), (55, 38)]            # 23-27 brow (image right)
    pts += [(0, 22), (0, 10), (0, -2), (0, -15)]                          # 28-31 nose bridge to tip
    pts += [(-14, -26), (-7, -28), (0, -30), (7, -28), (14, -26)]         # 32-36 nose base
    pts += [(-48, 22), (-40, 27), (-30, 27), (-22, 22), (-30, 18), (-40, 18)]   # 37-42 eye (image left)
    pts += [(22, 22), (30, 27), (40, 27), (48, 22), (40, 18), (30, 18)]         # 43-48 eye (image right)
    pts += [(-26, -52), (-17, -46), (-7, -44), (0, -45), (7, -44), (17, -46),   # 49-60 outer lip
            (26, -52), (17, -58), (7, -61), (0, -62), (-7, -61), (-17, -58)]
    pts += [(-20, -52), (-8, -49), (0, -49), (8, -49), (20, -52), (8, -55), (0, -55), (-8, -55)]  # 61-68
    return np.asarray(pts, dtype=np.float64)


def grid_faces(res: int, symmetric: bool = True) -> np.ndarray:
    """Two counter-clockwise (seen from +z, x right, y up) triangles per cell of a res x res grid whose
    row 0 is at the top and column 0 at the left. With ``symmetric`` the diagonal direction is
    mirrored in the right half, so the triangulation is mirror-symmetric (exactly for odd res)."""
    faces = []
    half = (res - 1) / 2.0
    for i in range(res - 1):
        for j in range(res - 1):
            a, b, c, d = i * res + j, i * res + j + 1, (i + 1) * res + j, (i + 1) * res + j + 1
            if symmetric and j + 0.5 > half:
                faces += [(a, c, d), (a, d, b)]
            else:
                faces += [(a, c, b), (b, c, d)]
    return np.asarray(faces, dtype=np.int64)


def _nearest_vertices(xs, ys, template):
    """Grid vertex nearest to each template point (rows from y, columns from x, separately)."""
    cols = np.abs(xs[None, :] - template[:, :1]).argmin(1)
    rows = np.abs(ys[None, :] - template[:, 1:2]).argmin(1)
    return rows, cols


def make_face_model(res: int = 32, n_id: int = 5, n_exp: int = 3, symmetric_faces: bool = True) -> MorphableModel:
    """A mirror-symmetric synthetic grid face model (mm, y up, N(0, 1) coefficients).

    Mean: half-ellipsoid cap ``z = 70 sqrt(1 - (x/105)^2 - (y/135)^2)`` over x in [-70, 70],
    y in [-90, 90], plus a 28 mm nose ridge. Identity components (std-scaled): jaw width,
    forehead height, nose size, cheek fullness, chin drop. Expression: mouth open, smile, brows.
    All are mirror symmetric, so ``mirror`` (column j <-> res-1-j) is an exact symmetry.
    """
    r = res
    c = (r - 1) / 2.0
    xs = (np.arange(r) - c) * (FACE_WIDTH / (r - 1))
    ys = (c - np.arange(r)) * (FACE_HEIGHT / (r - 1))
    X, Y = np.meshgrid(xs, ys)  # (R, R): rows i (y down the grid), columns j
    ax = np.abs(X)
    Z = 70.0 * np.sqrt(1.0 - (X / 105.0) ** 2 - (Y / 135.0) ** 2)
    nose = np.exp(-0.5 * (X / 10.0) ** 2) * np.exp(-0.5 * ((Y + 12.0) / 16.0) ** 2)
    Z = Z + 28.0 * nose
    mean = np.stack((X, Y, Z), -1)
    zero = np.zeros_like(X)

    def field(dx=None, dy=None, dz=None):
        return np.stack((zero if dx is None else dx, zero if dy is None else dy, zero if dz is None else dz), -1)

    ids = [
        field(dx=0.08 * X / (1.0 + np.exp((Y + 30.0) / 12.0))),                      # jaw width
        field(dy=6.0 / (1.0 + np.exp(-(Y - 35.0) / 8.0))),                           # forehead height
        field(dz=6.0 * nose),                                                        # nose size
        field(dz=6.0 * np.exp(-((ax - 35.0) ** 2 + (Y + 15.0) ** 2) / (2 * 18.0 ** 2))),  # cheeks
        field(dy=-5.0 / (1.0 + np.exp((Y + 50.0) / 8.0))),                           # chin drop
    ]
    exps = [
        field(dy=-6.0 * np.exp(-0.5 * ((Y + 65.0) / 12.0) ** 2) * np.exp(-0.5 * (X / 30.0) ** 2)),   # mouth open
        field(dx=4.0 * (X / 25.0) * np.exp(-0.5 * ((ax - 25.0) / 12.0) ** 2) * np.exp(-0.5 * ((Y + 50.0) / 10.0) ** 2),
              dy=2.0 * np.exp(-0.5 * ((ax - 25.0) / 12.0) ** 2) * np.exp(-0.5 * ((Y + 50.0) / 10.0) ** 2)),  # smile
        field(dy=4.0 * np.exp(-0.5 * ((Y - 35.0) / 10.0) ** 2)),                                       # brows
    ]
    assert n_id <= len(ids) and n_exp <= len(exps)
    n = r * r
    basis_id = np.stack(ids[:n_id]).reshape(n_id, n, 3) if n_id else np.zeros((0, n, 3))
    basis_exp = np.stack(exps[:n_exp]).reshape(n_exp, n, 3) if n_exp else np.zeros((0, n, 3))
    ii, jj = np.meshgrid(np.arange(r), np.arange(r), indexing="ij")
    mirror = (ii * r + (r - 1 - jj)).reshape(-1)
    midline = (np.arange(r) * r + r // 2) if r % 2 else np.zeros(0, dtype=np.int64)
    lms = {}
    for name, tpl in (("aflw21", AFLW21_TEMPLATE), ("ibug68", ibug68_template())):
        rows, cols = _nearest_vertices(xs, ys, tpl)
        lms[name] = rows * r + cols
    u = jj / (r - 1)
    v = 1.0 - ii / (r - 1)
    return MorphableModel(mean.reshape(n, 3), basis_id, basis_exp, grid_faces(r, symmetric_faces), lms,
                          mirror=mirror, midline=midline, source="synthetic face", res=r,
                          uv=np.stack((u, v), -1).reshape(n, 2))


def make_sphere(radius: float = 50.0, n_lat: int = 40, n_lon: int = 80, center=(0.0, 0.0, 0.0)):
    """Closed UV sphere: vertices (N, 3) float64 and outward counter-clockwise faces (F, 3)."""
    verts = [(0.0, 0.0, radius), (0.0, 0.0, -radius)]  # poles on the z axis (north faces the viewer)
    for i in range(1, n_lat):
        th = math.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * math.pi * j / n_lon
            verts.append((radius * math.sin(th) * math.cos(ph), radius * math.sin(th) * math.sin(ph),
                          radius * math.cos(th)))
    v = np.asarray(verts) + np.asarray(center)

    def ring(i, j):
        return 2 + (i - 1) * n_lon + (j % n_lon)

    faces = []
    for j in range(n_lon):
        faces.append((0, ring(1, j), ring(1, j + 1)))
        faces.append((1, ring(n_lat - 1, j + 1), ring(n_lat - 1, j)))
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [(a, c, b), (b, c, d)]
    f = np.asarray(faces, dtype=np.int64)
    # orient outward: flip any triangle whose normal points towards the centre
    tri = v[f]
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    out = ((tri.mean(1) - np.asarray(center)) * nrm).sum(1) > 0
    f[~out] = f[~out][:, [0, 2, 1]]
    return v, f


def make_plane(x_range, y_range, z: float, n: int = 30):
    """Grid plane at depth z facing +z: vertices (n*n, 3), counter-clockwise faces."""
    xs = np.linspace(*x_range, n)
    ys = np.linspace(y_range[1], y_range[0], n)  # row 0 at the top (largest y)
    X, Y = np.meshgrid(xs, ys)
    v = np.stack((X, Y, np.full_like(X, z)), -1).reshape(-1, 3)
    return v, grid_faces(n, symmetric=False)


def euler_to_axis_angle(yaw, pitch=0.0, roll=0.0, dtype=torch.float64):
    """Axis-angle of R = Rz(roll) Rx(pitch) Ry(yaw) (radians; yaw about the model's y axis)."""
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("ZXY", np.stack(np.broadcast_arrays(roll, pitch, yaw), -1))
    return torch.as_tensor(rot.as_rotvec(), dtype=dtype)


def brute_force_visibility(vertices: np.ndarray, faces: np.ndarray, eps: float = 1e-6, chunk: int = 256,
                           query: np.ndarray | None = None) -> np.ndarray:
    """Ground truth for one mesh: vertex i is unoccluded when no triangle covers its (x, y) with a
    larger depth than z_i + eps (exact point-in-triangle and plane depth). (N,) bool, or (Q,) for
    the vertex indices ``query`` only."""
    points = vertices if query is None else vertices[query]
    tri = vertices[faces]  # (F, 3, 3)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1 = (b - a)[:, :2], (c - a)[:, :2]
    den = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]  # (F,)
    ok = np.abs(den) > 1e-12
    den = np.where(ok, den, 1.0)
    out = np.empty(len(points), dtype=bool)
    for s in range(0, len(points), chunk):
        q = points[s:s + chunk]
        d = q[:, None, :2] - a[None, :, :2]  # (n, F, 2)
        w1 = (d[..., 0] * v1[:, 1] - d[..., 1] * v1[:, 0]) / den
        w2 = (v0[:, 0] * d[..., 1] - v0[:, 1] * d[..., 0]) / den
        w0 = 1 - w1 - w2
        inside = ok & (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        z = w0 * a[:, 2] + w1 * b[:, 2] + w2 * c[:, 2]
        out[s:s + chunk] = ~((inside & (z > q[:, None, 2] + eps)).any(1))
    return out
