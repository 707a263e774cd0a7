"""The symmetric UV map: a Tutte embedding with cotangent weights of one half of the face.

This is the part of the original pipeline that was never released. The recipe:

1. The half mesh (x <= 0, cut at the mirror plane by :func:`.symmetry.cut_at_midplane`) is a
   disk whose boundary is the mid-line chain plus half of the outer rim.
2. The boundary goes to the left half of the unit square: the mid-line to u = 0.5 (v = 1 at
   its top end, 0 at its bottom end), the rim to the top, left and bottom sides, both by
   arc length. The right half of the face is the mirror image (u -> 1 - u).
3. Interior vertices solve the discrete harmonic (Laplace) equation with cotangent weights
   w_ij = (cot a_ij + cot b_ij) / 2. Obtuse triangles make some w_ij negative, and negative
   weights can fold the map; **we clamp every weight to at least** ``clamp`` times the median
   weight. With all weights positive and a convex boundary, Tutte's theorem (in Floater's
   form, 2003) guarantees a bijective embedding, at the cost of a little conformality where
   the clamp acts (its share is reported).
4. Two configurations break the theorem's preconditions and are removed first by splitting:
   triangles with all three corners on the boundary, and interior edges joining two
   boundary vertices (either can collapse onto a straight side of the square).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .mesh import boundary_loops, edge_face_counts


@dataclass
class HalfEmbedding:
    """Result of :func:`embed_half`.

    V: (M, 3) vertices of the (refined) half mesh; F: (T, 3) its triangles; uv: (M, 2);
    W: (M, N) sparse weights of each half vertex over the original model vertices;
    clamped: fraction of edge weights the clamp raised; n_split: triangles split for the
    Tutte preconditions.
    """

    V: np.ndarray
    F: np.ndarray
    uv: np.ndarray
    W: sp.csr_matrix
    clamped: float
    n_split: int


def cotangent_weights(V: np.ndarray, F: np.ndarray):
    """Unique edges (U, 2) and their cotangent weights (cot a + cot b) / 2 (U,)."""
    rows, cols, vals = [], [], []
    for k in range(3):
        i, j, o = F[:, (k + 1) % 3], F[:, (k + 2) % 3], F[:, k]
        e1, e2 = V[i] - V[o], V[j] - V[o]
        cot = np.einsum("ij,ij->i", e1, e2) / np.maximum(np.linalg.norm(np.cross(e1, e2), axis=1), 1e-300)
        rows.append(np.minimum(i, j)); cols.append(np.maximum(i, j)); vals.append(cot / 2)
    C = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(len(V), len(V))).tocsr()
    C.sum_duplicates()
    C = C.tocoo()
    return np.stack([C.row, C.col], 1), C.data


def _split_for_tutte(V, F, W, boundary):
    """Insert centroid vertices into all-boundary triangles and midpoints into interior
    edges whose two ends are on the boundary. Returns the refined (V, F, W, count)."""
    n_split = 0
    for _ in range(3):
        onb = np.zeros(len(V), bool)
        onb[boundary] = True
        # interior chords between two boundary vertices
        u, slot_cnt, cnt = edge_face_counts(F)
        chord = {tuple(e) for e in u[(cnt == 2) & onb[u[:, 0]] & onb[u[:, 1]]].tolist()}
        allb = onb[F].all(axis=1)
        if not chord and not allb.any():
            break
        newV, newW, out = [], [], []
        mids = {}
        for t, tri in enumerate(F.tolist()):
            if allb[t] and not any((min(tri[k], tri[(k + 1) % 3]), max(tri[k], tri[(k + 1) % 3])) in chord for k in range(3)):
                c = len(V) + len(newV)
                newV.append(V[tri].mean(0)); newW.append((W[tri[0]] + W[tri[1]] + W[tri[2]]) / 3)
                out += [[tri[0], tri[1], c], [tri[1], tri[2], c], [tri[2], tri[0], c]]
                n_split += 1
                continue
            ks = [k for k in range(3) if (min(tri[k], tri[(k + 1) % 3]), max(tri[k], tri[(k + 1) % 3])) in chord]
            if not ks:
                out.append(tri)
                continue
            k = ks[0]                                       # split one chord per pass
            a, b, o = tri[k], tri[(k + 1) % 3], tri[(k + 2) % 3]
            key = (min(a, b), max(a, b))
            if key not in mids:
                mids[key] = len(V) + len(newV)
                newV.append((V[a] + V[b]) / 2)
                newW.append((W[a] + W[b]) / 2)
            m = mids[key]
            out += [[a, m, o], [m, b, o]]
            n_split += 1
        V = np.vstack([V] + [np.asarray(v)[None] for v in newV]) if newV else V
        W = sp.vstack([W] + [sp.csr_matrix(w) for w in newW]).tocsr() if newW else W
        F = np.array(out, dtype=np.int64)
    return V, F, W, n_split


def embed_half(V: np.ndarray, F: np.ndarray, W: sp.csr_matrix, on_plane: np.ndarray,
               clamp: float = 0.05) -> HalfEmbedding:
    """Tutte-embed the x <= 0 half mesh (a disk) into [0, 0.5] x [0, 1].

    Args:
        V, F: the half mesh from :func:`.symmetry.cut_at_midplane` (mirror plane x = 0).
        W: its (M, N) weights over the original vertices; carried through refinement.
        on_plane: (M,) bool, vertices on the cut.
        clamp: lower bound for cotangent weights, relative to their median.
    """
    loops = boundary_loops(F)
    if len(loops) != 1:
        raise ValueError(f"the half mesh must be a disk with one boundary loop, found {len(loops)}")
    V, F, W, n_split = _split_for_tutte(V, F, W, np.asarray(loops[0]))
    on_plane = np.concatenate([on_plane, np.zeros(len(V) - len(on_plane), bool)])
    loop = np.asarray(boundary_loops(F)[0])
    xy = V[loop, :2]
    if np.sum(xy[:, 0] * np.roll(xy[:, 1], -1) - np.roll(xy[:, 0], -1) * xy[:, 1]) < 0:
        loop = loop[::-1]                               # counter-clockwise seen from the front
    onp = on_plane[loop]
    starts = np.where(onp & ~np.roll(onp, 1))[0]       # where the mid-line chain begins
    if onp.all() or len(starts) != 1:
        raise ValueError(f"the mid-line cut is not one chain ({len(starts)} pieces): the mirror plane "
                         "must meet the surface in one curve from rim to rim")
    loop = np.roll(loop, -starts[0])
    n_mid = int(onp.sum())
    mid = loop[:n_mid]                                 # bottom -> top (counter-clockwise)
    rim = np.concatenate([loop[n_mid - 1:], loop[:1]])  # top -> left side -> bottom
    uv = np.zeros((len(V), 2))

    def arclen(chain):
        s = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(V[chain], axis=0), axis=1))])
        return s / s[-1]

    uv[mid] = np.stack([np.full(len(mid), 0.5), arclen(mid)], 1)
    p = 2 * arclen(rim)                                # perimeter of the half square, 0..2
    # pin the rim vertices nearest to the two corners exactly onto them, so the boundary
    # polygon is the whole half square; stretch the arc length piecewise in between
    k1 = int(np.argmin(np.abs(p - 0.5)))
    k2 = int(np.argmin(np.abs(p - 1.5)))
    if not 0 < k1 < k2 < len(p) - 1:
        raise ValueError("the rim has too few vertices to reach the corners of the square")
    p = np.interp(p, [0, p[k1], p[k2], 2], [0, 0.5, 1.5, 2])[:, None]
    uv[rim] = np.where(p <= 0.5, np.concatenate([0.5 - p, 1 + 0 * p], 1),
                       np.where(p <= 1.5, np.concatenate([0 * p, 1.5 - p], 1),
                                np.concatenate([p - 1.5, 0 * p], 1)))
    # Tutte with clamped cotangent weights
    E, w = cotangent_weights(V, F)
    floor = clamp * np.median(w[w > 0])
    clamped = float(np.mean(w < floor))
    w = np.maximum(w, floor)
    n = len(V)
    Wm = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([E[:, 0], E[:, 1]]), np.concatenate([E[:, 1], E[:, 0]]))),
                       shape=(n, n)).tocsr()
    L = sp.diags(np.asarray(Wm.sum(1)).ravel()) - Wm
    bnd = np.zeros(n, bool)
    bnd[loop] = True
    I, B = np.where(~bnd)[0], np.where(bnd)[0]
    A = L[I][:, I].tocsc()
    rhs = -L[I][:, B] @ uv[B]
    solve = spla.factorized(A)
    uv[I] = np.stack([solve(rhs[:, 0]), solve(rhs[:, 1])], 1)
    return HalfEmbedding(V=V, F=F, uv=uv, W=W.tocsr(), clamped=clamped, n_split=n_split)


def signed_areas(uv: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(T,) signed UV areas; positive = counter-clockwise."""
    a, b, c = uv[F[:, 0]], uv[F[:, 1]], uv[F[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
