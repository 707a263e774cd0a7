"""Self-occlusion (visibility) of the posed mesh, batched and vectorised (docs/paper.md, "Visibility").

This module owns the visibility layer: which vertices of the posed model the camera sees.
Everything works in the posed MODEL frame (``X' = X R^T``: mm, x right, y up, viewer on +z,
orthographic view along -z); the image scale and translation do not change visibility. The
results are masks and carry no gradient.

* :func:`vertex_normals` -- per-vertex normals: the sum of the unit normals of the incident
  triangles, each weighted by the triangle's angle at that vertex (then normalised).
* :func:`visibility_backface` -- rule (a), a back-face test as the original's: a vertex is
  visible when its normal faces the camera, ``n_z >= 0``. A front-facing cheek hidden behind
  the nose counts as visible. Its normals are :func:`vertex_normals`, not the original's.
* :func:`visibility_backface_original` -- the original's back-face test exactly: its
  area-and-angle weighted normals, of which a vertex keeps only 3 triangles (a quirk of its
  MATLAB indexed assignment), on its own triangulation of the grid (:func:`original_grid_faces`).
  For reproducing the original's masks; rule (a) is the cleaner version of the same test.
* :func:`~stn3dmm.stn.depth.depth_buffer` (in :mod:`stn3dmm.stn.depth`, importable from here
  too) -- an orthographic depth buffer (max z) of each posed mesh, with no holes at its resolution.
* :func:`visibility_depth` -- rule (b), a depth test: a vertex is visible only if no part of
  the posed mesh lies in front of it along its viewing ray. Its depth is compared with the
  buffer (half the mesh spacing per pixel) at its pixel, with a tolerance tied to the mesh
  spacing plus a slope-scaled bias (the depth change the vertex's own tangent plane makes
  across one buffer pixel, as in shadow mapping), so sloped surface is not mistaken for
  occluded by itself. Where the pixel's front-most sample is not on the vertex's own triangles,
  the verdict is then made exact: the vertex's ray is intersected with the triangles around
  the front-most samples of the 3 x 3 pixels about it (each sample's triangles and those across
  their edges); if one of them covers the vertex, it is hidden exactly when one lies more than
  ``tol`` spacings in front. This removes most of the buffer's errors next to depth
  discontinuities (a visible vertex sharing its pixel with a nearer silhouette, e.g. along the
  jaw of a frontal face). By default a vertex must also face the camera (rule (a)), because an
  open face mesh seen from behind shows the inside of the head, which no depth test of the
  mesh alone can catch.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import cpu_kernels
from .depth import _coord_major, _depth_buffer_cm, _Mesh, depth_buffer


def _normals_cm(cm: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    return _Mesh(cm, faces).normals


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Angle-weighted vertex normals of a batch of meshes.

    Each vertex gets the sum of the unit normals of its triangles, weighted by the triangle's
    angle at the vertex, normalised: a normal that does not depend on how finely the surface
    around the vertex is triangulated. Rule (a) reads its z component.

    Args:
        vertices: (B, N, 3).
        faces: (F, 3) long, counter-clockwise seen from outside.

    Returns:
        (B, N, 3) unit normals (zero for vertices in no triangle). Differentiable.

    Examples:
        >>> v = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])  # one triangle facing +z
        >>> vertex_normals(v, torch.tensor([[0, 1, 2]]))
        tensor([[[0., 0., 1.],
                 [0., 0., 1.],
                 [0., 0., 1.]]])
    """
    return _normals_cm(vertices.permute(2, 1, 0), faces).permute(2, 1, 0)


def visibility_backface(vertices: torch.Tensor, faces: torch.Tensor,
                        normals: torch.Tensor | None = None) -> torch.Tensor:
    """Rule (a), a back-face test: a vertex is visible when its normal faces the camera.

    Cheap, and right for a convex surface; a front-facing vertex hidden behind another part of
    the face (a cheek behind the nose) still counts as visible -- :func:`visibility_depth`
    catches those. True where the angle-weighted vertex normal (:func:`vertex_normals`) has
    ``n_z >= 0`` (viewer on +z). The original's test is the same idea with other normals (area
    and angle weights, 3 of a vertex's triangles): :func:`visibility_backface_original`. No gradient.

    Args:
        vertices: (B, N, 3) posed vertices (model frame).
        faces: (F, 3) long, counter-clockwise seen from outside.
        normals: (B, N, 3) vertex normals, if already computed (then ``vertices`` is not read).

    Returns:
        (B, N) bool.

    Examples:
        >>> v = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        >>> visibility_backface(v, torch.tensor([[0, 1, 2]]))  # counter-clockwise: faces the camera
        tensor([[True, True, True]])
        >>> visibility_backface(v, torch.tensor([[0, 2, 1]]))  # clockwise: faces away
        tensor([[False, False, False]])
    """
    with torch.no_grad():
        if normals is None:
            return _normals_cm(_coord_major(vertices.detach()), faces)[2].t() >= 0
        return normals[..., 2] >= 0


