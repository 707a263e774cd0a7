"""Triangle-mesh topology: edges, boundary loops, orientation, normals, repair and checks.

Plain NumPy functions on ``V`` (N, 3) float vertices and ``F`` (T, 3) int triangles. The mesh
recovery (:mod:`.triangulate`), the UV map (:mod:`.uv`) and the tests all use these.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


def directed_edges(F: np.ndarray) -> np.ndarray:
    """(3T, 2) half-edges a->b of every triangle, in order: edge k of face t is row k*T + t."""
    return np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])


def _edge_keys(F: np.ndarray, directed: bool = False) -> np.ndarray:
    """(3T,) one int64 key per half-edge (slot order of :func:`directed_edges`)."""
    E = directed_edges(np.asarray(F, dtype=np.int64))
    if not directed:
        E = np.sort(E, axis=1)
    return E[:, 0] * (int(E.max(initial=0)) + 1) + E[:, 1]


def edge_face_counts(F: np.ndarray):
    """Unique undirected edges (U, 2), and for each face-edge slot (T, 3) its count of faces,
    and (U,) the count of each unique edge."""
    E = np.sort(directed_edges(F), axis=1)
    _, first, inv, cnt = np.unique(_edge_keys(F), return_index=True, return_inverse=True, return_counts=True)
    return E[first], cnt[inv].reshape(3, -1).T, cnt


def face_components(F: np.ndarray) -> np.ndarray:
    """(T,) label of the edge-connected component of each face."""
    T = len(F)
    if T == 0:
        return np.zeros(0, dtype=np.int64)
    key = _edge_keys(F)
    order = np.argsort(key, kind="stable")
    fid = np.tile(np.arange(T), 3)[order]
    same = key[order][1:] == key[order][:-1]
    A = sp.coo_matrix((np.ones(same.sum()), (fid[:-1][same], fid[1:][same])), shape=(T, T))
    return connected_components(A, directed=False)[1]


def face_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(T, 3) unnormalised face normals (length = twice the area)."""
    return np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])


def vertex_normals(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(N, 3) unit area-weighted vertex normals (zero for unused vertices)."""
    N = face_normals(V, F)
    VN = np.zeros_like(V, dtype=np.float64)
    for k in range(3):
        np.add.at(VN, F[:, k], N)
    return VN / np.maximum(np.linalg.norm(VN, axis=1, keepdims=True), 1e-12)


def orient_faces(V: np.ndarray, F: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Orient faces consistently per component (breadth-first over shared edges), with
    normals pointing away from the point ``inside`` (3,) on the whole.

    Faces that cannot be made consistent (non-orientable spots) keep their BFS orientation;
    :func:`orientation_conflicts` finds them.
    """
    import igl

    F = np.ascontiguousarray(F, dtype=np.int64)
    if len(F) == 0:
        return F
    Fo, C = igl.bfs_orient(F)
    Fo, C = np.array(Fo), np.asarray(C).ravel()
    N = face_normals(V, Fo)
    out = np.einsum("ij,ij->i", N, V[Fo].mean(1) - inside)
    sign = np.bincount(C, weights=out)
    flip = sign[C] < 0
    Fo[flip] = Fo[flip][:, ::-1]
    return Fo


def orientation_conflicts(F: np.ndarray) -> np.ndarray:
    """Indices of faces sharing a half-edge a->b with another face (inconsistent orientation)."""
    _, inv, cnt = np.unique(_edge_keys(F, directed=True), return_inverse=True, return_counts=True)
    return np.unique(np.tile(np.arange(len(F)), 3)[cnt[inv] > 1])


def vertex_fans(F: np.ndarray):
    """Label the corners of every vertex by fan: corners (v, f) and (v, g) are in one fan
    when faces f and g share an edge at v. Returns (T, 3) labels; a vertex whose corners
    carry more than one label is non-manifold (a "bowtie" or pinch). Assumes every edge
    has at most two faces."""
    F = np.asarray(F, dtype=np.int64)
    T = len(F)
    key = _edge_keys(F)
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    s1, s2 = order[:-1][same], order[1:][same]          # the two slots of each interior edge
    f1, k1, f2, k2 = s1 % T, s1 // T, s2 % T, s2 // T
    a = F[f1, k1]
    a_in_f2 = np.where(F[f2, k2] == a, k2, (k2 + 1) % 3)
    b_in_f2 = np.where(F[f2, k2] == a, (k2 + 1) % 3, k2)
    corner = lambda f, k: 3 * f + k
    rows = np.concatenate([corner(f1, k1), corner(f1, (k1 + 1) % 3)])
    cols = np.concatenate([corner(f2, a_in_f2), corner(f2, b_in_f2)])
    A = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(3 * T, 3 * T))
    return connected_components(A, directed=False)[1].reshape(T, 3)


