"""A fast, batched renderer of grid morphable models (textured, shaded, with a depth buffer).

This module owns the image formation of the synthetic data (:mod:`stn3dmm.training.data.synthetic`):
pure tensor functions for each step and :class:`GridRenderer`, the module that chains them.
It renders a grid model (its vertices an R x R grid in UV space, see :mod:`stn3dmm.model`)
under the STN's own projection (:func:`stn3dmm.stn.layers.grid_generator`), so an image
rendered at ``theta`` is exactly what :class:`~stn3dmm.stn.MorphableSTN` expects at ``theta``.

Method: dense surface splatting with a per-pixel depth test, no Python loop over images.

1. :func:`splat_grid_surface` -- the projected grid ``(B, R, R)`` of ``(x, y, z)`` is upsampled
   bilinearly to a lattice of ``M = k (R - 1) + 1`` samples a side (``k`` per grid cell, so the
   lattice is the surface of the bilinear patch mesh), each sample is dropped into its pixel,
   and one ``scatter_reduce('amax')`` keeps, per pixel, the sample with the largest depth z
   (nearest to the viewer on +z). Depth and sample index are packed into one integer key
   (quantised depth in the high bits, lattice index in the low bits; int32 when it fits, else
   int64), so the amax returns the winner's index as well as its depth. Cells whose projection
   is much larger than the lattice spacing (the stretched cells of the ears, say) get a finer
   local lattice; remaining pinholes -- empty pixels, or pixels where a farther surface shows
   through a near one -- take the nearest of their 3 x 3 neighbours (a depth-aware fill that
   never grows a silhouette). The work is memory bound, so it runs in chunks of images that
   keep the temporaries in cache.
2. Deferred texturing: each covered pixel knows the UV-grid position of the surface point it
   shows (:func:`raster_grid_coords`, :func:`raster_sampling_grid`); the shaded texture (an
   R x R map in UV layout) is read there with one ``grid_sample`` -- differentiable with respect
   to the texture and the lighting, not the geometry.
3. Shading (:func:`grid_normals`, :func:`shade_maps`): Lambert from grid-vertex normals (central
   differences on the grid) with a directional light, coloured ambient and diffuse terms and a
   Blinn-Phong specular term (viewer on +z), interpolated per pixel (Gouraud).
4. Anti-aliasing: the raster is ``supersample`` times finer than the output; the coverage
   and colour are box-filtered down and composited over the background (premultiplied).
5. :func:`point_visibility` -- depth test of any model vertices (e.g. landmarks) against the
   raster: visible when the surface seen at the vertex's pixel (or a direct neighbour) is
   within a few grid cells of the vertex in UV, or when nothing lies more than a small depth
   margin in front of it.

Conventions are the STN's (:mod:`stn3dmm.core.conventions`): image x right, y down, pixel centres at
integers (0-based); model mm, y up, viewer on +z; theta = [r, t, logs, alpha_id, alpha_exp].
A raster ``supersample`` times finer has pixel centres at ``x_r = (x + 0.5) a - 0.5``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from ...core.defaults import IMAGE_SIZE, LOCALISER_SIZE

#: Depth range of the packed keys: |z| < 512 mm (posed model frame).
_DEPTH_RANGE_BITS = 10
#: Samples splatted per chunk (keeps the temporaries in cache; the work is memory bound).
_CHUNK_SAMPLES = 1 << 20


# ----------------------------------------------------------------------------------------------
# lighting
# ----------------------------------------------------------------------------------------------

@dataclass
class Lighting:
    """Batched lighting (all tensors with a leading batch axis B).

    Attributes:
        direction: (B, 3) unit vector towards the light, in the posed model frame (x right,
            y up, z towards the viewer).
        ambient: (B, 3) RGB ambient factor.
        diffuse: (B, 3) RGB Lambert factor (times ``max(0, n . l)``).
        specular: (B,) Blinn-Phong strength (white highlight).
        shininess: (B,) Blinn-Phong exponent.
    """

    direction: torch.Tensor
    ambient: torch.Tensor
    diffuse: torch.Tensor
    specular: torch.Tensor
    shininess: torch.Tensor

    @classmethod
    def flat(cls, batch: int, dtype=torch.float32, device=None) -> "Lighting":
        """No shading: ambient 1, no diffuse or specular term (the texture as it is)."""
        z = torch.zeros(batch, dtype=dtype, device=device)
        d = torch.zeros(batch, 3, dtype=dtype, device=device)
        d[:, 2] = 1
        one, zero = torch.ones(batch, 3, dtype=dtype, device=device), torch.zeros(batch, 3, dtype=dtype, device=device)
        return cls(d, one, zero, z, z + 1)

    def to(self, dtype=None, device=None) -> "Lighting":
        return Lighting(*(getattr(self, k).to(device=device, dtype=dtype)
                          for k in ("direction", "ambient", "diffuse", "specular", "shininess")))


def grid_normals(vertices: torch.Tensor) -> torch.Tensor:
    """Unit normals of a grid surface by central differences: ``(B, R, R, 3) -> (B, R, R, 3)``.

    ``n = dX/d(row) x dX/d(col)`` (one-sided at the border), which points towards the viewer
    (+z) for a frontal face (rows run down the face, columns to the image right). Cheap and
    smooth: meant for shading, not for visibility decisions.
    """
    d_row = torch.gradient(vertices, dim=1)[0]
    d_col = torch.gradient(vertices, dim=2)[0]
    n = torch.linalg.cross(d_row, d_col, dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def shade_maps(normals: torch.Tensor, lighting: Lighting):
    """Per-vertex shading of a grid: ``normals (B, R, R, 3) -> diffuse (B, 3, R, R), specular (B, 1, R, R)``.

    ``diffuse = ambient + diffuse_rgb * max(0, n . l)`` and ``specular = k_s * max(0, n . h)^p``
    (only where ``n . l > 0``), with ``h`` the half vector of the light and the viewer (+z).
    A shaded colour is ``albedo * diffuse + specular``.
    """
    light = lighting.direction                        # l
    ndl = torch.einsum("brcd,bd->brc", normals, light)
    lam = ndl.clamp_min(0)[:, None]
    diffuse = lighting.ambient[:, :, None, None] + lighting.diffuse[:, :, None, None] * lam
    view = torch.zeros_like(light)
    view[:, 2] = 1
    h = light + view
    h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    ndh = torch.einsum("brcd,bd->brc", normals, h).clamp_min(0)
    spec = lighting.specular[:, None, None] * ndh.pow(lighting.shininess[:, None, None]) * (ndl > 0)
    return diffuse, spec[:, None]


# ----------------------------------------------------------------------------------------------
# rasterisation by splatting
# ----------------------------------------------------------------------------------------------

class _Keys:
    """Packing of (depth, lattice index) into one integer whose max is the nearest sample.

    int32 when the lattice index leaves at least 12 bits of depth (1/4 mm steps or finer),
    else int64 (1/2^k mm with k >= 12). Depth covers |z| < 512 mm."""

    def __init__(self, m: int):
        self.id_bits = max(1, int(math.ceil(math.log2(m * m))))
        if self.id_bits + 12 <= 31:
            self.dtype, total = torch.int32, 31
        else:
            self.dtype, total = torch.int64, 62
        self.depth_bits = min(total - self.id_bits, 30)
        self.steps = float(2 ** (self.depth_bits - _DEPTH_RANGE_BITS))  # per mm
        self.offset = float(2 ** (self.depth_bits - 1))
        self.id_mask = (1 << self.id_bits) - 1

    def pack(self, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``z`` float (consumed in place), ``ids`` of the key dtype -> keys."""
        zq = z.mul_(self.steps).add_(self.offset).clamp_(0, 2.0 ** self.depth_bits - 1).to(self.dtype)
        return zq.bitwise_left_shift_(self.id_bits).bitwise_or_(ids)

    def depth(self, key: torch.Tensor, dtype) -> torch.Tensor:
        """Keys -> depth in mm (``-inf`` where the key is negative = empty)."""
        z = ((key >> self.id_bits).to(dtype) - self.offset) / self.steps
        return torch.where(key >= 0, z, torch.full_like(z, -math.inf))