def original_grid_faces(res: int, device=None) -> torch.Tensor:
    """The original's triangles of an R x R grid model, in its order: ``(2 (R-1)^2, 3)`` long.

    :func:`visibility_backface_original` needs them: the original's vertex normals depend on
    the order of its triangle list and of each triangle's corners (see there). Its resampled
    model numbered the grid column-major, which is our row-major numbering (vertex
    ``(row i, column j)`` is ``i R + j`` in both); for each cell, columns outer and rows inner,
    it listed ``(a, right, below)`` and ``(below-right, below, right)``, ``a`` the cell's
    top-left vertex. So its diagonals run from top-right to bottom-left (ours, in
    :func:`stn3dmm.model.resample.grid_faces`, from top-left to bottom-right), and its triangles
    are clockwise seen from outside (ours: counter-clockwise).

    Args:
        res: side R of the grid (at least 2).
        device: where the result lives.

    Returns:
        (2 (R-1)^2, 3) long vertex indices.

    Examples:
        >>> original_grid_faces(3)  # 3 x 3 grid: vertex i R + j at row i, column j
        tensor([[0, 1, 3],
                [4, 3, 1],
                [3, 4, 6],
                [7, 6, 4],
                [1, 2, 4],
                [5, 4, 2],
                [4, 5, 7],
                [8, 7, 5]])
    """
    if res < 2:
        raise ValueError(f"a grid needs at least 2 x 2 vertices, got res={res}")
    col, row = torch.meshgrid(torch.arange(res - 1, device=device), torch.arange(res - 1, device=device),
                              indexing="ij")  # columns outer, rows inner, as the original's loops
    a = (row * res + col).reshape(-1)
    right, below = a + 1, a + res
    first = torch.stack((a, right, below), 1)
    second = torch.stack((below + 1, below, right), 1)
    return torch.stack((first, second), 1).reshape(-1, 3)