def nonmanifold_vertex_fans(F: np.ndarray) -> dict:
    """Vertices whose incident faces form more than one fan: {vertex: [faces of each fan]}."""
    if len(F) == 0:
        return {}
    lab = vertex_fans(F)
    v, lab, fid = F.ravel(), lab.ravel(), np.repeat(np.arange(len(F)), 3)
    pairs = np.unique(np.stack([v, lab], axis=1), axis=0)
    nfans = np.bincount(pairs[:, 0], minlength=int(F.max()) + 1)
    bad = {}
    for u in np.where(nfans > 1)[0].tolist():
        m = v == u
        fans = defaultdict(list)
        for f, l in zip(fid[m].tolist(), lab[m].tolist()):
            fans[l].append(f)
        bad[u] = list(fans.values())
    return bad


def boundary_loops(F: np.ndarray) -> list[list[int]]:
    """Boundary loops as cycles of face-directed half-edges (each face lies to the left when
    walking a loop seen from outside). A cycle through one vertex twice is split there, so
    every loop returned is simple. Assumes consistently oriented faces."""
    if len(F) == 0:
        return []
    E = directed_edges(F)
    _, inv, cnt = np.unique(_edge_keys(F), return_inverse=True, return_counts=True)
    out = defaultdict(list)
    for a, b in E[cnt[inv] == 1].tolist():
        out[a].append(b)
    loops = []
    while out:
        s = next(iter(out))
        cyc, v = [s], s
        while True:
            b = out[v].pop()
            if not out[v]:
                del out[v]
            if b == s or b not in out:
                break
            cyc.append(b)
            v = b
        stack, where = [], {}
        for v in cyc:
            if v in where:
                k = where[v]
                loops.append(stack[k:])
                for w in stack[k + 1:]:
                    where.pop(w)
                stack = stack[: k + 1]
            else:
                where[v] = len(stack)
                stack.append(v)
        loops.append(stack)
    return [lp for lp in loops if len(lp) >= 3]


def genus(F: np.ndarray) -> int:
    """Total genus of an oriented mesh with at most two faces per edge: sum over components
    of (2 - b - chi) / 2. Vertices are counted once per fan (so faces touching at a vertex
    do not fake a handle) and b counts boundary loops with pinch vertices split. Vectorised."""
    F = np.asarray(F, dtype=np.int64)
    if len(F) == 0:
        return 0
    T = len(F)
    lab = vertex_fans(F)
    _, inv, cnt = np.unique(_edge_keys(F), return_inverse=True, return_counts=True)
    chi = len(np.unique(lab)) - len(cnt) + T
    c = int(face_components(F).max()) + 1
    slots = np.where(cnt[inv] == 1)[0]                 # boundary half-edge slots k*T + f
    f, k = slots % T, slots // T
    a, b = lab[f, k], lab[f, (k + 1) % 3]
    nodes, idx = np.unique(np.concatenate([a, b]), return_inverse=True)
    nb = len(nodes)
    G = sp.coo_matrix((np.ones(len(a)), (idx[: len(a)], idx[len(a):])), shape=(nb, nb))
    n_loops = connected_components(G, directed=False)[0] if nb else 0
    return int(round((2 * c - n_loops - chi) / 2))


def loop_length(V: np.ndarray, loop) -> float:
    loop = np.asarray(loop)
    return float(np.linalg.norm(V[loop] - V[np.roll(loop, -1)], axis=1).sum())


def longest_edges(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(T,) length of each triangle's longest edge."""
    return np.linalg.norm(V[F] - V[np.roll(F, 1, axis=1)], axis=2).max(axis=1)


def clean_faces(V: np.ndarray, F: np.ndarray, inside: np.ndarray, min_component: int = 20) -> np.ndarray:
    """Repair a triangle soup into an oriented 2-manifold by *removing* faces: degenerate
    and duplicate faces, faces on edges with more than two faces, orientation conflicts,
    all but the largest fan at bowtie vertices, and components under ``min_component``
    faces. Repeats until nothing changes. Holes it opens are filled by the caller."""
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    for _ in range(20):
        n0 = len(F)
        F = F[(F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 0] != F[:, 2])]
        _, first = np.unique(np.sort(F, axis=1), axis=0, return_index=True)
        F = F[np.sort(first)]
        _, slot_cnt, _ = edge_face_counts(F)
        F = F[~(slot_cnt > 2).any(axis=1)]
        F = orient_faces(V, F, inside)
        F = np.delete(F, orientation_conflicts(F), axis=0)
        drop = set()
        for fans in nonmanifold_vertex_fans(F).values():
            for fan in sorted(fans, key=len)[:-1]:
                drop.update(fan)
        F = np.delete(F, sorted(drop), axis=0)
        C = face_components(F)
        F = F[(np.bincount(C) >= min_component)[C]] if len(F) else F
        if len(F) == n0:
            break
    return F


