"""Making the UV map of the whole source mesh a bijection onto (nearly all of) the unit square.

The left half of the source mesh takes its UVs from the Tutte embedding (:mod:`.uv`); the
right half maps through the mirrored surface (:func:`.resample.uv_of_points`). That keeps
the map symmetric, but where the mirror correspondence is not injective (the ears, where
the two halves' meshes differ) right-half triangles flip. This module repairs such a map
with the smallest change it can find, in two steps:

1. :func:`monotone_boundary` — the rim: every boundary vertex goes onto the square's
   perimeter, and right-half vertices whose perimeter position runs against the loop order
   are re-placed by 3D arc length between their well-ordered neighbours. The left half's
   rim vertices (the anchors) are exactly on the square already and never move.
2. :func:`repair_flips` — the interior: the vertices of flipped or degenerate triangles,
   and a neighbourhood that grows by one ring per round, are re-solved by a Tutte solve
   (uniform, all-positive weights) with every other vertex held fixed, until no triangle is
   bad. Uniform weights rather than cotangent ones: on this mesh's sliver-filled ear folds
   the cotangent weights, even clamped, squeeze nested pockets to areas below 1e-20. In the
   limit the region is the whole interior, a Tutte embedding with a convex boundary, which
   Floater's theorem makes bijective; on the default model it stops after a few rounds.

Interior edges joining two rim vertices (chords) cannot be embedded with both ends on one
straight side of the square, so their ends are released from the rim (they move slightly
inwards, leaving a notch a fraction of a triangle deep).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

from .mesh import boundary_loops, edge_face_counts
from .uv import signed_areas


def _perimeter(uv: np.ndarray) -> np.ndarray:
    """(B,) position in [0, 4) of points (B, 2) on (or near) the unit square's perimeter,
    counter-clockwise from (0, 0): bottom, right, top, left side."""
    u, v = uv[:, 0], uv[:, 1]
    side = np.stack([v, 1 - u, 1 - v, u], 1).argmin(1)
    return np.choose(side, [u, 1 + v, 3 - u, 4 - v]) % 4


def _on_square(p: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_perimeter`: (B,) positions -> (B, 2) points on the perimeter."""
    p = p % 4
    s = np.minimum(np.floor(p).astype(int), 3)
    f = p - s
    one, zero = np.ones_like(f), np.zeros_like(f)
    u = np.choose(s, [f, one, 1 - f, zero])
    v = np.choose(s, [zero, f, one, 1 - f])
    return np.stack([u, v], 1)


def _longest_increasing(x: np.ndarray) -> np.ndarray:
    """Indices of a longest strictly increasing subsequence of x (patience sorting)."""
    import bisect

    tails, tail_idx, prev = [], [], np.full(len(x), -1)
    for i, xi in enumerate(x):
        k = bisect.bisect_left(tails, xi)
        if k == len(tails):
            tails.append(xi); tail_idx.append(i)
        else:
            tails[k] = xi; tail_idx[k] = i
        prev[i] = tail_idx[k - 1] if k else -1
    out, i = [], tail_idx[-1] if tail_idx else -1
    while i >= 0:
        out.append(i)
        i = prev[i]
    return np.array(out[::-1], dtype=np.int64)


def monotone_boundary(uv: np.ndarray, V: np.ndarray, loop: np.ndarray, anchor: np.ndarray):
    """Put every rim vertex on the square, in loop order.

    Args:
        uv: (N, 2) UVs; V: (N, 3) vertex positions (for arc length); loop: (B,) the boundary
            loop; anchor: (N,) bool, vertices whose UV is trusted (the Tutte half's rim).
    Returns (uv (N, 2) with the rim replaced, number of rim vertices re-placed).
    """
    loop = np.asarray(loop)
    p = _perimeter(uv[loop])
    steps = (np.diff(np.r_[p, p[0]]) + 2) % 4 - 2
    if steps.sum() < 0:                                  # make the loop run counter-clockwise
        loop, p = loop[::-1], p[::-1]
    if not anchor[loop].any():
        raise ValueError("monotone_boundary needs at least one anchor on the rim")
    k = int(np.argmax(anchor[loop]))
    loop, p = np.roll(loop, -k), np.roll(p, -k)          # start at an anchor
    q = np.r_[p[0], p[0] + np.cumsum((np.diff(p) + 2) % 4 - 2)]
    a = np.r_[np.where(anchor[loop])[0], len(loop)]
    qa = np.r_[q[a[:-1]], q[0] + 4]
    ok = anchor[loop].copy()
    for k in range(len(a) - 1):          # between two anchors: the longest increasing run
        seg = np.arange(a[k] + 1, a[k + 1])
        seg = seg[(q[seg] > qa[k]) & (q[seg] < qa[k + 1])]
        ok[seg[_longest_increasing(q[seg])]] = True
    s = np.r_[0, np.cumsum(np.linalg.norm(np.diff(V[loop], axis=0), axis=1))]
    q2 = q.copy()
    q2[~ok] = np.interp(s[~ok], s[ok], q[ok])
    out = np.array(uv, dtype=np.float64)
    out[loop] = np.where(anchor[loop][:, None], out[loop], _on_square(q2))
    return out, int((~ok).sum())


