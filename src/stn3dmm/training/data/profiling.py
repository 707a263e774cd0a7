"""Face profiling of a whole head: a photo, meshed around its fitted face, turned to a new pose.

This module owns :func:`head_surface` (one photo and its fit -> a textured lattice surface in the
model frame) and :func:`render_surfaces` (a batch of those surfaces, posed, rasterised and
composited), the ``"head"`` renders of :class:`~.fitted.FittedPhotos`.

The idea is 300W-LP's face profiling (Zhu et al., "Face Alignment Across Large Poses: A 3D
Solution", CVPR 2016): give the photo a depth, so that not only the face but the hair, the ears
and the neck around it turn with the head. Here:

1. A square around the face (:data:`HEAD_SIDE` times the 68 points' crop side, raised by
   :data:`HEAD_RAISE` of it towards the hair) is covered by a ``G x G`` lattice of nodes; its
   texture is the photo itself, resampled ``T x T``.
2. Node depth, inside the fitted face, is the fitted model's (the fit's posed surface, splatted
   onto the lattice with the renderer's depth buffer). Outside it, the nearest face depth,
   smoothed, falls off with the squared distance to the face (``falloff`` mm per mm^2): the
   sides of the head curve away as a skull does. The depth never drops more than ``back`` mm
   below the face's farthest point.
3. The lattice's alpha is 1 up to ``keep`` mm from the face and fades to 0 at ``keep + fade``
   mm: hair, ears and neck come along, the far background does not (it is replaced by another
   photo's surroundings, as the face-only renders are).
4. The nodes, un-posed by the fit's rotation, are model-frame points; :func:`render_surfaces`
   poses them like the model (``X' = X R^T``), projects them with the STN's own projection
   and rasterises them with :func:`~.render.splat_grid_surface` (depth test, so the nose hides
   the far cheek). The fitted model's vertices, posed the same way, are the exact labels.

Self-occlusion in the source photo is not undone: turning a face beyond the side it shows
stretches what it hid (the renders turn each face further towards the side it already shows).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...stn.layers import axis_angle_to_rotation, orthographic_projection, rotate
from .render import composite, raster_sampling_grid, splat_grid_surface

#: The lattice's square: this many times the 68 points' crop side, its centre raised by
#: ``HEAD_RAISE`` of that side (the hair above the face matters more than the neck below).
HEAD_SIDE, HEAD_RAISE = 2.2, 0.1


def head_surface(image: np.ndarray, theta: np.ndarray, matrix: np.ndarray, model_points: np.ndarray,
                 centre, side: float, *, lattice: int = 96, texels: int = 192, falloff: float = 0.03,
                 back: float = 60.0, keep: float = 30.0, fade: float = 25.0) -> dict:
    """One photo meshed around its fitted face (module docstring).

    Args:
        image: (H, W, 3) uint8 photo.
        theta: (P,) the fit's theta in its crop (``[r, t, logs, ...]``, ``exp`` scale).
        matrix: (2, 3) photo px -> the fit's crop px.
        model_points: (R, R, 3) the fit's posed vertices X' (mm; the grid in row-major order).
        centre, side: the photo square (px) the lattice covers.
        lattice, texels: G nodes and T texels a side.
        falloff, back, keep, fade: the depth and alpha outside the face (module docstring), mm.

    Returns:
        dict with ``nodes`` (G, G, 3) float32 model-frame points (mm), ``texture`` (4, T, T)
        float32 RGBA (row 0 = the square's top; texel (0, 0) at node (0, 0), (T-1, T-1) at node
        (G-1, G-1)).
    """
    from ...photos.crop import crop_square

    g = int(lattice)
    tex, tr = crop_square(image, centre, side, int(texels))
    inv = tr.inverse()
    ij = np.linspace(0.0, texels - 1.0, g)
    grid_px = inv.apply(np.stack(np.meshgrid(ij, ij, indexing="xy"), -1))      # (G, G, 2) photo px; [row, col]
    a, b = matrix[:, :2], matrix[:, 2]
    q = grid_px @ a.T + b                                                      # fit crop px
    s, t = math.exp(float(theta[5])), np.asarray(theta[3:5], np.float64)
    xy = np.stack(((q[..., 0] - t[0]) / s, -(q[..., 1] - t[1]) / s), -1)        # posed mm
    mm_per_node = float(np.linalg.norm(xy[0, 1] - xy[0, 0]))
    depth = _face_depth(model_points, s, t, a, b, tr, texels, g)
    z, dist = _extend_depth(depth, mm_per_node, falloff, back)
    posed = np.concatenate((xy, z[..., None]), -1)
    rot = axis_angle_to_rotation(torch.as_tensor(theta[None, :3], dtype=torch.float64))[0].numpy()
    nodes = posed @ rot                                                        # X = X' R (R orthonormal)
    alpha = np.clip(1.0 - (dist - keep) / max(fade, 1e-6), 0.0, 1.0).astype(np.float32)
    alpha_t = F.interpolate(torch.from_numpy(alpha)[None, None], size=(texels, texels), mode="bilinear",
                            align_corners=True)[0]
    rgb = torch.from_numpy(np.ascontiguousarray(tex)).permute(2, 0, 1).float()
    return {"nodes": torch.from_numpy(nodes.astype(np.float32)), "texture": torch.cat((rgb, alpha_t), 0)}


def _face_depth(model_points, s: float, t, a, b, tr, texels: int, g: int) -> np.ndarray:
    """(G, G) the fitted surface's depth at the lattice nodes (-inf off the face)."""
    r = model_points.shape[0]
    q = s * np.stack((model_points[..., 0], -model_points[..., 1]), -1) + t      # posed mm -> fit crop px
    photo = (q - b) @ np.linalg.inv(a).T
    node = tr.apply(photo) * ((g - 1.0) / (texels - 1.0))                       # texel -> node (spacing 1)
    pts = torch.from_numpy(node.reshape(1, r, r, 2).astype(np.float32))
    ras = splat_grid_surface(pts, torch.from_numpy(model_points[None, ..., 2].astype(np.float32)), g, g, 2)
    return ras["depth"][0].numpy().astype(np.float64)


