"""Resampling a morphable model onto a regular R x R grid in its symmetric UV space.

Every grid vertex becomes a fixed linear combination of the original vertices, so the mean
and every basis column are resampled by one sparse matrix ``G`` (R*R, N):

* columns with u <= 0.5 lie in the flattened left half: find the UV triangle holding the
  grid point (points on edges, on the boundary and on the mid-line included) and take its
  barycentric weights;
* columns with u > 0.5 are the mirror images of columns R-1-j: the left surface point of
  the mirrored column is reflected and snapped to the closest point of the *right* half of
  the surface. So the grid is exactly mirror-symmetric in UV, and its mirror error
  (column j against R-1-j with x negated) is a property of the surface, not of the map.

Grid layout: row-major, row 0 at the top of the face (v = 1), column 0 at u = 0; vertex
(i, j) sits at u = j / (R-1), v = 1 - i / (R-1). Faces: two per cell, counter-clockwise seen
from outside.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from matplotlib.tri import Triangulation

from .mesh import closest_points_on_mesh, face_normals


def grid_uv(res: int) -> np.ndarray:
    """(R*R, 2) UV coordinates of the grid vertices, row-major, row 0 at v = 1."""
    t = np.linspace(0.0, 1.0, res)
    u, v = np.meshgrid(t, 1.0 - t)
    return np.stack([u.ravel(), v.ravel()], 1)


def grid_faces(res: int) -> np.ndarray:
    """(2 (R-1)^2, 3) triangles of the grid, counter-clockwise in UV (u right, v up)."""
    i, j = np.meshgrid(np.arange(res - 1), np.arange(res - 1), indexing="ij")
    a = (i * res + j).ravel()
    b, c, d = a + res, a + res + 1, a + 1          # below, below-right, right
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int64)


def grid_mirror(res: int) -> np.ndarray:
    """(R*R,) index of the mirror vertex: column j <-> column R-1-j."""
    idx = np.arange(res * res).reshape(res, res)
    return idx[:, ::-1].ravel().astype(np.int64)


def grid_midline(res: int) -> np.ndarray:
    """Vertices exactly on u = 0.5: the centre column when R is odd, none when R is even."""
    if res % 2 == 0:
        return np.zeros(0, dtype=np.int64)
    return (np.arange(res) * res + res // 2).astype(np.int64)


def locate_uv(uv: np.ndarray, F: np.ndarray, pts: np.ndarray):
    """Triangle and barycentric coordinates (clipped to the triangle) of UV points in a
    bijective UV triangulation. Points on edges or on the outer boundary get a triangle."""
    tri = Triangulation(uv[:, 0], uv[:, 1], F)
    t = tri.get_trifinder()(pts[:, 0], pts[:, 1]).astype(np.int64)
    miss = np.where(t < 0)[0]
    if len(miss):  # on the boundary up to rounding: nearest triangle by clamped barycentric
        Q = np.concatenate([pts[miss], np.zeros((len(miss), 1))], 1)
        V3 = np.concatenate([uv, np.zeros((len(uv), 1))], 1)
        t[miss] = closest_points_on_mesh(V3, F, Q, k=32)[0]
    a, b, c = uv[F[t, 0]], uv[F[t, 1]], uv[F[t, 2]]
    det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    l1 = ((pts[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (pts[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])) / det
    l2 = ((b[:, 0] - a[:, 0]) * (pts[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (pts[:, 0] - a[:, 0])) / det
    bary = np.clip(np.stack([1 - l1 - l2, l1, l2], 1), 0, None)
    return t, bary / bary.sum(1, keepdims=True)


def barycentric_matrix(F: np.ndarray, t: np.ndarray, bary: np.ndarray, n: int) -> sp.csr_matrix:
    """(M, n) sparse matrix whose row m holds the barycentric weights of point m."""
    rows = np.repeat(np.arange(len(t)), 3)
    return sp.csr_matrix((bary.ravel(), (rows, F[t].ravel())), shape=(len(t), n))


def resampling_matrix(left, right, res: int):
    """The (R*R, N) sparse matrix taking original vertices to grid vertices.

    Args:
        left: the embedded left half (:class:`.uv.HalfEmbedding`).
        right: (V, F, W) of the mirrored right half: the x > 0 half reflected to x <= 0, cut
            like the left half, with W its weights over the original vertices.
    """
    UV = grid_uv(res)
    is_left = UV[:, 0] <= 0.5
    # left columns
    t, b = locate_uv(left.uv, left.F, UV[is_left])
    G_left = barycentric_matrix(left.F, t, b, len(left.V)) @ left.W
    # right columns: mirror column -> left surface point -> closest point on mirrored right half
    mirror_rows = grid_mirror(res)[~is_left]
    tm, bm = locate_uv(left.uv, left.F, UV[mirror_rows])
    Q = np.einsum("mk,mkd->md", bm, left.V[left.F[tm]])
    n = face_normals(left.V, left.F)[tm]
    Vr, Fr, Wr = right
    tr, br, _ = closest_points_on_mesh(Vr, Fr, Q, normals=n)
    G_right = barycentric_matrix(Fr, tr, br, len(Vr)) @ Wr
    G = sp.vstack([G_left, G_right]).tocsr()
    order = np.concatenate([np.where(is_left)[0], np.where(~is_left)[0]])
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return G[inv]


def uv_of_points(left, Q: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """UV of surface points Q (M, 3) given in the canonical frame; rows with ``mirrored``
    True lie on the right half: they are reflected, found on the left half, and get u -> 1-u."""
    R = Q * np.where(mirrored[:, None], np.array([-1.0, 1, 1]), 1.0)
    t, b, _ = closest_points_on_mesh(left.V, left.F, R)
    uv = np.einsum("mk,mkd->md", b, left.uv[left.F[t]])
    uv[mirrored, 0] = 1 - uv[mirrored, 0]
    return uv