def _adjacency(F: np.ndarray, n: int) -> sp.csr_matrix:
    i = np.concatenate([F[:, 0], F[:, 1], F[:, 2]])
    j = np.concatenate([F[:, 1], F[:, 2], F[:, 0]])
    A = sp.coo_matrix((np.ones(2 * len(i)), (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    A.data[:] = 1.0
    return A


def repair_flips(uv: np.ndarray, F: np.ndarray, fixed: np.ndarray, min_area: float = 1e-14,
                 max_rounds: int = 1000):
    """Re-solve the UVs around flipped or degenerate triangles until there are none.

    Args:
        uv: (N, 2) UVs; F: (T, 3) triangles, counter-clockwise when unflipped;
        fixed: (N,) bool, vertices that must not move (the rim);
        min_area: a triangle with a signed UV area below this is bad.
    Returns (uv (N, 2), moved (N,) bool: the vertices re-solved, rounds).
    """
    n = len(uv)
    uv = np.array(uv, dtype=np.float64)
    Adj = _adjacency(F, n)
    L = (sp.diags(np.asarray(Adj.sum(1)).ravel()) - Adj).tocsr()
    free = np.zeros(n, bool)
    for r in range(max_rounds + 1):
        bad = signed_areas(uv, F) < min_area
        if not bad.any():
            return uv, free, r
        if r == max_rounds:
            break
        seed = np.zeros(n, bool)
        seed[F[bad].ravel()] = True
        seed &= ~fixed
        if not seed.any():
            raise ValueError(f"{int(bad.sum())} bad UV triangle(s) have only fixed corners")
        # grow the free components that hold bad vertices (and the bad vertices) by a ring
        region = seed | free
        idx = np.where(region)[0]
        _, lab = connected_components(Adj[idx][:, idx], directed=False)
        grow = np.zeros(n, bool)
        grow[idx[np.isin(lab, lab[seed[idx]])]] = True
        free |= (grow | (Adj @ grow.astype(float) > 0)) & ~fixed
        I, B = np.where(free)[0], np.where(~free)[0]
        rhs = -(L[I][:, B] @ uv[B])
        solve = spla.factorized(L[I][:, I].tocsc())
        uv[I] = np.stack([solve(rhs[:, 0]), solve(rhs[:, 1])], 1)
    raise ValueError(f"UV repair did not converge in {max_rounds} rounds "
                     f"({int(bad.sum())} bad triangles left)")


def make_bijective(uv: np.ndarray, V: np.ndarray, F: np.ndarray, anchor: np.ndarray,
                   min_area: float = 1e-14):
    """The whole-mesh UV map (N, 2) repaired into a bijection (see the module docstring).

    Args:
        uv: (N, 2) the symmetric but possibly folded map; V: (N, 3); F: (T, 3) a disk;
        anchor: (N,) bool, vertices whose UVs come from the Tutte half (left side).
    Returns (uv (N, 2), moved (N,) bool, rounds).
    """
    loops = boundary_loops(F)
    if len(loops) != 1:
        raise ValueError(f"the source mesh must be a disk with one boundary loop, found {len(loops)}")
    loop = np.asarray(loops[0])
    out, _ = monotone_boundary(uv, V, loop, anchor)
    fixed = np.zeros(len(V), bool)
    fixed[loop] = True
    u, _, cnt = edge_face_counts(F)
    chord = (cnt == 2) & fixed[u[:, 0]] & fixed[u[:, 1]]
    fixed[u[chord].ravel()] = False
    out, moved, rounds = repair_flips(out, F, fixed, min_area=min_area)
    moved |= np.linalg.norm(out - uv, axis=1) > 1e-12
    return out, moved, rounds


def covers_once(uv: np.ndarray, F: np.ndarray, min_area: float = 1e-14) -> bool:
    """True when the map is a bijection onto the region its boundary encloses: every triangle
    is positively oriented (area >= ``min_area``) and the triangles' areas add up to the
    area inside the boundary loop (so nothing overlaps)."""
    A = signed_areas(uv, F)
    loop = np.asarray(boundary_loops(F)[0])
    x, y = uv[loop, 0], uv[loop, 1]
    enclosed = abs(0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    return bool(A.min() >= min_area and abs(A.sum() - enclosed) < 1e-9 * max(enclosed, 1e-300))