def _splat(buf: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, ids: torch.Tensor,
           image: torch.Tensor, height: int, width: int, keys: _Keys) -> None:
    """Scatter samples into the padded key buffer ``buf (B * (H + 2) * (W + 2),)``.

    ``x, y, z`` float (any shape; consumed), ``ids`` key dtype and ``image`` int64 broadcastable
    to it. Samples outside the image land in the 1-pixel border, which is discarded."""
    w2 = width + 2
    ix = x.add_(1.5).floor_().clamp_(0, width + 1)
    iy = y.add_(1.5).floor_().clamp_(0, height + 1)
    pix = iy.mul_(w2).add_(ix).to(torch.int64)
    pix += image * ((height + 2) * w2)
    buf.scatter_reduce_(0, pix.reshape(-1), keys.pack(z, ids).reshape(-1), reduce="amax", include_self=True)


def splat_grid_surface(points: torch.Tensor, depth: torch.Tensor, height: int, width: int, factor: int, *,
                       fill_holes: bool = True, refine: float = 1.5, max_refine: int = 4,
                       fill_depth: float = 3.0) -> dict:
    """Depth-buffered splatting of a grid surface: the nearest surface sample per pixel.

    Args:
        points: (B, R, R, 2) projected grid vertices in raster pixels (x right, y down,
            pixel centres at integers).
        depth: (B, R, R) depth of each vertex, larger = nearer the viewer (the posed z, mm;
            |z| < 512).
        height, width: raster size.
        factor: samples per grid cell along each axis (k >= 1); the lattice has
            ``M = k (R - 1) + 1`` samples a side, sample ``(a, b)`` at grid position
            ``(row, col) = (a / k, b / k)`` (row-major index ``a M + b``).
        fill_holes: fill pinholes: a pixel whose 3 x 3 neighbourhood has at least 6 pixels
            nearer than it by more than ``fill_depth`` mm (empty pixels count as infinitely far)
            takes the nearest neighbour's sample. This closes empty pinholes and pinholes in a
            near surface through which a farther one shows, but never the outside of a
            silhouette edge (at most 5 neighbours there).
        refine: cells (per image) whose projected diagonal exceeds ``refine * factor`` pixels
            (base lattice spacing over ``refine`` px, e.g. the stretched cells of the ears)
            get a finer local lattice of up to ``factor * max_refine`` steps, spaced about 1 px;
            its samples are labelled with the nearest base-lattice index. ``0`` disables.

    Returns:
        dict with ``sample`` (B, H, W) int64 lattice index of the surface point seen (-1 where
        empty), ``depth`` (B, H, W) its depth (``-inf`` where empty; quantised to 1/4 mm or
        finer), ``factor``, ``lattice`` (M), ``res`` (R).
    """
    b, r = points.shape[0], points.shape[1]
    k = int(factor)
    if k < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    m = k * (r - 1) + 1
    keys = _Keys(m)
    device, dtype = points.device, points.dtype
    hw2 = (height + 2) * (width + 2)
    with torch.no_grad():
        ids = torch.arange(m * m, dtype=keys.dtype, device=device)
        buf = torch.full((b * hw2,), -1, dtype=keys.dtype, device=device)
        grid = torch.cat((points.permute(0, 3, 1, 2), depth[:, None]), 1).detach()
        step = max(1, _CHUNK_SAMPLES // (m * m))
        for s in range(0, b, step):
            e = min(b, s + step)
            g = grid[s:e]
            g = F.interpolate(g, size=(m, m), mode="bilinear", align_corners=True) if k > 1 else g.clone()
            g = g.reshape(e - s, 3, m * m)
            img = torch.arange(s, e, device=device)[:, None]
            _splat(buf, g[:, 0], g[:, 1], g[:, 2], ids, img, height, width, keys)
        if refine and refine > 0:
            _refine_cells(buf, grid, k, m, height, width, keys, refine, max_refine)
        key = buf.view(b, height + 2, width + 2)
        if fill_holes:
            key = _fill_pinholes(key, keys, fill_depth)
        key = key[:, 1:-1, 1:-1]
        sample = torch.where(key >= 0, (key & keys.id_mask).to(torch.int64),
                             torch.full(key.shape, -1, dtype=torch.int64, device=device))
        z = keys.depth(key, dtype)
    return {"sample": sample, "depth": z, "factor": k, "lattice": m, "res": r}


def _refine_cells(buf, grid, k, m, height, width, keys, refine, max_refine):
    """Extra samples for cells whose projected diagonal exceeds ``refine * k`` px."""
    x, y = grid[:, 0], grid[:, 1]
    x00, x01, x10, x11 = x[:, :-1, :-1], x[:, :-1, 1:], x[:, 1:, :-1], x[:, 1:, 1:]
    y00, y01, y10, y11 = y[:, :-1, :-1], y[:, :-1, 1:], y[:, 1:, :-1], y[:, 1:, 1:]
    ext2 = torch.maximum((x11 - x00) ** 2 + (y11 - y00) ** 2, (x10 - x01) ** 2 + (y10 - y01) ** 2)  # (B, R-1, R-1)
    sel = ext2 > (refine * k) ** 2
    if not bool(sel.any()):
        return
    bi, ci, cj = torch.nonzero(sel, as_tuple=True)
    cx = torch.stack((x00[bi, ci, cj], x01[bi, ci, cj], x10[bi, ci, cj], x11[bi, ci, cj]))
    cy = torch.stack((y00[bi, ci, cj], y01[bi, ci, cj], y10[bi, ci, cj], y11[bi, ci, cj]))
    onscreen = (cx.amax(0) > -1) & (cx.amin(0) < width) & (cy.amax(0) > -1) & (cy.amin(0) < height)
    need = torch.ceil(ext2[bi, ci, cj].sqrt()).clamp_(max=k * max_refine).long()
    keep = onscreen & (need > k)
    bi, ci, cj, need = bi[keep], ci[keep], cj[keep], need[keep]
    g = grid.permute(0, 2, 3, 1).contiguous()  # (B, R, R, 3)
    for n in torch.unique(need).tolist():
        pick = need == n
        bb, ii, jj = bi[pick], ci[pick], cj[pick]
        t = torch.arange(n + 1, device=grid.device, dtype=grid.dtype) / n
        tv, tu = torch.meshgrid(t, t, indexing="ij")
        tv, tu = tv.reshape(-1), tu.reshape(-1)  # (S,)
        corners = torch.stack((g[bb, ii, jj], g[bb, ii, jj + 1], g[bb, ii + 1, jj], g[bb, ii + 1, jj + 1]), -1)
        weights = torch.stack(((1 - tv) * (1 - tu), (1 - tv) * tu, tv * (1 - tu), tv * tu))  # (4, S)
        pos = (corners.reshape(-1, 4) @ weights).view(len(bb), 3, -1).transpose(0, 1)  # (3, c, S): bilinear
        a = torch.round((ii[:, None].to(grid.dtype) + tv[None]) * k).long()
        c = torch.round((jj[:, None].to(grid.dtype) + tu[None]) * k).long()
        ids = (a * m + c).to(keys.dtype)
        _splat(buf, pos[0], pos[1], pos[2], ids, bb[:, None], height, width, keys)


def _fill_pinholes(key: torch.Tensor, keys: _Keys, fill_depth: float, min_count: int = 6) -> torch.Tensor:
    """One pass of depth-aware pinhole filling on the padded key image ``(B, H + 2, W + 2)``."""
    b, h2, w2 = key.shape
    h, w = h2 - 2, w2 - 2
    zq = torch.where(key >= 0, key >> keys.id_bits, torch.full_like(key, -(1 << 30)))
    centre = zq[:, 1:-1, 1:-1] + int(fill_depth * keys.steps)
    count = torch.zeros((b, h, w), dtype=torch.int8, device=key.device)
    best = torch.full((b, h, w), -1, dtype=key.dtype, device=key.device)
    for dy in range(3):
        for dx in range(3):
            if dy == 1 and dx == 1:
                continue
            count += zq[:, dy:dy + h, dx:dx + w] > centre
            torch.maximum(best, key[:, dy:dy + h, dx:dx + w], out=best)
    hole = count >= min_count
    out = key.clone()
    out[:, 1:-1, 1:-1] = torch.where(hole, best, key[:, 1:-1, 1:-1])
    return out


def _decode_samples(sample: torch.Tensor, factor: int, lattice: int, dtype) -> torch.Tensor:
    """Lattice indices (any shape, >= 0) -> grid positions ``(..., 2)`` (row, col)."""
    a = torch.div(sample, lattice, rounding_mode="floor")
    return torch.stack((a, sample - a * lattice), -1).to(dtype) / factor


def raster_grid_coords(raster: dict) -> torch.Tensor:
    """``(B, H, W, 2)`` fractional grid position ``(row, col)`` of the surface point seen at each
    raster pixel (in grid-vertex units, 0 .. R - 1); ``(-1, -1)`` where empty."""
    s = raster["sample"]
    rc = _decode_samples(s.clamp_min(0), raster["factor"], raster["lattice"], raster["depth"].dtype)
    return torch.where((s >= 0)[..., None], rc, torch.full_like(rc, -1.0))


def raster_sampling_grid(raster: dict) -> torch.Tensor:
    """``(B, H, W, 2)`` ``grid_sample`` coordinates (``align_corners=True``) into R x R maps in UV
    layout of the point seen at each pixel (arbitrary where empty: mask those pixels).

    Computed in floating point (lattice indices below 2^24 are exact in float32)."""
    s = raster["sample"]
    dtype = raster["depth"].dtype
    m, k, r = raster["lattice"], raster["factor"], raster["res"]
    sf = s.to(torch.float64 if m * m >= 1 << 24 else dtype)
    row = torch.floor((sf + 0.5) / m)
    col = sf - row * m
    step = 2.0 / ((r - 1) * k)
    return torch.stack((col, row), -1).mul_(step).sub_(1.0).to(dtype)


def point_visibility(raster: dict, points: torch.Tensor, depth: torch.Tensor, grid_rc: torch.Tensor, *,
                     max_cells: float = 2.5, depth_tol: float = 2.0) -> torch.Tensor:
    """Depth test of surface points against a raster: ``(B, L)`` bool, True = seen in the image.

    A point is visible when it projects inside the raster and either the surface seen at its
    pixel or at one of its 4 neighbours is within ``max_cells`` grid cells of the point in UV
    (it is the point's own neighbourhood), or the surface seen at its pixel lies at most
    ``depth_tol`` mm in front of it (covers grazing surface, where a pixel spans many cells).
    Occluders (the nose in front of a cheek, the head in front of the far ear) are tens of
    cells away in UV and many mm nearer, so they hide the point.

    Args:
        raster: from :func:`splat_grid_surface`.
        points: (B, L, 2) raster pixel positions of the points.
        depth: (B, L) their depth (posed z, mm; larger = nearer).
        grid_rc: (L, 2) or (B, L, 2) their grid positions (row, col), e.g. ``divmod(vertex, R)``.
    """
    s = raster["sample"]
    b, h, w = s.shape
    k, m = raster["factor"], raster["lattice"]
    with torch.no_grad():
        flat_s = s.view(b, h * w)
        dtype = points.dtype
        ix = torch.floor(points[..., 0] + 0.5).long()
        iy = torch.floor(points[..., 1] + 0.5).long()
        inside = (ix >= 0) & (ix <= w - 1) & (iy >= 0) & (iy <= h - 1)
        grid_rc = grid_rc.to(dtype).expand(b, *grid_rc.shape[-2:])
        best = torch.full(points.shape[:2], math.inf, dtype=dtype, device=points.device)
        for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            jx, jy = (ix + dx).clamp(0, w - 1), (iy + dy).clamp(0, h - 1)
            got = torch.gather(flat_s, 1, jy * w + jx)
            dist = (_decode_samples(got.clamp_min(0), k, m, dtype) - grid_rc).norm(dim=-1)
            best = torch.minimum(best, torch.where(got >= 0, dist, torch.full_like(dist, math.inf)))
        flat = iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)
        front = torch.gather(raster["depth"].view(b, h * w), 1, flat)
        near = front - depth <= depth_tol
        return inside & ((best <= max_cells) | near)


