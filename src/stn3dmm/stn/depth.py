"""The orthographic depth buffer of posed meshes, and the per-triangle quantities it shares with
:mod:`stn3dmm.stn.visibility` (docs/paper.md, "Visibility").

This module owns :func:`depth_buffer` -- an orthographic depth buffer (max z) of each posed
mesh, splatted with ``scatter_reduce('amax')`` from enough barycentric samples per triangle
that it has no holes at its resolution -- and the machinery under it: the coordinate-major
mesh quantities (:class:`_Mesh`: vertex normals, triangle areas, projected edge lengths),
the topology tables of a faces tensor (edges, the triangles around each depth sample),
computed once per faces tensor, and the packing of (depth, sample id) into sortable keys, so
that one scatter finds both the front-most depth and which sample gave it. The depth test of
:func:`stn3dmm.stn.visibility.visibility_depth` is built on it. Everything works in the posed
MODEL frame (mm, x right, y up, viewer on +z) and carries no gradient.
"""

from __future__ import annotations

import math

import torch

from . import cpu_kernels


# Internally everything runs "coordinate-major": a batch of meshes is one (3, N, B) tensor, so
# that gathering triangle corners and scattering to vertices move contiguous rows of B values
# and every arithmetic step works on contiguous (N, B) or (F, B) slabs (reductions over a
# small middle axis are slow on CPU, so dot and cross products are written out).

def _coord_major(vertices: torch.Tensor) -> torch.Tensor:
    """``(B, N, 3) -> (3, N, B)`` contiguous."""
    return vertices.permute(2, 1, 0).contiguous()


def _corners(cm: torch.Tensor, faces: torch.Tensor):
    """Triangle corners: three ``(3, F, B)`` tensors from coordinate-major ``(3, N, B)``."""
    return tuple(cm.index_select(1, faces[:, k]) for k in range(3))


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return torch.stack((a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]))


class _Mesh:
    """Per-triangle quantities of a coordinate-major batch of meshes, computed once.

    ``normals`` (3, N, B) angle-weighted unit vertex normals; ``dbl_area`` (F, B) twice the
    triangle areas; ``lmax`` (F, B) longest projected (x, y) edge, if ``for_buffer``. Corner and
    edge temporaries are dropped as soon as possible to keep the peak memory down.
    """

    def __init__(self, cm: torch.Tensor, faces: torch.Tensor, for_buffer: bool = False):
        self.cm, self.faces = cm, faces
        c0, c1, c2 = _corners(cm, faces)
        e01, e02, e12 = c1 - c0, c2 - c0, c2 - c1
        del c0, c1, c2
        if for_buffer:
            sq = [e[0] * e[0] + e[1] * e[1] for e in (e01, e02, e12)]
            self.lmax = torch.maximum(torch.maximum(sq[0], sq[1]), sq[2]).sqrt()
            del sq
        cross = _cross(e01, e02)
        self.dbl_area = _dot(cross, cross).sqrt()  # |a x b| is the same for the edge pair at each corner
        tiny = torch.finfo(cm.dtype).tiny
        n = cross / self.dbl_area.clamp_min(tiny)
        del cross
        # angle at each corner = atan2(|a x b|, a . b), a and b the two edges leaving that corner
        dots = (_dot(e01, e02), -_dot(e01, e12), _dot(e02, e12))
        del e01, e02, e12
        out = torch.zeros_like(cm)
        # one image: scatter along the middle axis of (3, N) rather than (3, N, 1), whose one-element
        # rows take a path about 20 times slower
        one = cm.shape[2] == 1
        for k in range(3):
            part = n * torch.atan2(self.dbl_area, dots[k])
            (out[..., 0] if one else out).index_add_(1, faces[:, k], part[..., 0] if one else part)
        self.normals = out / _dot(out, out).sqrt().clamp_min(tiny)