def visibility_backface_original(vertices: torch.Tensor, faces: torch.Tensor | None = None) -> torch.Tensor:
    """The original's back-face test, with its vertex normals: ``(B, N, 3) -> (B, N)`` bool.

    For reproducing the original's masks. It weighted each triangle's normal by twice its area
    and by its angle at the vertex, ``w_k = ((v_2 - v_1) x (v_2 - v_3)) * angle_k`` for corner
    ``k`` (outward for its clockwise triangles), and accumulated them corner by corner with
    ``normals(v_k,:) = normals(v_k,:) + w_k`` over all triangles at once. In that MATLAB
    assignment a vertex listed several times in ``v_k`` keeps only the LAST triangle's value,
    so a vertex sums at most three triangles: the last one (in list order) where it is corner 1,
    the last where it is corner 2, the last where it is corner 3. On the original's grid that
    is 3 of the 6 triangles around an inner vertex. A vertex is visible when the result has
    ``n_z >= 0`` (a vertex in no triangle counts as visible). :func:`visibility_backface` is
    our rule: unit normals times angle, over every triangle. The angles come from ``atan2``
    (the original used ``acos``; they differ by rounding, except that a degenerate triangle
    gives 0 here where the original got NaN). No gradient.

    Args:
        vertices: (B, N, 3) posed vertices (model frame, viewer on +z).
        faces: (F, 3) long in the original's order and winding (clockwise seen from outside);
            default :func:`original_grid_faces` of the ``sqrt(N)`` x ``sqrt(N)`` grid.

    Returns:
        (B, N) bool.

    Examples:
        Vertex 0 is corner 1 of a triangle facing the camera (angle 90 degrees, twice the area
        4: weight ``+2 pi`` in z) and then of one facing away (``-pi / 2``). The sum is positive,
        but the original keeps only the last triangle's weight:

        >>> v = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        >>> visibility_backface_original(v, torch.tensor([[0, 2, 1], [0, 3, 4]]))
        tensor([[False,  True,  True, False, False]])
        >>> visibility_backface_original(v, torch.tensor([[0, 3, 4], [0, 2, 1]]))  # the other order
        tensor([[ True,  True,  True, False, False]])
    """
    with torch.no_grad():
        v = vertices.detach()
        n_v = v.shape[-2]
        if faces is None:
            res = math.isqrt(n_v)
            if res * res != n_v:
                raise ValueError(f"{n_v} vertices are not a square grid: pass the original's faces")
            faces = original_grid_faces(res, device=v.device)
        c = [v[:, faces[:, k]] for k in range(3)]  # (B, F, 3) corners
        e1, e2, e3 = c[1] - c[0], c[2] - c[0], c[1] - c[2]
        normal = torch.linalg.cross(e1, e3)  # the original's (v2 - v1) x (v2 - v3): 2 area, outward if clockwise

        def angle(a, b):
            return torch.atan2(torch.linalg.cross(a, b).norm(dim=-1), (a * b).sum(-1))

        a1, a2 = angle(e1, e2), angle(e3, e1)  # at corner 1 (edges to 2 and 3), at corner 2
        angles = (a1, a2, math.pi - a1 - a2)
        ids = torch.arange(len(faces), device=v.device)
        normals = torch.zeros_like(v)
        for k in range(3):
            last = torch.full((n_v,), -1, dtype=torch.long, device=v.device)
            last.scatter_reduce_(0, faces[:, k], ids, reduce="amax")  # the last write wins
            hit = torch.nonzero(last >= 0).flatten()
            normals[:, hit] += normal[:, last[hit]] * angles[k][:, last[hit], None]
        return normals[..., 2] >= 0


_CHUNK = 16384


def _sorted_rows(t: torch.Tensor) -> torch.Tensor:
    """``(K, M)`` long -> each row sorted ascending (the same values as ``torch.sort(t, 1)``). On
    the CPU by numpy as int32 where the values fit: its vectorised sort is several times faster
    there than torch's for short rows (``benchmarks/visibility.py``)."""
    if t.device.type != "cpu" or not t.numel() or int(t.max()) >= 2 ** 31 or int(t.min()) < -(2 ** 31):
        return torch.sort(t, 1).values
    return torch.from_numpy(np.sort(t.numpy().astype(np.int32), 1)).long()


def _first_of_runs(sorted_rows: torch.Tensor) -> torch.Tensor:
    """``(K, M)`` rows sorted along dim 1 -> bool mask of each value's first occurrence in its row."""
    head = torch.ones_like(sorted_rows[:, :1], dtype=torch.bool)
    return torch.cat((head, sorted_rows[:, 1:] != sorted_rows[:, :-1]), 1)