@dataclass
class MeshReport:
    """Topological and geometric facts about a mesh, as the tests and the CLI print them."""

    n_vertices: int
    n_faces: int
    unused_vertices: int
    components: int
    nonmanifold_edges: int
    nonmanifold_vertices: int
    orientation_conflicts: int
    boundary_loops: list
    euler: int
    long_triangles: int
    median_longest_edge: float

    @property
    def is_disk(self) -> bool:
        return (self.components == 1 and self.nonmanifold_edges == 0 and self.nonmanifold_vertices == 0
                and self.orientation_conflicts == 0 and len(self.boundary_loops) == 1 and self.euler == 1)

    def __str__(self) -> str:
        return (f"{self.n_faces} faces over {self.n_vertices} vertices ({self.unused_vertices} unused), "
                f"{self.components} component(s), Euler characteristic {self.euler}, "
                f"{len(self.boundary_loops)} boundary loop(s) {self.boundary_loops[:5]}, "
                f"non-manifold edges {self.nonmanifold_edges}, vertices {self.nonmanifold_vertices}, "
                f"orientation conflicts {self.orientation_conflicts}, "
                f"{self.long_triangles} triangles with longest edge > 3x median ({self.median_longest_edge:.2f})")


def mesh_report(V: np.ndarray, F: np.ndarray) -> MeshReport:
    """Check a mesh: usage, components, manifoldness, orientation, boundary, long triangles."""
    u, _, cnt = edge_face_counts(F)
    used = np.zeros(len(V), bool)
    used[F.ravel()] = True
    L = longest_edges(V, F)
    med = float(np.median(L))
    nm = nonmanifold_vertex_fans(F) if (cnt <= 2).all() else {}
    loops = boundary_loops(F)
    return MeshReport(
        n_vertices=len(V), n_faces=len(F), unused_vertices=int((~used).sum()),
        components=int(face_components(F).max() + 1) if len(F) else 0,
        nonmanifold_edges=int((cnt > 2).sum()), nonmanifold_vertices=len(nm),
        orientation_conflicts=len(orientation_conflicts(F)),
        boundary_loops=sorted((len(lp) for lp in loops), reverse=True),
        euler=int(used.sum() - len(u) + len(F)),
        long_triangles=int((L > 3 * med).sum()), median_longest_edge=med)


def closest_point_on_triangles(Q: np.ndarray, A: np.ndarray, B: np.ndarray, C: np.ndarray):
    """Closest points of Q (M, 3) on triangles (A, B, C) (each (M, 3)), as barycentric
    coordinates (M, 3) and distances (M,). Vectorised region test (Ericson, Real-Time
    Collision Detection, 5.1.5)."""
    ab, ac, ap = B - A, C - A, Q - A
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    bp = Q - B
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    cp = Q - C
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = va + vb + vc
    with np.errstate(divide="ignore", invalid="ignore"):
        v = vb / denom
        w = vc / denom
    bary = np.stack([1 - v - w, v, w], 1)
    # edge and vertex regions, later tests override earlier ones
    def put(mask, b):
        bary[mask] = b[mask]
    z = np.zeros_like(d1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t_ab, t_ab, z], 1))
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t_ac, z, t_ac], 1))
    put((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), np.stack([z, 1 - t_bc, t_bc], 1))
    put((d1 <= 0) & (d2 <= 0), np.stack([1 + z, z, z], 1))
    put((d3 >= 0) & (d4 <= d3), np.stack([z, 1 + z, z], 1))
    put((d6 >= 0) & (d5 <= d6), np.stack([z, z, 1 + z], 1))
    bary = np.nan_to_num(bary, nan=1 / 3)
    P = bary[:, :1] * A + bary[:, 1:2] * B + bary[:, 2:] * C
    return bary, np.linalg.norm(Q - P, axis=1)