def _extend_depth(depth: np.ndarray, mm_per_node: float, falloff: float, back: float):
    """Face depth extended outward: (z (G, G), distance to the face in mm (G, G))."""
    from scipy import ndimage

    face = np.isfinite(depth)
    if not face.any():
        raise ValueError("the fitted face does not cover the head square")
    dist, idx = ndimage.distance_transform_edt(~face, return_indices=True)
    near = depth[idx[0], idx[1]]
    smooth = ndimage.gaussian_filter(near, 2.0)
    d_mm = dist * mm_per_node
    floor = float(depth[face].min()) - back
    z = np.where(face, depth, np.maximum(smooth - falloff * d_mm ** 2, floor))
    return z, d_mm


def render_surfaces(nodes: torch.Tensor, texture: torch.Tensor, rotation: torch.Tensor, scale: torch.Tensor,
                    translation: torch.Tensor, size: int, background: torch.Tensor | None = None,
                    supersample: int = 2) -> dict:
    """Pose, project and rasterise lattice surfaces: the head renders of the module docstring.

    Args:
        nodes: (B, G, G, 3) model-frame points, mm.
        texture: (B, 4, T, T) RGBA, texel corners on the lattice corners (:func:`head_surface`).
        rotation: (B, 3, 3) R; the nodes are posed as ``X' = X R^T``.
        scale, translation: (B,) px per mm and (B, 2) px: ``p = s (X'_x, -X'_y) + t``.
        size: output side S; ``supersample`` a: the raster is ``a S`` a side.
        background: (B, 3, S, S) or None (black).

    Returns:
        dict with ``image`` (B, 3, S, S) and ``alpha`` (B, 1, S, S).
    """
    bsz, g = nodes.shape[0], nodes.shape[1]
    posed = rotate(nodes.reshape(bsz, -1, 3), rotation)
    pts = orthographic_projection(posed) * scale[:, None, None] + translation[:, None]
    a = int(supersample)
    pts = (pts + 0.5) * a - 0.5 if a > 1 else pts
    step = (pts.view(bsz, g, g, 2)[:, 1:] - pts.view(bsz, g, g, 2)[:, :-1]).norm(dim=-1).max()
    factor = int(min(8, max(1, math.ceil(float(step) / 1.2))))
    raster = splat_grid_surface(pts.view(bsz, g, g, 2).contiguous(), posed[..., 2].reshape(bsz, g, g).contiguous(),
                                size * a, size * a, factor)
    grid = raster_sampling_grid(raster)
    colour = F.grid_sample(texture, grid.to(texture.dtype), mode="bilinear", padding_mode="border",
                           align_corners=True)
    mask = (raster["sample"] >= 0)[:, None].to(texture.dtype) * colour[:, 3:4]
    image, alpha = composite(colour[:, :3], mask, background, a)
    return {"image": image, "alpha": alpha}


__all__ = ["HEAD_SIDE", "HEAD_RAISE", "head_surface", "render_surfaces"]