def _exact_at_vertices(cm, faces, db, ix, iy, vi, bi, eps, reach=1):
    """Exact ray test of vertices ``vi`` of images ``bi`` ``(K,)`` against the triangles around the
    front-most samples (``db["patches"]``) of the ``(2 reach + 1)^2`` buffer pixels around each.
    Returns ``(covered, occluded)`` ``(K,)`` bool: some such triangle's projection contains the
    vertex / one of those lies more than ``eps`` ``(B,)`` in front of it (its plane's depth at the
    vertex's x, y). Neighbouring pixels share samples and triangles, so each vertex's list is
    de-duplicated first and only distinct (vertex, triangle) pairs are tested."""
    sample, patches = db["sample"], db["patches"]
    b, hb, wb = sample.shape
    n_v, k, dev = cm.shape[1], len(vi), cm.device
    if not k:
        return torch.zeros(0, dtype=torch.bool, device=dev), torch.zeros(0, dtype=torch.bool, device=dev)
    d = torch.arange(-reach, reach + 1, device=dev)
    qx = (ix[vi, bi][:, None, None] + d[None, None, :]).clamp(0, wb - 1)
    qy = (iy[vi, bi][:, None, None] + d[None, :, None]).clamp(0, hb - 1)
    sid = _sorted_rows(sample.view(-1)[(bi[:, None, None] * hb + qy) * wb + qx].reshape(k, -1))  # (K, S)
    sid = torch.where(_first_of_runs(sid) & (sid >= 0), sid, -1)
    f = patches.index_select(0, sid.clamp_min(0).view(-1)).view(k, -1, patches.shape[1])
    f = _sorted_rows(torch.where(sid[..., None] >= 0, f, -1).view(k, -1))
    row, col = torch.nonzero((f >= 0) & _first_of_runs(f), as_tuple=True)  # distinct (vertex, triangle) pairs
    f = f[row, col]
    # gather whole (x, y, z) rows from a vertex-major copy: one contiguous read per corner
    rows = cm.permute(2, 1, 0).reshape(b * n_v, 3).contiguous()
    base = bi[row] * n_v
    corner = faces.t().contiguous()
    a, p1, p2 = (rows.index_select(0, base + corner[j].index_select(0, f)).t() for j in range(3))  # (3, pairs) each
    x, y, z = rows.index_select(0, bi * n_v + vi)[row].t()                         # (pairs,) each
    v0x, v0y, v1x, v1y = p1[0] - a[0], p1[1] - a[1], p2[0] - a[0], p2[1] - a[1]
    den = v0x * v1y - v0y * v1x
    ok = den.abs() > 1e-9 * (v0x * v0x + v0y * v0y + v1x * v1x + v1y * v1y)
    den = torch.where(ok, den, torch.ones_like(den))
    dx, dy = x - a[0], y - a[1]
    w1 = (dx * v1y - dy * v1x) / den
    w2 = (v0x * dy - v0y * dx) / den
    w0 = 1 - w1 - w2
    tol_w = 1e-6 if cm.dtype == torch.float64 else 1e-4
    inside = ok & (w0 >= -tol_w) & (w1 >= -tol_w) & (w2 >= -tol_w)
    in_front = inside & (w0 * a[2] + w1 * p1[2] + w2 * p2[2] > z + eps[bi][row])
    return torch.bincount(row[inside], minlength=k) > 0, torch.bincount(row[in_front], minlength=k) > 0


def _decide_exactly(visible, cand, cm, faces, db, ix, iy, eps) -> None:
    """Set ``visible`` ``(N, B)`` of the candidate vertices ``cand`` ``(N, B)`` by the exact ray
    test wherever it finds a triangle covering the vertex: compiled on the CPU where numba is
    installed (:mod:`.cpu_kernels`, the same verdicts), :func:`_exact_at_vertices` otherwise."""
    vi, bi = torch.nonzero(cand, as_tuple=True)
    if cpu_kernels.ready(cm.device):
        parts = [(vi, bi, cpu_kernels._exact_at_vertices_compiled(cm, faces, db, ix, iy, vi, bi, eps))]
    else:            # in chunks, to bound the temporaries: (chunk, 9 x P) per step
        parts = [(vi[s:s + _CHUNK], bi[s:s + _CHUNK]) for s in range(0, len(vi), _CHUNK)]
        parts = [(v, b, _exact_at_vertices(cm, faces, db, ix, iy, v, b, eps)) for v, b in parts]
    for v, b, (covered, occluded) in parts:
        visible[v, b] = torch.where(covered, ~occluded, visible[v, b])