def closest_points_on_mesh(V: np.ndarray, F: np.ndarray, Q: np.ndarray, k: int = 24,
                           normals: np.ndarray | None = None):
    """For each query point (M, 3), the closest point on the mesh among the ``k`` triangles
    with the nearest centroids. With ``normals`` (M, 3), triangles facing the other way
    (normal . n < 0) are only used when nothing else is near — this keeps a query from
    jumping to the other layer of a fold. Returns (triangle (M,), barycentric (M, 3),
    distance (M,))."""
    from scipy.spatial import cKDTree

    cent = V[F].mean(axis=1)
    k = min(k, len(F))
    _, cand = cKDTree(cent).query(Q, k=k)
    cand = cand.reshape(len(Q), k)
    M = len(Q)
    best_t = np.zeros(M, dtype=np.int64)
    best_b = np.zeros((M, 3))
    best_d = np.full(M, np.inf)
    if normals is not None:
        fn = face_normals(V, F)
        fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-300)
    for c in range(k):
        t = cand[:, c]
        b, d = closest_point_on_triangles(Q, V[F[t, 0]], V[F[t, 1]], V[F[t, 2]])
        if normals is not None:
            d = d + np.where(np.einsum("ij,ij->i", fn[t], normals) < 0, 1e3, 0.0)
        better = d < best_d
        best_t[better], best_b[better], best_d[better] = t[better], b[better], d[better]
    if normals is not None:
        best_d = np.where(best_d >= 1e3, best_d - 1e3, best_d)
    return best_t, best_b, best_d


def flip_caps(V: np.ndarray, F: np.ndarray, max_angle: float = 170.0, passes: int = 5) -> np.ndarray:
    """Flip the longest edge of "cap" triangles (an angle over ``max_angle`` degrees, e.g. a
    vertex lying on the opposite edge) when the flip gives two better triangles that keep
    the orientation and the edge is not already in the mesh. Topology is unchanged."""
    F = np.array(F, dtype=np.int64)
    for _ in range(passes):
        e1 = V[np.roll(F, -1, 1)] - V[F]
        e2 = V[np.roll(F, -2, 1)] - V[F]
        cosang = np.einsum("tki,tki->tk", e1, e2) / np.maximum(
            np.linalg.norm(e1, axis=2) * np.linalg.norm(e2, axis=2), 1e-300)
        caps = np.where(cosang.min(1) < np.cos(np.deg2rad(max_angle)))[0]
        if len(caps) == 0:
            break
        key = _edge_keys(F)
        n1 = int(F.max()) + 1
        slot_of = defaultdict(list)
        order = np.argsort(key, kind="stable")
        T = len(F)
        for s in order.tolist():
            slot_of[int(key[s])].append(s)
        edges = set(key.tolist())
        flipped = 0
        touched = set()
        for t in caps.tolist():
            if t in touched:
                continue
            k = int(np.argmin(cosang[t]))                  # corner with the obtuse angle
            a, b = F[t, (k + 1) % 3], F[t, (k + 2) % 3]        # its opposite (longest) edge
            slots = slot_of[int(min(a, b) * n1 + max(a, b))]
            if len(slots) != 2:
                continue
            u = [s % T for s in slots if s % T != t]
            if not u or u[0] in touched:
                continue
            u = u[0]
            c, d = F[t, k], [x for x in F[u] if x != a and x != b][0]
            if min(c, d) * n1 + max(c, d) in edges:
                continue
            # t = (c, a, b) in its orientation; new faces (c, a, d) and (c, d, b)
            ta = [F[t, k], F[t, (k + 1) % 3], F[t, (k + 2) % 3]]
            new1, new2 = [ta[0], ta[1], d], [ta[0], d, ta[2]]
            old_n = np.cross(V[ta[1]] - V[ta[0]], V[ta[2]] - V[ta[0]]) + \
                np.cross(V[F[u, 1]] - V[F[u, 0]], V[F[u, 2]] - V[F[u, 0]])
            ok = True
            for f in (new1, new2):
                n = np.cross(V[f[1]] - V[f[0]], V[f[2]] - V[f[0]])
                if n @ old_n <= 0 or np.linalg.norm(n) < 1e-12:
                    ok = False
            if not ok:
                continue
            F[t], F[u] = new1, new2
            edges.add(min(c, d) * n1 + max(c, d))
            touched.update((t, u))
            flipped += 1
        if flipped == 0:
            break
    return F