def composite(color: torch.Tensor, mask: torch.Tensor, background: torch.Tensor | None, supersample: int):
    """Box-filter a raster down by ``supersample`` and composite it over a background.

    Args:
        color: (B, C, a H, a W) colour where covered.
        mask: (B, 1, a H, a W) coverage 0/1.
        background: (B, C, H, W) or None (black).
        supersample: a.

    Returns:
        image (B, C, H, W) = filtered(colour * mask) + (1 - alpha) background, alpha (B, 1, H, W).
    """
    fg = color * mask
    if supersample > 1:
        fg = F.avg_pool2d(fg, supersample)
        alpha = F.avg_pool2d(mask, supersample)
    else:
        alpha = mask
    if background is not None:
        fg = fg + (1.0 - alpha) * background
    return fg, alpha


# ----------------------------------------------------------------------------------------------
# the module
# ----------------------------------------------------------------------------------------------

def default_factor(model, size: int, supersample: int, max_scale: float, spacing: float = 1.5) -> int:
    """Lattice samples per grid cell: the median cell of the mean shape (its longer diagonal)
    at scale ``max_scale`` (px/mm at the OUTPUT size) gets samples at most ``spacing`` raster
    pixels apart. Larger cells are refined locally and pinholes filled
    (:func:`splat_grid_surface`)."""
    r = model.res
    v = np.asarray(model.mean, dtype=np.float64).reshape(r, r, 3)
    d1 = np.linalg.norm(v[1:, 1:] - v[:-1, :-1], axis=2)
    d2 = np.linalg.norm(v[1:, :-1] - v[:-1, 1:], axis=2)
    diag_px = float(np.median(np.maximum(d1, d2))) * max_scale * supersample
    return int(min(16, max(1, math.ceil(diag_px / spacing))))