def _edge_table(faces: torch.Tensor, n_vertices: int):
    """Undirected edges of ``(F, 3)`` faces: ``edges (E, 2)``, ``edge_faces (E, 2)`` the (one or
    two) triangles on each (-1 if one), ``face_edges (F, 3)`` each triangle's edges."""
    e = torch.cat((faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]), 0)
    e = torch.sort(e, dim=1).values
    key, inv = torch.unique(e[:, 0] * n_vertices + e[:, 1], return_inverse=True)
    ids = torch.arange(len(faces), device=faces.device).repeat(3)
    lo = torch.full((len(key),), len(faces), dtype=torch.long, device=faces.device)
    hi = torch.full_like(lo, -1)
    lo.scatter_reduce_(0, inv, ids, reduce="amin")
    hi.scatter_reduce_(0, inv, ids, reduce="amax")
    hi = torch.where(hi == lo, torch.full_like(hi, -1), hi)
    edges = torch.stack((key // n_vertices, key % n_vertices), 1)
    return edges, torch.stack((lo, hi), 1), inv.view(3, -1).t()


#: Topology tables (:func:`_edge_table`, :func:`_patches`) by faces tensor: they depend on the
#: triangles alone, and an STN passes the same faces buffer on every forward. An entry holds its
#: tensor (so its id cannot be reused) and is valid while the tensor is not modified in place.
_TOPOLOGY: dict = {}


def _topology(faces: torch.Tensor, n_vertices: int) -> dict:
    """``{"edges", "edge_faces", "face_edges"}`` of ``faces`` (and ``"patches"``, added by the
    first caller that needs it), computed once per faces tensor."""
    hit = _TOPOLOGY.get(id(faces))
    if hit is not None and hit[0] is faces and hit[1] == (faces._version, n_vertices):
        return hit[2]
    if len(_TOPOLOGY) >= 8:
        _TOPOLOGY.clear()
    edges, edge_faces, face_edges = _edge_table(faces, n_vertices)
    tables = {"edges": edges, "edge_faces": edge_faces, "face_edges": face_edges}
    _TOPOLOGY[id(faces)] = (faces, (faces._version, n_vertices), tables)
    return tables


def _patches(faces: torch.Tensor, n_vertices: int, edge_faces, face_edges) -> torch.Tensor:
    """Candidate triangles around each depth sample, ``(N + E + F, P)`` (-1 padded), by sample id:
    a vertex (id < N): its triangles; an edge midpoint (N + e): the triangles on the edge and across
    their other edges; a lattice point of triangle f (N + E + f): f and the triangles across its edges."""
    dev = faces.device
    n_f = len(faces)
    # triangles across each triangle's edges (F, 3)
    ef = edge_faces[face_edges]                                            # (F, 3, 2)
    own = torch.arange(n_f, device=dev)[:, None]
    across = torch.where(ef[..., 0] == own, ef[..., 1], ef[..., 0])        # (F, 3)
    # vertex fans, padded
    vert = faces.reshape(-1)
    order = torch.argsort(vert, stable=True)
    deg = torch.bincount(vert, minlength=n_vertices)
    start = torch.cumsum(deg, 0) - deg
    slot = torch.arange(len(vert), device=dev) - start[vert[order]]
    width = max(int(deg.max()) if len(deg) else 1, 6)
    fan = torch.full((n_vertices, width), -1, dtype=torch.long, device=dev)
    fan[vert[order], slot] = order // 3
    # edges: both triangles and what lies across them
    two = edge_faces                                                       # (E, 2)
    nb = torch.where(two[..., None] >= 0, across[two.clamp_min(0)], -1).flatten(1)   # (E, 6)
    edge_patch = torch.cat((two, nb), 1)
    face_patch = torch.cat((own, across), 1)
    pad = lambda t: torch.cat((t, torch.full((len(t), max(0, width + 2 - t.shape[1])), -1, dtype=torch.long,  # noqa: E731
                                                      device=dev)), 1)
    return torch.cat((pad(fan), pad(edge_patch), pad(face_patch)), 0)


def _barycentric_lattice(n: int, dtype, device) -> torch.Tensor:
    """All barycentric points ``(i/n, j/n, 1 - (i+j)/n)``, ``i + j <= n``: ``((n+1)(n+2)/2, 3)``."""
    ij = [(i, j) for i in range(n + 1) for j in range(n + 1 - i)]
    return torch.tensor([(i / n, j / n, (n - i - j) / n) for i, j in ij], dtype=dtype, device=device)


# n lattice steps cover a triangle whose longest projected edge is L when the sub-triangles'
# covering radius L / (n sqrt(3)) is at most h / 2, i.e. n >= (2 / sqrt(3)) L / h; 10 % margin.
_COVER = 1.1 * 2.0 / math.sqrt(3.0)


_EMPTY = -(2 ** 63)


def _pack(z: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """Order-preserving int64 keys of (depth rounded to float32, triangle id >= -1): depth in the
    high 32 bits (IEEE bits with the negatives' magnitude bits flipped), id + 1 in the low 32."""
    bits = z.to(torch.float32).view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)        # int32: the negatives' magnitude bits flipped
    return (bits.to(torch.long) << 32) | (face + 1)


def _unpack(keys: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`_pack`: depth (-inf where empty) and triangle id (-1 where none)."""
    high = keys >> 32
    bits = torch.where(high >= 0, high, high ^ 0x7FFFFFFF).to(torch.int32)
    empty = keys == _EMPTY
    z = torch.where(empty, torch.tensor(-math.inf, dtype=dtype, device=keys.device), bits.view(torch.float32).to(dtype))
    return z, torch.where(empty, torch.full_like(keys, -1), (keys & 0xFFFFFFFF) - 1)


def _splat(x, y, z, bi, sid, lo, h, hb: int, wb: int, out: torch.Tensor) -> None:
    """Splat one group of samples ``x, y, z`` into ``out`` ``(B Hb Wb,)``: the max of their
    (depth, sample id ``sid``) keys (:func:`_pack`) per pixel where ``out`` is int64, else of their
    depths. Layouts: ``(M, B)`` with column = image (``bi`` None), or ``(k, S)`` with the image
    ``bi`` ``(k, 1)`` per row. On the CPU the same splat runs compiled, in one pass
    (:mod:`.cpu_kernels`)."""
    if cpu_kernels.ready(out.device):
        cpu_kernels._splat_compiled(x, y, z, bi, sid, lo[0], lo[1], h, hb, wb, out)
        return
    if bi is None:
        lo_x, lo_y, hh, base = lo[0], lo[1], h, torch.arange(len(h), device=out.device) * (hb * wb)
    else:
        lo_x, lo_y, hh, base = lo[0][bi], lo[1][bi], h[bi], bi * (hb * wb)
    # truncation is floor here: samples lie in the mesh's box (a rounding below 0 clamps to 0)
    ix = ((x - lo_x) / hh).long().clamp_(0, wb - 1)
    iy = ((y - lo_y) / hh).long().clamp_(0, hb - 1)
    idx = (base + iy * wb + ix).reshape(-1)
    if out.dtype == torch.long:
        out.scatter_reduce_(0, idx, _pack(z, sid).reshape(-1), reduce="amax", include_self=True)
    else:
        out.scatter_reduce_(0, idx, z.reshape(-1), reduce="amax", include_self=True)


def _lattice_groups(cm, faces, weights: list, first_id: int) -> list:
    """Sample groups (as :func:`_splat` takes them, made when called) of every triangle's point at
    each barycentric weight ``(w0, w1, w2)`` of ``weights``, in the ``(F, B)`` layout; sample id
    ``first_id + f`` for triangle f."""
    c0, c1, c2 = _corners(cm, faces)  # (3, F, B) each
    face_ids = first_id + torch.arange(len(faces), device=cm.device)[:, None]

    def lattice_point(w):
        pts = w[0] * c0 + w[1] * c1 + w[2] * c2
        return pts[0], pts[1], pts[2], None, face_ids

    return [lambda w=w: lattice_point(w) for w in weights]


def _depth_buffer_cm(mesh: _Mesh, pixel: float, max_buffer: int, max_samples: int, with_faces: bool = False) -> dict:
    cm, faces = mesh.cm, mesh.faces
    _, n_v, b = cm.shape
    dtype, device = cm.dtype, cm.device
    spacing = mesh.dbl_area.mean(0).sqrt() if faces.numel() else torch.ones(b, dtype=dtype, device=device)
    lo = cm[:2].amin(1)  # (2, B)
    hi = cm[:2].amax(1)
    extent = (hi - lo).amax(0)
    h = torch.maximum(spacing * pixel, extent / (max_buffer - 1))
    h = torch.where(h > 0, h, torch.ones_like(h))
    size = torch.floor((hi - lo) / h).long() + 1  # (2, B): (Wb, Hb)
    wb, hb = (int(s) for s in size.amax(1).tolist())
    # lattice steps each triangle needs so that the buffer has no holes
    nf = torch.ceil(_COVER * mesh.lmax / h).clamp_(1, max_samples).long()
    n_top = int(nf.max()) if nf.numel() else 1
    # sample groups (x, y, z, image id or None for the (M, B) layout, sample id (M, 1) or (k, 1):
    # vertex v -> v, midpoint of edge e -> N + e, point of triangle f -> N + E + f)
    topo = _topology(faces, n_v)
    edges = topo["edges"]
    n_e = len(edges)
    # (made one at a time, when splatted, to keep the peak memory down)
    groups = [lambda: (cm[0], cm[1], cm[2], None, torch.arange(n_v, device=device)[:, None])]  # steps 1: vertices

    def midpoints():
        mid = 0.5 * (cm.index_select(1, edges[:, 0]) + cm.index_select(1, edges[:, 1]))  # (3, E, B)
        return mid[0], mid[1], mid[2], None, n_v + torch.arange(n_e, device=device)[:, None]

    if n_top >= 2:  # steps 2: plus every edge midpoint, each once
        groups.append(midpoints)
    # finer lattices: for a buffer finer than the mesh (pixel < 0.9), the level a grid cell's
    # diagonal needs, for all triangles at once in the (F, B) layout (batch-independent, so a
    # batch gives what its images give one by one); then only for the triangles that need more
    # (few: steep or stretched ones), gathered
    dense = min(math.ceil(_COVER * math.sqrt(2.0) / pixel), max_samples)  # a grid cell's diagonal, seen frontally
    lattice = None
    if dense > 2 and n_top > 2:   # corners and edge midpoints are splatted already
        weights = [w for w in _barycentric_lattice(dense, dtype, device).tolist()
                   if max(w) < 1 and sorted(w) != [0.0, 0.5, 0.5]]
        if cpu_kernels.ready(device):       # every weight in one compiled pass, the same points
            lattice = (cm, faces, torch.tensor(weights, dtype=dtype), n_v + n_e)
        else:
            groups += _lattice_groups(cm, faces, weights, n_v + n_e)
    for n in (torch.unique(nf[nf > dense]).tolist() if n_top > dense else []):
        fi, bi = torch.nonzero(nf == n, as_tuple=True)
        corners = torch.stack([cm[:, faces[fi, k], bi] for k in range(3)], 0)  # (3 corners, 3, k)
        pts = torch.einsum("sc,cdk->dks", _barycentric_lattice(n, dtype, device), corners)  # (3, k, S)
        groups.append(lambda pts=pts, bi=bi, fi=fi: (pts[0], pts[1], pts[2], bi[:, None], n_v + n_e + fi[:, None]))
    if with_faces:  # one scatter of (depth, sample id) keys: the max key holds the front-most sample
        keys = torch.full((b * hb * wb,), _EMPTY, dtype=torch.long, device=device)
    else:
        buf = torch.full((b * hb * wb,), -math.inf, dtype=dtype, device=device)
    for make in groups:
        _splat(*make(), lo, h, hb, wb, keys if with_faces else buf)
    if lattice is not None:
        cpu_kernels._lattice_compiled(*lattice, lo[0], lo[1], h, hb, wb, keys if with_faces else buf)
    out = {"origin": lo.t(), "pixel": h, "spacing": spacing, "samples": n_top}
    if with_faces:
        buf, face = _unpack(keys, dtype)
        out["sample"] = face.view(b, hb, wb)
        if "patches" not in topo:
            topo["patches"] = _patches(faces, n_v, topo["edge_faces"], topo["face_edges"])
        out["patches"] = topo["patches"]
        pad = lambda t: torch.cat((t, torch.full((len(t), 3 - t.shape[1]), -1, dtype=torch.long, device=device)), 1)  # noqa: E731
        # (N + E + F, 3) the vertices each sample id lies on
        out["elements"] = torch.cat((pad(torch.arange(n_v, device=device)[:, None]), pad(edges), faces), 0)
    out["buffer"] = buf.view(b, hb, wb)
    return out


def depth_buffer(vertices: torch.Tensor, faces: torch.Tensor, *, pixel: float = 1.0, max_buffer: int = 1024,
                 max_samples: int = 16) -> dict:
    """Splat an orthographic depth buffer (max z) of each posed mesh. No gradient.

    The depth test of :func:`~stn3dmm.stn.visibility.visibility_depth` compares each vertex with
    the front-most surface along its viewing ray; this buffer holds that surface's depth per
    pixel, for a whole batch at once (``scatter_reduce('amax')``, no rasteriser loop).

    The buffer pixel size is ``h = pixel * spacing`` per mesh, where the *mesh spacing* is
    ``sqrt(2 * mean triangle area)`` (the cell size of a grid mesh), enlarged if needed so the
    buffer is at most ``max_buffer`` pixels a side. Each triangle is sampled on a barycentric
    lattice with ``n`` steps per edge, ``n`` chosen per triangle so the lattice's covering radius
    (at most the longest projected sub-triangle edge over sqrt(3)) is below ``h / 2``: every
    buffer pixel lying inside a projected triangle then receives a sample -- no holes. Shared
    samples (vertices and edge midpoints) are splatted once; only triangles needing ``n > 2``
    get their own finer lattice. ``n`` is capped at ``max_samples``.

    Args:
        vertices: (B, N, 3) posed vertices (model frame, viewer on +z).
        faces: (F, 3) long.
        pixel: buffer pixel size in units of the mesh spacing.
        max_buffer: largest buffer side, in pixels.
        max_samples: largest lattice step count per triangle edge.

    Returns:
        dict with ``buffer`` (B, Hb, Wb) max z (``-inf`` where empty; column
        ``floor((x - x0) / h)``, row ``floor((y - y0) / h)``, so rows grow upwards),
        ``origin`` (B, 2) the corner (x0, y0), ``pixel`` (B,) the pixel size h, ``spacing`` (B,)
        the mesh spacing, ``samples`` the largest lattice step count used.

    Examples:
        A 20 x 20 mm square at z = 0 with a 6 x 6 mm square in front of it at z = 5:

        >>> back = [[x, y, 0.0] for y in (-10.0, 0.0, 10.0) for x in (-10.0, 0.0, 10.0)]  # 3 x 3 grid at z = 0
        >>> front = [[-3.0, -3.0, 5.0], [3.0, -3.0, 5.0], [-3.0, 3.0, 5.0], [3.0, 3.0, 5.0]]  # a small square at z = 5
        >>> vertices = torch.tensor([back + front])  # (1, 13, 3)
        >>> faces = torch.tensor([f for a in (0, 1, 3, 4) for f in ((a, a + 1, a + 4), (a, a + 4, a + 3))]
        ...                      + [(9, 10, 12), (9, 12, 11)])  # counter-clockwise seen from +z
        >>> db = depth_buffer(vertices, faces, pixel=0.5)
        >>> db["buffer"][0]
        tensor([[0., 0., 0., 0., 0.],
                [0., 5., 5., 0., 0.],
                [0., 5., 5., 0., 0.],
                [0., 0., 0., 0., 0.],
                [0., 0., 0., 0., 0.]])
        >>> db["origin"], db["pixel"].round(decimals=2)
        (tensor([[-10., -10.]]), tensor([4.6700]))
    """
    with torch.no_grad():
        return _depth_buffer_cm(_Mesh(_coord_major(vertices.detach()), faces, True), pixel, max_buffer,
                                max_samples)


__all__ = ["depth_buffer"]
