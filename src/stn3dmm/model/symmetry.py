"""Bilateral symmetry of a face mesh: the mirror plane, a canonical frame, the mid-line cut.

Plain NumPy. The mirror plane is found from the surface itself (iterated closest points
between the vertices and their reflections), never from vertex pairing, because the default
model's vertices are not exact mirror twins.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree


def mirror_plane(V: np.ndarray, iters: int = 60, trim: float = 0.8):
    """Estimate the symmetry plane n . x = d of a point set (N, 3).

    Reflect the points in the plane x = median(x) (the model's x axis runs left to right),
    then align the reflected copy to the original by trimmed point-to-point ICP (rigid,
    Kabsch). Reflection followed by the alignment is an improper isometry ~ a reflection;
    its plane is read off: n = the eigenvector of its linear part's symmetric part with the
    eigenvalue nearest -1, d = n . b / 2 for its translation b.

    Returns (n (3,), d float), with n[0] > 0.
    """
    V = np.asarray(V, dtype=np.float64)
    n0 = np.array([1.0, 0.0, 0.0])
    A = np.eye(3) - 2 * np.outer(n0, n0)
    b = 2 * float(np.median(V[:, 0])) * n0
    tree = cKDTree(V)
    for _ in range(iters):
        X = V @ A.T + b
        dist, j = tree.query(X)
        keep = dist <= np.quantile(dist, trim)
        x, y = X[keep], V[j[keep]]
        mx, my = x.mean(0), y.mean(0)
        U, _, Wt = np.linalg.svd((x - mx).T @ (y - my))
        D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Wt.T @ U.T))])
        R = Wt.T @ D @ U.T
        t = my - R @ mx
        A, b = R @ A, R @ b + t
        if np.abs(R - np.eye(3)).max() < 1e-10 and np.abs(t).max() < 1e-9:
            break
    w, E = np.linalg.eigh((A + A.T) / 2)
    n = E[:, 0] * np.sign(E[0, 0] or 1.0)
    return n, float(n @ b / 2)


def canonical_frame(n: np.ndarray, d: float):
    """The rigid map x -> (x - d n) @ Rot.T that sends the plane n . x = d to x = 0 with the
    smallest rotation (y and z stay as close to the original axes as possible).
    Returns (Rot (3, 3), offset (3,)) with x_canonical = (x - offset) @ Rot.T."""
    n = n / np.linalg.norm(n)
    e = np.array([1.0, 0.0, 0.0])
    v, c = np.cross(n, e), float(n @ e)
    K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    Rot = np.eye(3) + K + K @ K / (1 + c)               # rotation taking n to e (c > -1)
    return Rot, d * n


def mirror_pairs(V: np.ndarray, midline_tol: float):
    """For vertices in a frame where the mirror plane is x = 0: ``mirror[i]`` = nearest vertex
    to the reflection of vertex i, and the vertices within ``midline_tol`` of the plane."""
    R = V * np.array([-1.0, 1.0, 1.0])
    mirror = cKDTree(V).query(R)[1].astype(np.int64)
    return mirror, np.where(np.abs(V[:, 0]) <= midline_tol)[0].astype(np.int64)


def cut_at_midplane(V: np.ndarray, F: np.ndarray, snap: float = 1e-3):
    """Cut a mesh along the plane x = 0 and return its x <= 0 half.

    Edges crossing the plane are split at the crossing; a crossing within ``snap`` (as a
    fraction of the edge) of an end puts that end on the plane instead (no slivers).

    Returns:
        Vc: (M, 3) vertices of the half (split points have x = 0; ends snapped onto the
            plane keep their true position, within ``snap`` of an edge length of it).
        Fc: (Tc, 3) its triangles, orientation kept.
        W: (M, N) sparse matrix expressing every half vertex as a combination of the input
           vertices (rows of an original vertex are one-hot, split points have two weights).
        on_plane: (M,) bool, the half's vertices on the cut.
    """
    V = np.asarray(V, dtype=np.float64)
    N = len(V)
    x = V[:, 0].copy()
    # ends nearly on the plane are treated as on it
    E = np.unique(np.sort(np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]), axis=1), axis=0)
    a, b = E[:, 0], E[:, 1]
    cross = (x[a] * x[b] < 0)
    t = np.where(cross, x[a] / np.where(cross, x[a] - x[b], 1), 0.0)
    near_a = cross & (t < snap)
    near_b = cross & (t > 1 - snap)
    x[a[near_a]] = 0.0
    x[b[near_b]] = 0.0
    side = np.sign(x)
    cross = side[a] * side[b] < 0
    a, b = a[cross], b[cross]
    t = x[a] / (x[a] - x[b])
    split_id = {(int(i), int(j)): N + k for k, (i, j) in enumerate(zip(a, b))}
    Pnew = V[a] + t[:, None] * (V[b] - V[a])
    Pnew[:, 0] = 0.0
    Vall = np.vstack([V, Pnew])                         # snapped ends keep their position
    rows = np.concatenate([np.arange(N), N + np.arange(len(a)), N + np.arange(len(a))])
    cols = np.concatenate([np.arange(N), a, b])
    vals = np.concatenate([np.ones(N), 1 - t, t])
    Wall = sp.csr_matrix((vals, (rows, cols)), shape=(len(Vall), N))
    side_all = np.concatenate([side, np.zeros(len(a))])

    def mid(i, j):
        return split_id.get((min(i, j), max(i, j)))

    out = []
    for tri in F.tolist():
        s = [side_all[v] for v in tri]
        if all(v <= 0 for v in s):
            out.append(tri)
            continue
        if all(v >= 0 for v in s):
            continue
        # walk the triangle's boundary, inserting crossings, keep the polygon on x <= 0
        poly = []
        for k in range(3):
            p, q = tri[k], tri[(k + 1) % 3]
            if side_all[p] <= 0:
                poly.append(p)
            m = mid(p, q)
            if m is not None:
                poly.append(m)
        for k in range(1, len(poly) - 1):               # fan (polygon is convex, <= 4 corners)
            out.append([poly[0], poly[k], poly[k + 1]])
    Fh = np.array(out, dtype=np.int64)
    used = np.unique(Fh)
    remap = -np.ones(len(Vall), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return Vall[used], remap[Fh], Wall[used], side_all[used] == 0