def visibility_depth(vertices: torch.Tensor, faces: torch.Tensor, *, backface: bool = True, tol: float = 0.5,
                     pixel: float = 0.5, max_slope: float = 8.0, max_buffer: int = 1024, max_samples: int = 16,
                     exact: bool = True, return_buffer: bool = False):
    """Rule (b), a depth test: ``(B, N, 3) posed vertices -> (B, N) bool`` visible. No gradient.

    Masks the flattened texture where the face hides itself, which rule (a) misses: a vertex is
    visible only if no part of the posed mesh lies in front of it along its viewing ray.

    A vertex is occluded when the depth buffer (:func:`~stn3dmm.stn.depth.depth_buffer`) at its
    pixel lies in front of it by more than ``tol * spacing + min(slope, max_slope) * h * sqrt(2)``:
    the mesh spacing is ``sqrt(2 * mean triangle area)``, and the slope term, the depth change of
    the vertex's own tangent plane across a buffer pixel ``h``, keeps sloped surface from hiding
    itself. With ``exact=True``, a vertex whose pixel another surface wins is decided by exact ray
    intersection (module docstring); with ``backface=True`` it must also pass rule (a).

    Args:
        vertices: (B, N, 3) posed vertices in the model frame (viewer on +z).
        faces: (F, 3) triangles, counter-clockwise seen from outside.
        backface: also require ``n_z >= 0``.
        tol: depth margin in units of the mesh spacing.
        pixel: buffer pixel size in units of the mesh spacing (default 0.5: half the width of
            the band next to silhouettes where a pixel holds both a vertex and a nearer surface).
        max_slope: cap on the slope in the bias (default 8, about 83 degrees): a larger cap lets
            grazing vertices behind an occluder through, a smaller one hides them behind their own surface.
        max_buffer: largest buffer side, in pixels.
        max_samples: largest lattice step count per triangle edge.
        exact: refine by exact ray intersection where another surface wins the vertex's pixel.
        return_buffer: also return the :func:`~stn3dmm.stn.depth.depth_buffer` dict (with
            ``exact``, also ``sample`` (B, Hb, Wb) the front-most sample's id and ``patches`` its
            candidate triangles; depths then rounded to float32).

    Returns:
        (B, N) bool, or ``(visible, buffer dict)`` with ``return_buffer=True``.

    Examples:
        A square at z = 0 behind a small one at z = 5 hides its centre vertex 4 (rule (a) sees it):

        >>> back = [[x, y, 0.0] for y in (-10.0, 0.0, 10.0) for x in (-10.0, 0.0, 10.0)]  # 3 x 3 grid at z = 0
        >>> front = [[-3.0, -3.0, 5.0], [3.0, -3.0, 5.0], [-3.0, 3.0, 5.0], [3.0, 3.0, 5.0]]  # a small square at z = 5
        >>> vertices = torch.tensor([back + front])  # (1, 13, 3)
        >>> faces = torch.tensor([f for a in (0, 1, 3, 4) for f in ((a, a + 1, a + 4), (a, a + 4, a + 3))]
        ...                      + [(9, 10, 12), (9, 12, 11)])  # counter-clockwise seen from +z
        >>> visibility_depth(vertices, faces).int()
        tensor([[1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.int32)
    """
    with torch.no_grad():
        mesh = _Mesh(_coord_major(vertices.detach()), faces, True)
        cm = mesh.cm
        nrm = mesh.normals
        db = _depth_buffer_cm(mesh, pixel, max_buffer, max_samples, with_faces=exact)
        buf, h = db["buffer"], db["pixel"]
        lo = db["origin"].t()
        b, hb, wb = buf.shape
        ix = torch.floor((cm[0] - lo[0]) / h).long().clamp_(0, wb - 1)  # (N, B)
        iy = torch.floor((cm[1] - lo[1]) / h).long().clamp_(0, hb - 1)
        front = buf.view(-1)[torch.arange(b, device=cm.device) * (hb * wb) + iy * wb + ix]
        nz = nrm[2]
        slope = torch.where(nz > 0, (nrm[0] ** 2 + nrm[1] ** 2).sqrt() / nz.clamp_min(1e-12),
                            torch.full_like(nz, max_slope))
        margin = tol * db["spacing"] + slope.clamp_(max=max_slope) * h * math.sqrt(2.0)
        visible = front <= cm[2] + margin
        if backface:
            visible &= nz >= 0
        if exact:
            eps = 1e-3 * db["spacing"]
            # only where something else may lie in front: the vertex's pixel is won by a sample
            # more than eps in front of it, not on one of the vertex's own triangles
            win = db["sample"].view(-1)[torch.arange(b, device=cm.device) * (hb * wb) + iy * wb + ix]  # (N, B)
            n_idx = torch.arange(cm.shape[1], device=cm.device)[:, None, None]
            own = (db["elements"][win.clamp_min(0)] == n_idx).any(-1)                                # (N, B)
            cand = (front > cm[2] + eps) & ~own
            if backface:
                cand &= nz >= 0
            _decide_exactly(visible, cand, cm, faces, db, ix, iy, max(tol, 1e-3) * db["spacing"])
        visible = visible.t()
        return (visible, db) if return_buffer else visible


# depth_buffer lives in .depth; it stays importable from here, where rule (b) uses it
__all__ = ["vertex_normals", "visibility_backface", "visibility_backface_original", "original_grid_faces",
           "depth_buffer", "visibility_depth"]