class GridRenderer(nn.Module):
    """Render a grid morphable model at theta: textured, shaded, depth-tested, anti-aliased.

    Args:
        model: a grid :class:`~stn3dmm.model.MorphableModel` (``model.res = R``).
        size: output image side S (square images).
        supersample: raster is ``a = supersample`` times finer than the output (anti-aliasing);
            default 2 up to S = 160, else 1.
        factor: lattice samples per grid cell (default: :func:`default_factor` for a face at
            ``max_scale = 1.25 * S / 224`` px/mm).
        n_id, n_exp: coefficients in theta (the model's leading components; default all).
        scale: scale map of ``logs`` (``"exp"``: ``s = exp(logs)``).
        fill_holes: fill raster pinholes.

    ``forward(theta, texture, lighting=None, background=None)`` with theta ``(B, 6 + n_id + n_exp)``,
    texture ``(B, 3, T, T)`` in UV layout (row 0 = top of the face; usually T = R), lighting a
    :class:`Lighting` (None = flat) and background ``(B, 3, S, S)`` (None = black), returns a dict:

    ==========  ================  =================================================
    key         shape             meaning
    ==========  ================  =================================================
    image       (B, 3, S, S)      the rendering composited over the background
    alpha       (B, 1, S, S)      surface coverage
    points      (B, N, 2)         projected vertices, output px
    posed       (B, N, 3)         X' = X R^T (mm)
    shape       (B, N, 3)         X
    rotation    (B, 3, 3)         R
    raster      dict              :func:`splat_grid_surface` at a S px (for visibility)
    ==========  ================  =================================================
    """

    def __init__(self, model, size: int = LOCALISER_SIZE, *, supersample: int | None = None, factor: int | None = None,
                 n_id: int | None = None, n_exp: int | None = None, scale: str = "exp", fill_holes: bool = True):
        super().__init__()
        from ...stn import MorphableSTN

        self.stn = MorphableSTN(model, landmarks=None, visibility="none", scale=scale, n_id=n_id, n_exp=n_exp,
                                max_outside=None)
        self.res = int(model.res)
        self.size = int(size)
        self.supersample = int(supersample) if supersample else (2 if self.size <= 160 else 1)
        if self.size < 2 or self.supersample < 1:
            raise ValueError(f"size must be >= 2 and supersample >= 1, got {size}, {supersample}")
        self.factor = int(factor) if factor else default_factor(model, self.size, self.supersample,
                                                                1.25 * self.size / IMAGE_SIZE)
        self.fill_holes = fill_holes

    @property
    def n_params(self) -> int:
        return self.stn.n_params

    def extra_repr(self) -> str:
        return f"res={self.res}, size={self.size}, supersample={self.supersample}, factor={self.factor}"

    def to_raster(self, points: torch.Tensor) -> torch.Tensor:
        """Output pixel coordinates ``(..., 2)`` -> raster pixel coordinates."""
        a = self.supersample
        return (points + 0.5) * a - 0.5 if a > 1 else points

    def forward(self, theta: torch.Tensor, texture: torch.Tensor, lighting: Lighting | None = None,
                background: torch.Tensor | None = None) -> dict:
        b, r, s, a = theta.shape[0], self.res, self.size, self.supersample
        proj = self.stn.geometry(theta)
        posed = proj.posed
        pts = self.to_raster(proj.points)
        raster = splat_grid_surface(pts.view(b, r, r, 2), posed[..., 2].view(b, r, r), s * a, s * a, self.factor,
                                    fill_holes=self.fill_holes)
        if texture.ndim != 4 or texture.shape[0] != b or texture.shape[1] != 3:
            raise ValueError(f"texture must be (B, 3, T, T) with B = {b}, got {tuple(texture.shape)}")
        tex = texture.to(theta.dtype)
        if lighting is not None:
            normals = grid_normals(posed.view(b, r, r, 3))
            diffuse, spec = shade_maps(normals, lighting.to(theta.dtype, theta.device))
            if tex.shape[-1] != r or tex.shape[-2] != r:
                diffuse = F.interpolate(diffuse, size=tex.shape[-2:], mode="bilinear", align_corners=True)
                spec = F.interpolate(spec, size=tex.shape[-2:], mode="bilinear", align_corners=True)
            tex = tex * diffuse + spec
        grid = raster_sampling_grid(raster)
        color = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=True)
        mask = (raster["sample"] >= 0)[:, None].to(theta.dtype)
        image, alpha = composite(color, mask, background, a)
        return {"image": image, "alpha": alpha, "points": proj.points, "posed": posed, "shape": proj.shape,
                "rotation": proj.rotation, "scale": proj.scale, "raster": raster}

    def visibility(self, out: dict, vertices, **kwargs) -> torch.Tensor:
        """``(B, L)`` bool depth-test visibility of model vertices ``vertices (L,)`` in a
        :meth:`forward` result (see :func:`point_visibility`)."""
        idx = torch.as_tensor(vertices, dtype=torch.long, device=out["points"].device)
        rc = torch.stack((torch.div(idx, self.res, rounding_mode="floor"), idx % self.res), -1)
        pts = self.to_raster(out["points"].index_select(1, idx))
        return point_visibility(out["raster"], pts, out["posed"][..., 2].index_select(1, idx), rc, **kwargs)


__all__ = ["Lighting", "grid_normals", "shade_maps", "splat_grid_surface", "raster_grid_coords",
           "raster_sampling_grid", "point_visibility", "composite", "default_factor", "GridRenderer"]
