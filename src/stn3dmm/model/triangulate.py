"""Recovering a triangle mesh for a scanline-ordered point cloud (the default 3DDFA model).

The default model ships vertices but no triangles. Its vertex order comes from the BFM
registration template: the vertices run in *strips* (polylines, mostly vertical columns,
about 630 of them in a few patches: central face, cheeks and ears, forehead, chin and neck),
and consecutive vertices of a strip are true mesh neighbours. The mesh is recovered by

1. **strips** – split the vertex order where a step is much longer than its neighbours;
2. **strip zipping** – for every vertex find the nearest vertex of *another* strip on each
   side (left/right of the strip, in the tangent plane), keep mutual partners, and zip each
   pair of neighbouring strips into a ladder of triangles with an optimal monotone
   stitching (dynamic programming over the two chains, minimising rung length);
3. **seam bridging** – the patches meet end-to-end, not side by side; their boundary
   chains that face each other across a seam are zipped the same way;
4. **repair** – faces are only ever added when they keep every edge at two faces and the
   orientation consistent; leftover problems (folds in the ears and nostrils) are removed
   by :func:`.mesh.clean_faces`;
5. **closing** – unused vertices are attached to the nearest boundary edge, and every hole
   except the outer boundary (the mouth slit included) is filled by a minimum-weight
   polygon triangulation (Liepa 2003 style dynamic programming).

The result is one connected, consistently oriented 2-manifold disk that uses every vertex.
Everything is deterministic.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from scipy.spatial import cKDTree

from .mesh import (boundary_loops, clean_faces, directed_edges, flip_caps, genus, loop_length, mesh_report,
                   vertex_normals)


# ----------------------------------------------------------------------------- strips

def split_strips(P: np.ndarray, min_jump: float, ratio: float = 2.5):
    """Split the vertex order into strips: break after vertex i when the step i -> i+1 is
    longer than ``min_jump`` and ``ratio`` times the median of the two steps on each side.

    Returns (starts, ends): strip k is vertices starts[k] .. ends[k]-1.
    """
    step = np.linalg.norm(np.diff(P, axis=0), axis=1)
    pad = np.concatenate([[np.nan, np.nan], step, [np.nan, np.nan]])
    around = np.stack([pad[:-4], pad[1:-3], pad[3:-1], pad[4:]], axis=1)
    med = np.nanmedian(around, axis=1)
    brk = np.where((step > min_jump) & (step > ratio * med))[0]
    return np.concatenate([[0], brk + 1]), np.concatenate([brk + 1, [len(P)]])


def _pca_normals(P, tree, k):
    _, nn = tree.query(P, k=k)
    Q = P[nn] - P[nn].mean(axis=1, keepdims=True)
    return np.linalg.eigh(np.einsum("nki,nkj->nij", Q, Q))[1][:, :, 0]


# ----------------------------------------------------------------------------- zipping

def zip_chains(P: np.ndarray, A, B, corr=None, band: int = 8) -> list:
    """Optimal ladder of triangles between index chains ``A`` and ``B`` running the same way.

    Dynamic programming over monotone paths from (A[0], B[0]) to (A[-1], B[-1]) minimising
    the summed rung length |A[i] - B[j]|. ``corr = (ia, jb)`` (matched positions) restricts
    the search to a band of ``band`` around that correspondence. Returns triangles
    (a_prev, a, b) and (a, b, b_prev), consistently oriented among themselves.
    """
    A, B = np.asarray(A), np.asarray(B)
    m, n = len(A), len(B)
    if m < 1 or n < 1 or m + n < 3:
        return []
    D = np.linalg.norm(P[A][:, None] - P[B][None], axis=2)
    if corr is not None:
        js = np.interp(np.arange(m), *corr)
        lo = np.clip(np.floor(js) - band, 0, n - 1).astype(int)
        hi = np.clip(np.ceil(js) + band, 0, n - 1).astype(int)
        lo = np.maximum.accumulate(lo)
        hi = np.minimum.accumulate(hi[::-1])[::-1]
        lo[0], hi[-1] = 0, n - 1
        hi = np.maximum(hi, np.concatenate([[0], lo[1:]]))  # keep the band connected
        lo = np.minimum(lo, np.concatenate([hi[:1], hi[:-1]]))
        cols = np.arange(n)
        D = np.where((cols >= lo[:, None]) & (cols <= hi[:, None]), D, np.inf)
    C = np.empty((m, n))
    C[0] = np.cumsum(D[0])
    for i in range(1, m):
        Ci, Cp, Di = C[i], C[i - 1], D[i]
        Ci[0] = Cp[0] + Di[0]
        for j in range(1, n):
            Ci[j] = Di[j] + (Cp[j] if Cp[j] < Ci[j - 1] else Ci[j - 1])
    tris, i, j = [], m - 1, n - 1
    while i > 0 or j > 0:
        if i > 0 and (j == 0 or C[i - 1, j] <= C[i, j - 1]):
            tris.append((A[i - 1], A[i], B[j]))
            i -= 1
        else:
            tris.append((A[i], B[j], B[j - 1]))
            j -= 1
    return tris[::-1]


class FaceSet:
    """A growing set of triangles that stays an oriented 2-manifold-with-boundary at its edges:
    a face is only added if no edge would get a third face and no half-edge a second use.

    ``groups`` (optional, shared between FaceSets) records which :meth:`add_chain` call
    added each face (sorted vertex triple -> group id), so whole ladders can be taken out."""

    def __init__(self, F=None, groups=None):
        self.groups = groups
        self.half = set()
        self.count = defaultdict(int)
        self.faces = []
        self.keys = set()
        for t in ([] if F is None else np.asarray(F).tolist()):
            self._add(tuple(t))

    @staticmethod
    def _half(t):
        return ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))

    def _add(self, t):
        for a, b in self._half(t):
            self.half.add((a, b))
            self.count[(min(a, b), max(a, b))] += 1
        self.faces.append(t)
        self.keys.add(tuple(sorted(t)))

    def fits(self, t) -> bool:
        return all((a, b) not in self.half and self.count[(min(a, b), max(a, b))] < 2
                   for a, b in self._half(t))

    def add_chain(self, tris) -> int:
        """Add a consistently oriented group of faces, flipped as a whole if that agrees
        better with the faces already present; faces that do not fit are skipped."""
        tris = [tuple(int(x) for x in t) for t in tris if len(set(t)) == 3]
        clash = sum(any(h in self.half for h in self._half(t)) for t in tris)
        clash_flipped = sum(any(h in self.half for h in self._half(t[::-1])) for t in tris)
        if clash_flipped < clash:
            tris = [t[::-1] for t in tris]
        added = 0
        gid = len(self.groups) if self.groups is not None else 0
        for t in tris:
            if tuple(sorted(t)) not in self.keys and self.fits(t):
                self._add(t)
                if self.groups is not None:
                    self.groups[tuple(sorted(t))] = gid
                added += 1
        return added

    def array(self) -> np.ndarray:
        return np.array(self.faces, dtype=np.int64).reshape(-1, 3)


def _runs(pa, pb, period_a=None, period_b=None, max_gap=4):
    """Split matched positions (pa[i] <-> pb[i]) into runs contiguous in pa; unwrap periodic
    positions (loops). Yields (pa_run, pb_run) with pb unwrapped and increasing pa."""
    pa, pb = np.asarray(pa), np.asarray(pb)
    order = np.argsort(pa, kind="stable")
    pa, pb = pa[order], pb[order]
    if period_a:
        gaps = np.diff(np.concatenate([pa, [pa[0] + period_a]]))
        k = int(np.argmax(gaps)) + 1
        pa, pb = np.roll(pa, -k), np.roll(pb, -k)
        pa = pa[0] + np.concatenate([[0], np.cumsum(np.diff(pa) % period_a)])
    cuts = np.where(np.diff(pa) > max_gap)[0] + 1
    for ra, rb in zip(np.split(pa, cuts), np.split(pb, cuts)):
        if len(ra) < 2:
            continue
        if period_b:
            half = period_b // 2
            rb = rb[0] + np.concatenate([[0], np.cumsum((np.diff(rb) + half) % period_b - half)])
        yield ra, rb


def _ladder(P, chain_a, ra, chain_b, rb, band, span_a=None, span_b=None):
    """Zip chain_a over ``span_a`` (default ra's range) with chain_b over ``span_b`` (default
    rb's range, walked backwards if rb falls as ra rises); ra <-> rb are matched positions."""
    slope = np.polyfit(ra, rb, 1)[0] if np.ptp(ra) > 0 else 1.0
    a0, a1 = span_a or (int(ra.min()), int(ra.max()))
    b0, b1 = span_b or (int(rb.min()), int(rb.max()))
    ca = [chain_a(p) for p in range(a0, a1 + 1)]
    cb = [chain_b(p) for p in range(b0, b1 + 1)]
    if slope < 0:
        cb, rbl = cb[::-1], b1 - rb
    else:
        rbl = rb - b0
    return zip_chains(P, ca, cb, (ra - a0, rbl), band)


def _span(r, length, reach=2):
    """The run's range, stretched to the strip's end when it stops within ``reach`` of it
    (strip ends often pair with the other patch across a seam, not with their neighbour)."""
    lo, hi = int(r.min()), int(r.max())
    return (0 if lo <= reach else lo), (length - 1 if hi >= length - 1 - reach else hi)


# ----------------------------------------------------------------------------- steps

def zip_strips(P, starts, ends, h, inside, max_gap=7.0, band=8, groups=None, lateral_frac=0.4):
    """Step 2: triangles between neighbouring strips. ``h`` is the typical vertex spacing."""
    n = len(P)
    sid = np.repeat(np.arange(len(starts)), ends - starts)
    pos = np.arange(n) - starts[sid]
    tree = cKDTree(P)
    N = _pca_normals(P, tree, 10)
    N *= np.sign(np.einsum("ij,ij->i", P - inside, N))[:, None]
    for a, b in zip(starts, ends):           # keep normals consistent along each strip
        s = np.concatenate([[1.0], np.sign(np.einsum("ij,ij->i", N[a + 1:b], N[a:b - 1]))])
        N[a:b] *= np.cumprod(s)[:, None]
    nxt = np.minimum(np.arange(n) + 1, ends[sid] - 1)
    prv = np.maximum(np.arange(n) - 1, starts[sid])
    T = P[nxt] - P[prv]
    S = np.cross(T / np.linalg.norm(T, axis=1, keepdims=True), N)
    S /= np.linalg.norm(S, axis=1, keepdims=True)
    dd, nn = tree.query(P, k=32)
    lateral = np.einsum("nkj,nj->nk", P[nn] - P[:, None], S)
    ok = (sid[nn] != sid[:, None]) & (dd < max_gap * h) & \
         (np.abs(np.einsum("nkj,nj->nk", N[nn], N)) > 0.3)
    partner = np.full((n, 2), -1)
    for si, sgn in enumerate((1, -1)):
        d = np.where(ok & (sgn * lateral > lateral_frac * dd), dd, np.inf)
        k = d.argmin(axis=1)
        has = np.isfinite(d[np.arange(n), k])
        partner[has, si] = nn[has, k[has]]
    # keep mutual partners: q's partner on some side lies in v's strip within 3 positions
    for si in range(2):
        v = np.where(partner[:, si] >= 0)[0]
        q = partner[v, si]
        r = partner[q]
        good = ((r >= 0) & (sid[np.maximum(r, 0)] == sid[v][:, None])
                & (np.abs(pos[np.maximum(r, 0)] - pos[v][:, None]) <= 3)).any(axis=1)
        partner[v[~good], si] = -1
    pairs = defaultdict(list)
    for si in range(2):
        v = np.where(partner[:, si] >= 0)[0]
        for a, b in zip(v.tolist(), partner[v, si].tolist()):
            A, B = sid[a], sid[b]
            pairs[(A, B) if A < B else (B, A)].append((a, b) if A < B else (b, a))
    chains = []
    for (A, B), lst in sorted(pairs.items()):
        lst = np.array(lst)
        for ra, rb in _runs(pos[lst[:, 0]], pos[lst[:, 1]]):
            tris = _ladder(P, lambda p, A=A: starts[A] + p, ra, lambda p, B=B: starts[B] + p, rb, band,
                           _span(ra, ends[A] - starts[A]), _span(rb, ends[B] - starts[B]))
            chains.append((len(ra), tris))
    chains.sort(key=lambda c: -c[0])        # best-supported ladders claim their edges first
    fs = FaceSet(groups=groups)
    for _, tris in chains:
        fs.add_chain(tris)
    return fs.array()


def _boundary_frame(P, F, loops):
    """Per boundary vertex (concatenated over loops): id, loop id, position, outward
    direction in the tangent plane (pointing away from the faces, into the gap)."""
    VN = vertex_normals(P, F)
    bv = np.concatenate(loops)
    lid = np.concatenate([np.full(len(lp), i) for i, lp in enumerate(loops)])
    lpos = np.concatenate([np.arange(len(lp)) for lp in loops])
    nxt = np.concatenate([np.roll(lp, -1) for lp in loops])
    prv = np.concatenate([np.roll(lp, 1) for lp in loops])
    # faces lie to the left of a loop walked along face-directed half-edges: out = t x n
    out = np.cross(P[nxt] - P[prv], VN[bv])
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    step = np.linalg.norm(P[nxt] - P[bv], axis=1)
    return bv, lid, lpos, out, step


def bridge_seams(P, F, h, inside, max_gap=3.5, band=8, skip=8, groups=None):
    """Step 3: zip boundary chains that face each other across a gap (patch seams)."""
    F = clean_faces(P, F, inside)
    loops = boundary_loops(F)
    bv, lid, lpos, out, step = _boundary_frame(P, F, loops)
    lens = np.array([len(lp) for lp in loops])
    dd, nn = cKDTree(P[bv]).query(P[bv], k=16)
    partner = np.full(len(bv), -1)
    for i in range(len(bv)):
        for d, j in zip(dd[i], nn[i]):
            if j == i or not np.isfinite(d):
                continue
            if lid[j] == lid[i]:
                k = abs(lpos[j] - lpos[i])
                if min(k, lens[lid[i]] - k) <= skip:
                    continue
            if d >= max(max_gap * h, 2.5 * step[i]):
                break
            u = (P[bv[j]] - P[bv[i]]) / d
            if u @ out[i] > 0.5 and -u @ out[j] > 0.5 and out[i] @ out[j] < -0.3:
                partner[i] = j
                break
    pp = np.where(partner >= 0, partner[np.maximum(partner, 0)], -1)
    dpos = np.abs(lpos[np.maximum(pp, 0)] - lpos)
    dpos = np.minimum(dpos, lens[lid] - dpos)
    mutual = (partner >= 0) & (pp >= 0) & (lid[np.maximum(pp, 0)] == lid) & (dpos <= 3)
    chain_groups, pair_runs = groups, defaultdict(list)
    for i in np.where(mutual)[0].tolist():
        j = partner[i]
        pair_runs[(lid[i], lid[j]) if lid[i] <= lid[j] else (lid[j], lid[i])].append(
            (i, j) if lid[i] <= lid[j] else (j, i))
    fs = FaceSet(F, groups=chain_groups)
    g0 = genus(F)
    for (A, B), lst in sorted(pair_runs.items()):
        lst = np.array(lst)
        LA, LB = lens[A], lens[B]
        for ra, rb in _runs(lpos[lst[:, 0]], lpos[lst[:, 1]], LA, LB):
            before = len(fs.faces)
            fs.add_chain(_ladder(P, lambda p, A=A: loops[A][p % LA], ra,
                                 lambda p, B=B: loops[B][p % LB], rb, band))
            # joining two different loops of one piece would make a handle: undo that
            if A != B and len(fs.faces) > before and genus(fs.array()) > g0:
                fs = FaceSet(fs.array()[:before], groups=chain_groups)
    return fs.array()


def attach_unused(P, F):
    """Step 5a: give every unused vertex a triangle with the nearest boundary edge it lies
    beyond, nearest vertices first, so that it joins the boundary loop of its hole."""
    used = np.zeros(len(P), bool)
    used[F.ravel()] = True
    todo = np.where(~used)[0]
    if len(todo) == 0:
        return F
    fs = FaceSet(F)
    live = {}
    for lp in boundary_loops(F):
        for a, b in zip(lp, lp[1:] + lp[:1]):
            live[(a, b)] = True
    VN = vertex_normals(P, F)
    edges = list(live)
    mids = np.array([(P[a] + P[b]) / 2 for a, b in edges])
    tree = cKDTree(mids)
    todo = todo[np.argsort(tree.query(P[todo])[0], kind="stable")]
    extra = []
    for u in todo.tolist():
        k = min(24, len(edges))
        cand = [edges[i] for i in np.atleast_1d(tree.query(P[u], k=k)[1])] + extra
        best, best_cost = None, np.inf
        for a, b in cand:
            if not live.get((a, b)):
                continue
            t = (b, a, u)
            if not fs.fits(t):
                continue
            n = VN[a] + VN[b]
            beyond = np.cross(P[b] - P[a], n) @ (P[u] - (P[a] + P[b]) / 2) > 0
            cost = (np.linalg.norm(P[u] - P[a]) + np.linalg.norm(P[u] - P[b])
                    - np.linalg.norm(P[a] - P[b])) * (1.0 if beyond else 4.0)
            if cost < best_cost:
                best, best_cost = (a, b), cost
        if best is None:
            continue
        a, b = best
        fs._add((b, a, u))
        live[(a, b)] = False
        live[(a, u)] = live[(u, b)] = True
        extra += [(a, u), (u, b)]
        VN[u] = VN[a] + VN[b]
    return fs.array()


def fill_hole(P, loop, VN, existing) -> list | None:
    """Minimum-weight triangulation of one boundary polygon (dynamic programming over
    sub-polygons). ``loop`` follows face-directed half-edges; weight of a triangle = area x
    (1 + 4 (1 - cos angle to the mean vertex normal)), so folded fillings cost more.
    Diagonals that are already mesh edges are forbidden. Returns triangles, or None."""
    ids = np.asarray(loop)
    n = len(ids)
    X, NV = P[ids], VN[ids]
    W = np.full((n, n), np.inf)
    O = np.full((n, n), -1)
    W[np.arange(n - 1), np.arange(1, n)] = 0.0
    for L in range(2, n):
        for i in range(0, n - L):
            k = i + L
            if (i, k) != (0, n - 1) and (min(ids[i], ids[k]), max(ids[i], ids[k])) in existing:
                continue
            m = np.arange(i + 1, k)
            nrm = np.cross(X[k] - X[m], X[i] - X[m])
            avg = NV[i] + NV[m] + NV[k]
            norm = np.linalg.norm(nrm, axis=1)
            cos = np.einsum("ij,ij->i", nrm, avg) / np.maximum(norm * np.linalg.norm(avg, axis=1), 1e-12)
            w = 0.5 * norm * (1 + 4 * (1 - cos)) + W[i, m] + W[m, k]
            j = int(np.argmin(w))
            W[i, k], O[i, k] = w[j], m[j]
    if not np.isfinite(W[0, n - 1]):
        return None
    tris, stack = [], [(0, n - 1)]
    while stack:
        i, k = stack.pop()
        if k - i >= 2:
            m = O[i, k]
            tris.append((ids[k], ids[m], ids[i]))
            stack += [(i, m), (m, k)]
    return tris


def fill_holes(P, F, keep=1, groups=None):
    """Step 5b: fill every boundary loop except the ``keep`` longest (the outer boundary)."""
    loops = boundary_loops(F)
    loops.sort(key=lambda lp: -loop_length(P, lp))
    VN = vertex_normals(P, F)
    existing = set(map(tuple, np.sort(directed_edges(F), axis=1).tolist()))
    fs = FaceSet(F, groups=groups)
    for lp in loops[keep:]:
        tris = fill_hole(P, lp, VN, existing)
        if tris:
            fs.add_chain(tris)
    return fs.array()


def find_handle(P, F, min_size):
    """A small axis-aligned box (lo, hi) holding a whole handle of the mesh, or None.

    Starts from the bounding box and repeatedly moves to any half-size box (27 overlapping
    candidates at quarter-size offsets) whose faces still have genus > 0."""
    lo, hi = P.min(0) - 1e-6, P.max(0) + 1e-6
    if genus(F) == 0:
        return None
    while (hi - lo).max() > min_size:
        size = (hi - lo) / 2
        for off in np.stack(np.meshgrid(*[[0, 0.5, 1]] * 3, indexing="ij"), -1).reshape(-1, 3):
            clo = lo + off * size
            inside = ((P >= clo) & (P <= clo + size)).all(1)
            sub = F[inside[F].all(1)]
            if len(sub) and genus(sub) > 0:
                lo, hi = clo, clo + size
                break
        else:
            break
    return lo, hi


def cut_handles(P, F, inside, h, groups, max_handles=20, log=None, clear_box=True):
    """Remove handles. A handle appears where a ladder joined two *different* boundary loops
    of one piece (e.g. zipped across a fold behind an ear). Find a box holding a handle,
    take out the smallest face group (ladder, bridge or hole filling) in it whose removal
    lowers the genus there, and re-close the mesh; repeat."""
    for _ in range(max_handles):
        box = find_handle(P, F, min_size=8 * h)
        if box is None:
            break
        inbox = ((P >= box[0]) & (P <= box[1])).all(1)
        sub_mask = inbox[F].all(1)
        sub = F[sub_mask]
        g0 = genus(F)
        gid = np.array([groups.get(tuple(sorted(t)), -1) for t in sub.tolist()])
        ids, sizes = np.unique(gid[gid >= 0], return_counts=True)
        for g in ids[np.argsort(sizes, kind="stable")].tolist():
            drop = np.where(sub_mask)[0][gid == g]
            if genus(np.delete(F, drop, axis=0)) < g0:
                F = np.delete(F, drop, axis=0)
                if log:
                    log(f"mesh: removed a {len(drop)}-face ladder making a handle near {np.round(P[sub[gid == g]].mean((0, 1)), 1)}")
                break
        else:   # no single group explains it: fall back to clearing the box
            if not clear_box:
                return F
            F = F[~inbox[F].any(1)]
            if log:
                log(f"mesh: cleared the box {np.round(box[0], 1)} .. {np.round(box[1], 1)} to remove a handle")
        if clear_box:
            F = _close(P, F, inside, groups)
    return F


def _close(P, F, inside, groups, max_rounds=6):
    for _ in range(max_rounds):
        F = clean_faces(P, F, inside)
        F = fill_holes(P, attach_unused(P, F), groups=groups)
        F = clean_faces(P, F, inside)
        rep = mesh_report(P, F)
        if rep.unused_vertices == 0 and len(rep.boundary_loops) == 1:
            break
    return F


def recover_mesh(P: np.ndarray, log=None, max_rounds: int = 6) -> np.ndarray:
    """Triangulate a scanline-ordered face point cloud ``P`` (N, 3) into one oriented
    2-manifold disk using every vertex. Returns faces (T, 3) int64, normals outward."""
    log = log or (lambda *a: None)
    P = np.asarray(P, dtype=np.float64)
    h = float(np.median(cKDTree(P).query(P, k=2)[0][:, 1]))
    lo, hi = P.min(0), P.max(0)
    inside = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] - 0.3 * (hi[2] - lo[2])])
    starts, ends = split_strips(P, min_jump=3 * h)
    log(f"mesh: {len(starts)} vertex strips, spacing {h:.2f}")
    groups = {}
    F = zip_strips(P, starts, ends, h, inside, groups=groups)
    F = cut_handles(P, clean_faces(P, F, inside), inside, h, groups, log=log, clear_box=False)
    log(f"mesh: zipped strips into {len(F)} faces, genus {genus(F)}")
    F = bridge_seams(P, F, h, inside, groups=groups)
    log(f"mesh: bridged patch seams, {len(F)} faces, genus {genus(F)}")
    F = _close(P, F, inside, groups, max_rounds)
    F = cut_handles(P, F, inside, h, groups, log=log)
    F = flip_caps(P, F)
    log(f"mesh: {mesh_report(P, F)}")
    return F
