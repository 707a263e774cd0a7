"""Synthetic multi-view face data with exact ground truth: textures, backgrounds, the Dataset, export.

This module owns the synthetic training / test data of issue 5 section 4: random identities
of a grid morphable model, each rendered in several views (same identity coefficients and
texture; different pose, expression, lighting, background and camera effects) by the batched
renderer of :mod:`stn3dmm.data.render`, with exact landmarks, their depth-tested visibility,
pose, identity and theta.

* Pose convention -- :func:`euler_to_rotation` / :func:`rotation_to_euler`: in the model frame
  (x right, y up, z towards the viewer) ``R = Rz(roll) Rx(pitch) Ry(yaw)``, each a
  right-handed rotation, angles in degrees. Positive yaw turns the nose towards the image's +x
  (right), positive pitch turns it down (towards image +y), positive roll turns the face
  counter-clockwise as seen in the image. theta's ``r`` is the axis-angle vector of this R.
* Textures -- :class:`TextureBank`: R x R images in the grid's UV layout (row 0 = top of the
  face). Procedural textures (skin tone from a light-to-dark palette, per-identity
  low-frequency colour noise and fine grain, darker brows, eyes with sclera / iris / pupil /
  lash line, lips and mouth line, nostrils, eye-socket shading, blush, hair line, beards),
  with every feature placed from the model's landmark vertices on the UV grid, so the
  landmarks sit on visible features. Photo textures: the sample photos
  (:mod:`stn3dmm.samples`) flattened once with :class:`stn3dmm.flatten.Flattener` (symmetric
  completion), holes inpainted by normalised blurring, skin tone shifted per identity, and
  blended into a procedural texture outside the inner face.
* Backgrounds -- :func:`make_backgrounds`: colour gradients, low-frequency noise, stripes,
  blobs, and random crops of the sample photos away from the detected face.
* :class:`SyntheticFaces` -- the ``torch.utils.data.Dataset`` (sample format of
  :mod:`stn3dmm.data`); deterministic given ``(seed, identity, view)``; batched rendering
  (:meth:`SyntheticFaces.render_batch`, ``__getitems__`` for DataLoader batches, a small
  cache of rendered batches for ``__getitem__``, :meth:`SyntheticFaces.prerender`).
* :func:`export_synthetic` -- writes ``name.png`` + ``name.json`` pairs in the folder format
  of :class:`~stn3dmm.data.folder.LandmarkFolder` (through its writer), atomically, with a
  progress bar.

Randomness: identity ``i`` draws from ``numpy.random.default_rng([seed, 0, i])`` and view
``v`` of identity ``i`` from ``default_rng([seed, 1, i, v])``; item ``index`` of a data set is
identity ``identity_offset + index // views``, view ``index % views``. Train / test splits by
identity: e.g. ``SyntheticFaces(model, 1000, 4)`` and ``SyntheticFaces(model, 200, 4,
identity_offset=1000)`` share no identity and are reproducible.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..conventions import N_POSE
from .render import GridRenderer, Lighting
from .sample import landmark_vertices, make_sample

# ----------------------------------------------------------------------------------------------
# pose convention
# ----------------------------------------------------------------------------------------------

POSE_CONVENTION = ("R = Rz(roll) Rx(pitch) Ry(yaw) in the model frame (x right, y up, z to the viewer), degrees; "
                   "yaw > 0: nose towards image +x; pitch > 0: nose down (image +y); roll > 0: counter-clockwise "
                   "in the image")
THETA_LAYOUT = "[r(3) axis-angle, t(2) px (x right, y down, 0-based), logs(1) s = exp(logs) px/mm, alpha_id, alpha_exp]"


def euler_to_rotation(yaw, pitch, roll) -> torch.Tensor:
    """``R = Rz(roll) Rx(pitch) Ry(yaw)`` from angles in degrees (tensors or numbers of one shape ``S``)
    -> ``(*S, 3, 3)`` (float64 for numbers). See :data:`POSE_CONVENTION`."""
    y, p, r = (torch.as_tensor(a, dtype=torch.float64) if not isinstance(a, torch.Tensor) else a
               for a in (yaw, pitch, roll))
    y, p, r = torch.deg2rad(y), torch.deg2rad(p), torch.deg2rad(r)
    cy, sy, cp, sp, cr, sr = y.cos(), y.sin(), p.cos(), p.sin(), r.cos(), r.sin()
    o, i = torch.zeros_like(y), torch.ones_like(y)
    ry = torch.stack((cy, o, sy, o, i, o, -sy, o, cy), -1).view(*y.shape, 3, 3)
    rx = torch.stack((i, o, o, o, cp, -sp, o, sp, cp), -1).view(*y.shape, 3, 3)
    rz = torch.stack((cr, -sr, o, sr, cr, o, o, o, i), -1).view(*y.shape, 3, 3)
    return rz @ rx @ ry


def rotation_to_euler(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`euler_to_rotation`: ``(..., 3, 3) -> (..., 3)`` (yaw, pitch, roll) in degrees,
    pitch in [-90, 90]. From the third row ``(-cos p sin y, sin p, cos p cos y)`` and the second
    column ``(-sin r cos p, cos r cos p, sin p)``."""
    m = rotation
    pitch = torch.asin(m[..., 2, 1].clamp(-1, 1))
    yaw = torch.atan2(-m[..., 2, 0], m[..., 2, 2])
    roll = torch.atan2(-m[..., 0, 1], m[..., 1, 1])
    return torch.rad2deg(torch.stack((yaw, pitch, roll), -1))


def pose_from_theta(theta: torch.Tensor) -> torch.Tensor:
    """``theta (..., P) -> (..., 3)`` yaw, pitch, roll in degrees (of its axis-angle ``r``)."""
    from ..stn.layers import axis_angle_to_rotation

    return rotation_to_euler(axis_angle_to_rotation(theta[..., :3]))


# ----------------------------------------------------------------------------------------------
# small image helpers
# ----------------------------------------------------------------------------------------------

def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflect padding (one sigma for all)."""
    if sigma <= 0:
        return x
    rad = max(1, int(math.ceil(3 * sigma)))
    rad = min(rad, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-rad, rad + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (rad, rad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, rad, rad), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def blur_batch(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of ``(B, C, H, W)`` with one sigma per image ``(B,)`` (0 = unchanged)."""
    b, c, h, w = x.shape
    smax = float(sigma.max()) if sigma.numel() else 0.0
    if smax <= 0:
        return x
    rad = max(1, int(math.ceil(3 * smax)))
    t = torch.arange(-rad, rad + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x.dtype).clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = k / k.sum(1, keepdim=True)  # (B, K); sigma ~ 0 gives a delta
    k = k[:, None].expand(b, c, -1).reshape(b * c, 1, -1)
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (rad, rad, 0, 0), mode="reflect"), k[:, :, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, rad, rad), mode="reflect"), k[:, :, :, None], groups=b * c)
    return y.view(b, c, h, w)


def inpaint_blur(image: torch.Tensor, alpha: torch.Tensor, sigmas=(1.5, 3.0, 6.0, 12.0, 24.0)) -> torch.Tensor:
    """Fill ``image (B, C, H, W)`` where ``alpha (B, 1, H, W)`` is 0 by normalised Gaussian blurring at
    growing scales (smooth colour from the nearby known pixels); known pixels are kept."""
    a = (alpha > 0.5).to(image.dtype)
    out = image * a
    filled = a.clone()
    for s in sigmas:
        num = gaussian_blur(image * a, s)
        den = gaussian_blur(a, s)
        ok = (den > 1e-3) & (filled < 0.5)
        out = torch.where(ok, num / den.clamp_min(1e-3), out)
        filled = torch.where(ok, torch.ones_like(filled), filled)
    if bool((filled < 0.5).any()):
        mean = (image * a).sum((2, 3), keepdim=True) / a.sum((2, 3), keepdim=True).clamp_min(1)
        out = torch.where(filled > 0.5, out, mean.expand_as(out))
    return out


def _upsample(grid: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(grid, size=size, mode="bicubic", align_corners=True)


# ----------------------------------------------------------------------------------------------
# texture layout: feature masks on the UV grid from the model's landmark vertices
# ----------------------------------------------------------------------------------------------

def _polygon_mask(poly: np.ndarray, res: int, ss: int = 4) -> np.ndarray:
    """Soft (area-fraction) mask of a polygon given in grid coordinates (row, col)."""
    from matplotlib.path import Path as MplPath

    t = (np.arange(res * ss) + 0.5) / ss - 0.5
    rr, cc = np.meshgrid(t, t, indexing="ij")
    inside = MplPath(poly[:, ::-1]).contains_points(np.stack((cc.ravel(), rr.ravel()), 1))
    return inside.reshape(res, ss, res, ss).mean((1, 3)).astype(np.float32)


def _polyline_distance(line: np.ndarray, res: int) -> np.ndarray:
    """Distance (cells) from each grid point to a polyline ``(K, 2)`` of (row, col) points."""
    rr, cc = np.meshgrid(np.arange(res, dtype=np.float64), np.arange(res, dtype=np.float64), indexing="ij")
    p = np.stack((rr, cc), -1)[..., None, :]  # (R, R, 1, 2)
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    d = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)
    return d.min(-1).astype(np.float32)


def _ellipse_polygon(c, axis_pt0, axis_pt1, ratio, n=24) -> np.ndarray:
    """Polygon of an ellipse through two corner points with minor/major ratio, centred at ``c``."""
    a = 0.5 * (np.asarray(axis_pt1, float) - np.asarray(axis_pt0, float))
    nrm = np.array([-a[1], a[0]]) * ratio
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.asarray(c, float) + np.cos(t)[:, None] * a + np.sin(t)[:, None] * nrm


def _gauss(res: int, centre, sigma_r: float, sigma_c: float | None = None) -> np.ndarray:
    sigma_c = sigma_r if sigma_c is None else sigma_c
    rr, cc = np.meshgrid(np.arange(res, dtype=np.float64), np.arange(res, dtype=np.float64), indexing="ij")
    return np.exp(-0.5 * (((rr - centre[0]) / sigma_r) ** 2 + ((cc - centre[1]) / sigma_c) ** 2)).astype(np.float32)


def texture_layout(model) -> dict:
    """Feature masks of a grid model's UV layout, ``name -> (R, R) float32``, from its landmarks.

    Uses the iBUG-68 landmark vertices when the model has them (eye and lip polygons, brow
    polylines, nose base, jaw line), else approximations from AFLW-21 (ellipses through the eye
    and mouth corners). Masks: ``brow_dist`` (distance to the brow lines, cells), ``eye``,
    ``eye_dist`` (distance to the eye outline), ``iris_dist`` (scaled distance from the eye
    centres), ``lips``, ``mouth``, ``nostril``, ``socket``, ``cheek``, ``nose``, ``beard``,
    ``face`` (the inner face, for photo blending), ``jaw_row`` (R,) the jaw line's row per column.
    """
    r = int(model.res)
    lm = model.landmarks
    z = np.zeros((r, r), np.float32)
    if "ibug68" in lm:
        idx = np.asarray(lm["ibug68"])
        rc = np.stack((idx // r, idx % r), 1).astype(np.float64)
        brows = [rc[17:22], rc[22:27]]
        eyes = [rc[36:42], rc[42:48]]
        mouth_outer, mouth_inner = rc[48:60], rc[60:68]
        nose_base = rc[31:36]
        nostrils = [0.5 * (nose_base[0] + nose_base[1]) + (-0.6, 0.3),
                    0.5 * (nose_base[3] + nose_base[4]) + (-0.6, -0.3)]
        nose_tip = rc[30]
        jaw = rc[0:17]
    elif "aflw21" in lm:
        idx = np.asarray(lm["aflw21"])
        rc = np.stack((idx // r, idx % r), 1).astype(np.float64)
        brows = [rc[0:3], rc[3:6]]
        eyes = [_ellipse_polygon(rc[7], rc[6], rc[8], 0.38), _ellipse_polygon(rc[10], rc[9], rc[11], 0.38)]
        mc = 0.5 * (rc[17] + rc[19])
        mouth_outer = _ellipse_polygon(mc, rc[17], rc[19], 0.5)
        mouth_inner = _ellipse_polygon(mc, rc[17], rc[19], 0.12)
        nostrils = [rc[13] + (0.5, 1.0), rc[15] + (0.5, -1.0)]
        nose_tip = rc[14]
        jaw = np.array([rc[12], 0.5 * (rc[12] + rc[20]) + (8, -4), rc[20], 0.5 * (rc[16] + rc[20]) + (8, 4), rc[16]])
    else:
        return {"brow_dist": z + 1e3, "eye": z, "eye_dist": z + 1e3, "iris_dist": z + 1e3, "lips": z, "mouth": z,
                "nostril": z, "socket": z, "cheek": z, "nose": z, "beard": z, "face": z + 1,
                "jaw_row": np.full(r, r - 1.0, np.float32), "eye_height": 1.0}
    out = {}
    out["brow_dist"] = np.minimum(_polyline_distance(brows[0], r), _polyline_distance(brows[1], r))
    eye = np.maximum(_polygon_mask(eyes[0], r), _polygon_mask(eyes[1], r))
    out["eye"] = eye
    closed = [np.concatenate((e, e[:1])) for e in eyes]
    out["eye_dist"] = np.minimum(_polyline_distance(closed[0], r), _polyline_distance(closed[1], r))
    iris = np.full((r, r), 1e3, np.float32)
    heights = []
    for e in eyes:
        c = e.mean(0)
        h = max(1.0, float(e[:, 0].max() - e[:, 0].min()))
        heights.append(h)
        rr, cc = np.meshgrid(np.arange(r, dtype=np.float64), np.arange(r, dtype=np.float64), indexing="ij")
        # the iris: a disc ~ 0.55 of the eye height in rows and a little wider in columns
        d = np.sqrt(((rr - c[0]) / (0.6 * h)) ** 2 + ((cc - c[1]) / (0.75 * h)) ** 2)
        iris = np.minimum(iris, d.astype(np.float32))
    out["iris_dist"] = iris
    out["eye_height"] = float(np.mean(heights))
    outer = _polygon_mask(mouth_outer, r)
    inner = _polygon_mask(mouth_inner, r)
    # the mouth slit: the inner outline's mid-line (corner - middle - corner) as a thin dark line
    slit = np.array([mouth_inner[0], 0.5 * (mouth_inner[2] + mouth_inner[6]), mouth_inner[4]])
    out["mouth"] = np.maximum(inner, np.clip(1.0 - 0.8 * _polyline_distance(slit, r), 0, 1)).astype(np.float32)
    out["lips"] = np.clip(outer - 0.5 * out["mouth"], 0, 1).astype(np.float32)
    out["nostril"] = np.maximum(_gauss(r, nostrils[0], 0.8, 1.1), _gauss(r, nostrils[1], 0.8, 1.1))
    ec = [e.mean(0) for e in eyes]
    out["socket"] = np.maximum(_gauss(r, ec[0] + (-1.0, 0), 3.5, 5.5), _gauss(r, ec[1] + (-1.0, 0), 3.5, 5.5))
    mc = mouth_outer.mean(0)
    cheek_row = 0.5 * (ec[0][0] + mc[0])
    out["cheek"] = np.maximum(_gauss(r, (cheek_row, ec[0][1] - 3), 6, 6), _gauss(r, (cheek_row, ec[1][1] + 3), 6, 6))
    out["nose"] = _gauss(r, nose_tip, 3, 3)
    cols = np.arange(r, dtype=np.float64)
    order = np.argsort(jaw[:, 1])
    jaw_row = np.interp(cols, jaw[order, 1], jaw[order, 0], left=jaw[order[0], 0], right=jaw[order[-1], 0])
    out["jaw_row"] = jaw_row.astype(np.float32)
    rr = np.arange(r, dtype=np.float64)[:, None]
    nose_row = max(n[0] for n in nostrils)
    below_nose = 1 / (1 + np.exp(-(rr - (nose_row + 2.5)) / 1.2))
    above_jaw = 1 / (1 + np.exp(-(jaw_row[None] + 2.0 - rr) / 1.5))
    side = 1 / (1 + np.exp(-(np.minimum(cols - jaw[:, 1].min(), jaw[:, 1].max() - cols) - 3) / 2))[None]
    out["beard"] = (below_nose * above_jaw * side * (1 - outer)).astype(np.float32)
    brow_top = min(b[:, 0].min() for b in brows)
    centre = np.array([0.5 * (brow_top + jaw[:, 0].max()), 0.5 * (r - 1)])
    half_h = 0.5 * (jaw[:, 0].max() - brow_top) + 6
    half_w = 0.5 * (jaw[:, 1].max() - jaw[:, 1].min()) + 1
    cc = cols[None]
    d = np.sqrt(((rr - centre[0]) / half_h) ** 2 + ((cc - centre[1]) / half_w) ** 2)
    out["face"] = np.clip((1.0 - d) / 0.15, 0, 1).astype(np.float32)
    out["brow_top"] = float(brow_top)
    return out


# ----------------------------------------------------------------------------------------------
# colour palettes
# ----------------------------------------------------------------------------------------------

#: sRGB skin tones from light to dark; a tone t in [0, 1] interpolates them.
SKIN_PALETTE = np.array([(0.98, 0.86, 0.78), (0.93, 0.76, 0.64), (0.84, 0.64, 0.50), (0.72, 0.52, 0.38),
                         (0.56, 0.38, 0.27), (0.40, 0.27, 0.19), (0.27, 0.18, 0.13)], np.float32)
HAIR_COLOURS = np.array([(0.05, 0.04, 0.04), (0.16, 0.11, 0.07), (0.32, 0.21, 0.13), (0.55, 0.42, 0.27),
                         (0.78, 0.66, 0.45), (0.50, 0.23, 0.11), (0.55, 0.55, 0.55), (0.85, 0.85, 0.83)], np.float32)
HAIR_PROBS = np.array([0.3, 0.25, 0.15, 0.08, 0.07, 0.05, 0.06, 0.04])
IRIS_COLOURS = np.array([(0.16, 0.10, 0.06), (0.30, 0.19, 0.10), (0.38, 0.32, 0.18), (0.28, 0.38, 0.24),
                         (0.30, 0.44, 0.60), (0.45, 0.50, 0.55)], np.float32)
IRIS_PROBS = np.array([0.35, 0.25, 0.12, 0.08, 0.14, 0.06])


def skin_tone(t: float) -> np.ndarray:
    """sRGB colour of skin tone ``t`` in [0, 1] (0 = lightest) from :data:`SKIN_PALETTE`."""
    x = np.clip(t, 0, 1) * (len(SKIN_PALETTE) - 1)
    i = min(int(x), len(SKIN_PALETTE) - 2)
    f = x - i
    return (1 - f) * SKIN_PALETTE[i] + f * SKIN_PALETTE[i + 1]


# ----------------------------------------------------------------------------------------------
# sample photos: flattened textures and background tiles (computed once per process)
# ----------------------------------------------------------------------------------------------

_PHOTO_ASSETS: dict = {}


def _model_key(model) -> tuple:
    return (str(model.source), int(model.res), float(np.asarray(model.mean, np.float64).sum()))


def sample_photo_assets(model, *, log=None, tile: int = 128) -> dict:
    """Textures and background tiles from the sample photos, computed once per process and model.

    Returns a dict with ``textures`` (list of (3, R, R) float32 tensors: the flattened photo's
    symmetric completion with the remaining holes inpainted), ``skins`` (list of (3,) mean cheek
    colours), ``tiles`` (list of (3, tile, tile) crops of the photos away from the face) and
    ``problems`` (list of str). Textures need the face detector (mediapipe); without it only
    tiles from the photos' corners are made.
    """
    key = _model_key(model) + (tile,)
    if key in _PHOTO_ASSETS:
        return _PHOTO_ASSETS[key]
    from ..photos import read_photo
    from ..samples import sample_photo_paths

    out = {"textures": [], "skins": [], "tiles": [], "problems": []}
    photos = []
    for p in sample_photo_paths():
        try:
            photos.append((p, read_photo(p).image))
        except Exception as e:  # pragma: no cover - a broken installed package
            out["problems"].append(f"{p.name}: unreadable ({e})")
    boxes = {}
    if photos:
        try:
            from ..flatten import Flattener, flatten_largest

            fl = Flattener(model)
            try:
                for p, img in photos:
                    try:
                        res = flatten_largest(fl, img)
                    except ValueError as e:
                        out["problems"].append(f"{p.name}: {e}")
                        continue
                    boxes[p] = np.asarray(res.face.bbox, np.float64)
                    tex = torch.from_numpy(np.ascontiguousarray(res.completed.transpose(2, 0, 1))).float()[None]
                    alpha = torch.from_numpy(np.ascontiguousarray(res.completed_alpha)).float()[None, None]
                    tex = inpaint_blur(tex, alpha)[0].clamp(0, 1)
                    out["textures"].append(tex)
            finally:
                close = getattr(fl.detector, "close", None)
                if close:
                    close()
        except Exception as e:  # no detector here: procedural textures only
            out["problems"].append(f"flattening the sample photos failed: {type(e).__name__}: {e}")
    if out["textures"]:
        lay = texture_layout(model)
        w = torch.from_numpy(lay["cheek"])
        for t in out["textures"]:
            out["skins"].append(((t * w).sum((1, 2)) / w.sum()).numpy())
    for p, img in photos:
        out["tiles"] += _background_tiles(img, boxes.get(p), tile)
    if not out["textures"] and out["problems"]:
        warnings.warn("synthetic data: no photo textures (procedural textures only): " + "; ".join(out["problems"]),
                      stacklevel=2)
    if log:
        log(f"sample photos: {len(out['textures'])} texture(s), {len(out['tiles'])} background tile(s)"
            + (f"; {'; '.join(out['problems'])}" if out["problems"] else ""))
    _PHOTO_ASSETS[key] = out
    return out


def _background_tiles(img: np.ndarray, box, tile: int) -> list:
    """Square crops of a photo (H, W, 3) that do not meet the face box grown by 15 %
    (without a box: the four corners at 35 % of the shorter side)."""
    h, w = img.shape[:2]
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()[None]
    side = int(0.35 * min(h, w))
    cands = []
    if box is None:
        cands = [(0, 0), (w - side, 0), (0, h - side), (w - side, h - side)]
    else:
        x0, y0, x1, y1 = box
        gx, gy = 0.15 * (x1 - x0), 0.15 * (y1 - y0)
        x0, y0, x1, y1 = x0 - gx, y0 - gy, x1 + gx, y1 + gy
        for s in (side, side // 2):
            if s < 24:
                continue
            for y in range(0, h - s + 1, max(1, s // 2)):
                for x in range(0, w - s + 1, max(1, s // 2)):
                    if x + s <= x0 or x >= x1 or y + s <= y0 or y >= y1:
                        cands.append((x, y, s))
    tiles = []
    for c in cands:
        x, y = c[0], c[1]
        s = c[2] if len(c) > 2 else side
        crop = t[:, :, y:y + s, x:x + s]
        tiles.append(F.interpolate(crop, size=(tile, tile), mode="bilinear", align_corners=False,
                                   antialias=True)[0].clamp(0, 1))
    return tiles


# ----------------------------------------------------------------------------------------------
# texture bank
# ----------------------------------------------------------------------------------------------

class TextureBank:
    """Per-identity face textures in UV layout, from procedural parameters (see :meth:`identity_params`).

    Args:
        model: the grid model (its landmarks place the features).
        photos: use the flattened sample photos (:func:`sample_photo_assets`); ``False`` for
            procedural textures only.
        photo_fraction: share of identities with a photo texture (when photos are available).
        device: where textures are made.
    """

    def __init__(self, model, *, photos: bool = True, photo_fraction: float = 0.3, device="cpu", log=None):
        self.res = int(model.res)
        self.device = torch.device(device)
        lay = texture_layout(model)
        self.layout = lay
        self.masks = {k: torch.from_numpy(np.asarray(v, np.float32)).to(self.device) for k, v in lay.items()
                      if isinstance(v, np.ndarray)}
        self.eye_height = float(lay["eye_height"])
        self.brow_top = float(lay.get("brow_top", 0.0))
        assets = sample_photo_assets(model, log=log) if photos else {"textures": [], "skins": []}
        self.photo_textures = [t.to(self.device) for t in assets["textures"]]
        self.photo_skins = [np.asarray(s, np.float32) for s in assets["skins"]]
        self.photo_fraction = float(photo_fraction) if self.photo_textures else 0.0

    def identity_params(self, rng: np.random.Generator) -> dict:
        """Draw the texture parameters of one identity from ``rng``."""
        r = self.res
        tone = rng.uniform(0, 1)
        skin = skin_tone(tone) * np.exp(rng.normal(0, 0.04, 3)).astype(np.float32)
        skin = skin * np.array([1 + rng.normal(0, 0.03), 1, 1 - rng.normal(0, 0.03) * 0.5], np.float32)
        hair = HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=HAIR_PROBS)] * np.exp(rng.normal(0, 0.04, 3))
        p = {
            "skin": np.clip(skin, 0.05, 1).astype(np.float32),
            "tone": float(tone),
            "low": rng.normal(0, 0.05, (3, 5, 5)).astype(np.float32),
            "lum": rng.normal(0, 0.045, (1, 11, 11)).astype(np.float32),
            "grain": float(rng.uniform(0.005, 0.03)),
            "grain_seed": int(rng.integers(0, 2 ** 62)),
            "hair": np.clip(hair, 0.02, 0.95).astype(np.float32),
            "hair_on": bool(rng.uniform() < 0.8),
            "hair_mid": float(rng.uniform(-4, 0.45 * max(self.brow_top, 1))),
            "hair_side": float(rng.uniform(0.2, 0.6) * r),
            "hair_width": float(rng.uniform(0.08, 0.2) * r),
            "brow_strength": float(rng.uniform(0.45, 0.9)),
            "brow_width": float(rng.uniform(0.9, 2.0)),
            "iris": IRIS_COLOURS[rng.choice(len(IRIS_COLOURS), p=IRIS_PROBS)] * np.exp(rng.normal(0, 0.1, 3)),
            "lip": np.array([rng.uniform(0.75, 0.92), rng.uniform(0.45, 0.62), rng.uniform(0.45, 0.62)], np.float32),
            "lip_strength": float(rng.uniform(0.5, 1.0)),
            "lash": float(rng.uniform(0.5, 0.95)),
            "socket": float(rng.uniform(0.05, 0.25)),
            "blush": float(rng.uniform(0.0, 0.35)),
            "beard": float(rng.uniform(0.3, 0.85)) if rng.uniform() < 0.15 else 0.0,
            "photo": -1,
        }
        if self.photo_textures and rng.uniform() < self.photo_fraction:
            p["photo"] = int(rng.integers(len(self.photo_textures)))
            p["photo_mirror"] = bool(rng.uniform() < 0.5)
        return p

    def make(self, params: list[dict]) -> torch.Tensor:
        """Textures ``(B, 3, R, R)`` in [0, 1] for a list of identity parameter dicts (batched)."""
        r, dev = self.res, self.device
        m = self.masks

        def stack(key, shape=None):
            return torch.as_tensor(np.stack([np.asarray(p[key], np.float32) for p in params]), device=dev)

        def col(key):
            return stack(key)[:, :, None, None]

        def sc(key):
            return torch.tensor([float(p[key]) for p in params], device=dev)[:, None, None, None]

        def mix(x, colour, w):
            return x + (colour - x) * w

        skin = col("skin")
        tex = skin * (1 + _upsample(stack("low"), (r, r))) * (1 + _upsample(stack("lum"), (r, r)))
        grain = torch.stack([torch.randn(1, r, r, generator=torch.Generator().manual_seed(p["grain_seed"]))
                             for p in params]).to(dev)
        tex = tex * (1 + sc("grain") * grain)
        tex = tex * (1 - sc("socket") * m["socket"])
        red = skin * torch.tensor([1.05, 0.8, 0.8], device=dev)[None, :, None, None]
        tex = mix(tex, red, sc("blush") * m["cheek"] + 0.25 * m["nose"])
        # beard / stubble, noisy
        stub = (0.6 + 0.4 * grain.clamp(-1, 1)) * m["beard"]
        tex = mix(tex, col("hair"), sc("beard") * stub)
        # hair line: rows above hairline(col), lower over the temples
        rows = torch.arange(r, device=dev, dtype=tex.dtype)[None, :, None]
        cols = torch.arange(r, device=dev, dtype=tex.dtype)[None, None, :]
        u = (cols - 0.5 * (r - 1)).abs() / (0.5 * (r - 1))  # 0 centre .. 1 sides
        line = sc("hair_mid")[:, 0] + (sc("hair_side")[:, 0] - sc("hair_mid")[:, 0]) * u ** 3
        line = line + 40.0 * _upsample(stack("lum"), (1, r))[:, 0]  # a wobbly hair line
        hair_w = torch.sigmoid((line - rows) / 1.2) * sc("hair_on")[:, 0]
        hair_tex = col("hair") * (1 + 0.25 * _upsample(stack("low")[:, :1], (r, r)) * 4 + 0.1 * grain)
        tex = mix(tex, hair_tex, hair_w[:, None])
        # brows
        brow = torch.sigmoid((sc("brow_width")[:, 0] - m["brow_dist"][None]) / 0.45)[:, None]
        tex = mix(tex, col("hair") * 0.8 + 0.2 * skin * 0.5, sc("brow_strength") * brow)
        # lips and mouth
        lip = skin * col("lip")
        tex = mix(tex, lip, sc("lip_strength") * m["lips"])
        tex = mix(tex, skin * 0.25, 0.85 * m["mouth"])
        # eyes: sclera, iris, pupil, lash line
        eye = m["eye"][None, None]
        sclera = torch.tensor([0.86, 0.82, 0.8], device=dev)[None, :, None, None] \
            * (0.6 + 0.4 * skin.mean(1, keepdim=True) / 0.7).clamp(max=1.05)
        tex = mix(tex, sclera, eye)
        iris = torch.clamp((1.0 - m["iris_dist"]) / 0.15, 0, 1)[None, None] * eye
        tex = mix(tex, col("iris"), iris)
        pupil = torch.clamp((0.45 - m["iris_dist"]) / 0.1, 0, 1)[None, None] * eye
        tex = mix(tex, torch.full_like(skin, 0.03), pupil)
        lash = torch.clamp(1.2 - m["eye_dist"] / 0.6, 0, 1)[None, None]
        tex = mix(tex, torch.full_like(skin, 0.05), sc("lash") * lash)
        tex = mix(tex, skin * 0.2, m["nostril"][None, None] * 0.9)
        # photo textures: tone-shifted, blended into the procedural texture outside the inner face
        for i, p in enumerate(params):
            k = p.get("photo", -1)
            if k is None or k < 0:
                continue
            ph = self.photo_textures[k]
            if p.get("photo_mirror"):
                ph = ph.flip(-1)
            gain = torch.as_tensor(np.clip(p["skin"] / np.maximum(self.photo_skins[k], 1e-3), 0.35, 2.5),
                                   device=dev, dtype=ph.dtype)[:, None, None]
            ph = ph * gain * (1 + _upsample(stack("lum")[i:i + 1], (r, r))[0]) \
                * (1 + _upsample(stack("low")[i:i + 1], (r, r))[0])
            w = m["face"][None]
            tex[i] = ph * w + tex[i] * (1 - w)
        return tex.clamp(0, 1)


# ----------------------------------------------------------------------------------------------
# backgrounds
# ----------------------------------------------------------------------------------------------

BACKGROUND_KINDS = ("gradient", "noise", "stripes", "blobs", "photo")


def background_params(rng: np.random.Generator, kinds=BACKGROUND_KINDS, n_tiles: int = 0) -> dict:
    """Draw the parameters of one background from ``rng``."""
    kinds = [k for k in kinds if k != "photo" or n_tiles > 0] or ["gradient"]
    weights = np.array([1.3 if k == "photo" else 1.0 for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    colours = rng.uniform(0, 1, (4, 3)) ** rng.uniform(0.7, 1.6)
    p = {"kind": kind, "colours": colours.astype(np.float32), "angle": float(rng.uniform(0, 2 * np.pi)),
         "noise3": rng.normal(0, 1, (3, 3, 3)).astype(np.float32),
         "noise7": rng.normal(0, 1, (3, 7, 7)).astype(np.float32),
         "amp": float(rng.uniform(0.05, 0.3)), "freq": float(rng.uniform(1.5, 10)), "phase": float(rng.uniform(0, 6.3)),
         "sharp": float(rng.uniform(0.5, 8)), "blobs": rng.uniform(0, 1, (6, 6)).astype(np.float32)}
    if kind == "photo":
        side = rng.uniform(0.4, 1.0)
        p.update(tile=int(rng.integers(n_tiles)), side=float(side), cx=float(rng.uniform(-1 + side, 1 - side)),
                 cy=float(rng.uniform(-1 + side, 1 - side)), flip=bool(rng.uniform() < 0.5),
                 rot=float(rng.normal(0, 0.15)))
    return p


def make_backgrounds(params: list[dict], size: int, tiles: list | None = None, device="cpu") -> torch.Tensor:
    """Backgrounds ``(B, 3, S, S)`` in [0, 1] from :func:`background_params` dicts (batched per kind)."""
    b = len(params)
    dev = torch.device(device)
    out = torch.empty(b, 3, size, size, device=dev)
    t = torch.linspace(-1, 1, size, device=dev)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    for kind in BACKGROUND_KINDS:
        sel = [i for i, p in enumerate(params) if p["kind"] == kind]
        if not sel:
            continue
        ps = [params[i] for i in sel]
        n = len(ps)

        def arr(key):
            return torch.as_tensor(np.stack([np.asarray(p[key], np.float32) for p in ps]), device=dev)

        def sc(key):
            return torch.tensor([float(p[key]) for p in ps], device=dev)[:, None, None, None]

        c = arr("colours")[:, :, :, None, None]  # (n, 4, 3, 1, 1)
        ang = sc("angle")
        proj = torch.cos(ang) * xx + torch.sin(ang) * yy  # (n, 1, S, S)
        if kind == "gradient":
            w = ((proj + 1.4) / 2.8).clamp(0, 1)
            img = c[:, 0] + (c[:, 1] - c[:, 0]) * w
        elif kind == "noise":
            img = c[:, 0] + sc("amp") * 2 * (_upsample(arr("noise3"), (size, size))
                                             + 0.5 * _upsample(arr("noise7"), (size, size)))
        elif kind == "stripes":
            s = torch.sin(math.pi * sc("freq") * proj + sc("phase"))
            w = torch.sigmoid(sc("sharp") * s)
            img = c[:, 0] + (c[:, 1] - c[:, 0]) * w
        elif kind == "blobs":
            bl = arr("blobs")  # (n, 6, 6): x, y, sigma, r, g, b
            img = c[:, 0].expand(n, 3, size, size).clone()
            for k in range(bl.shape[1]):
                cx, cy = bl[:, k, 0, None, None] * 2 - 1, bl[:, k, 1, None, None] * 2 - 1
                sg = 0.08 + 0.4 * bl[:, k, 2, None, None]
                g = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sg ** 2))[:, None]
                img = img + (bl[:, k, 3:6, None, None] - img) * g
        else:  # photo crops
            src = torch.stack([tiles[p["tile"]] for p in ps]).to(dev)
            side, rot = sc("side")[:, 0, 0, 0], sc("rot")[:, 0, 0, 0]
            flip = torch.tensor([-1.0 if p["flip"] else 1.0 for p in ps], device=dev)
            aff = torch.zeros(n, 2, 3, device=dev)
            aff[:, 0, 0] = side * torch.cos(rot) * flip
            aff[:, 0, 1] = -side * torch.sin(rot)
            aff[:, 1, 0] = side * torch.sin(rot) * flip
            aff[:, 1, 1] = side * torch.cos(rot)
            aff[:, 0, 2] = sc("cx")[:, 0, 0, 0]
            aff[:, 1, 2] = sc("cy")[:, 0, 0, 0]
            grid = F.affine_grid(aff, (n, 3, size, size), align_corners=False)
            img = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        out[sel] = img.clamp(0, 1)
    return out


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------

@dataclass
class SyntheticConfig:
    """What :class:`SyntheticFaces` draws. Angles in degrees; ``scale`` in px/mm at a 224 image
    (scaled proportionally to ``size``); ``shift`` as a fraction of the image side."""

    yaw_range: float = 75.0           #: yaw ~ U(-yaw_range, yaw_range)
    pitch_range: float = 25.0
    roll_range: float = 20.0
    scale: float = 1.05               #: mean face at ~1 px/mm for 224 input, as the photo crops
    scale_jitter: float = 0.1         #: log-uniform +-
    shift: float = 0.04               #: face centre jitter, uniform +- (fraction of the side)
    id_scale: float = 1.0             #: alpha_id ~ N(0, id_scale^2)
    exp_scale: float = 0.7            #: alpha_exp ~ N(0, exp_scale^2), per view
    n_id: int | None = None           #: identity coefficients in theta (leading ones; default all)
    n_exp: int | None = None
    lighting: bool = True             #: random directional light + ambient + specular
    color_jitter: bool = True         #: brightness, contrast, saturation, gamma
    noise: float = 0.025              #: max sigma of the pixel noise
    blur: float = 0.25                #: probability of a slight blur
    backgrounds: tuple = BACKGROUND_KINDS
    photo_textures: bool = True       #: use the flattened sample photos when the detector works
    photo_fraction: float = 0.3
    supersample: int | None = None    #: anti-aliasing factor (default 2 up to 160 px, else 1)
    factor: int | None = None         #: lattice samples per grid cell (default: automatic)


# ----------------------------------------------------------------------------------------------
# the data set
# ----------------------------------------------------------------------------------------------

class SyntheticFaces(Dataset):
    """Rendered faces of random identities in several views, with exact ground truth.

    Args:
        model: a grid :class:`~stn3dmm.model.MorphableModel`.
        n_identities: number of identities; item ``index`` shows identity
            ``identity_offset + index // views_per_identity`` in view ``index % views_per_identity``.
        views_per_identity: views per identity.
        size: image side S.
        seed: random seed; items are a deterministic function of ``(seed, identity, view)``.
        landmark_set: ``"aflw21"``, ``"ibug68"`` or an index array of model vertices.
        identity_offset: first identity number (disjoint identity ranges give disjoint splits).
        config: a :class:`SyntheticConfig`; keyword ``options`` override its fields.
        texture: optional ``(3, T, T)`` texture used for EVERY identity (tests, visualisation).
        batch_size: batch of the internal ``__getitem__`` cache (aligned chunks of indices).
        cache_batches: how many rendered chunks to keep.
        device: where to render (returned items are on the CPU).

    Items are sample dicts (:func:`~stn3dmm.data.sample.make_sample`): ``image`` (3, S, S) in
    [0, 1]; ``landmarks`` (L, 2) exact projections (px, x right, y down, 0-based);
    ``visibility`` (L,) 1 = inside the image and passing the depth test (self-occluded
    landmarks are 0); ``identity``; ``pose`` (yaw, pitch, roll) degrees (:data:`POSE_CONVENTION`);
    ``index``; ``theta`` (6 + n_id + n_exp) ground truth in the STN's convention
    (:data:`THETA_LAYOUT`, scale map ``"exp"``).

    Rendering is batched: a DataLoader's batches go through ``__getitems__`` (one batched
    render per batch, also with shuffling); single ``__getitem__`` calls render and cache the
    aligned chunk of ``batch_size`` items they fall in; :meth:`prerender` renders everything
    once (images stored as uint8, like the exported PNGs).
    """

    def __init__(self, model, n_identities: int, views_per_identity: int = 4, size: int = 112, seed: int = 0,
                 landmark_set="aflw21", *, identity_offset: int = 0, config: SyntheticConfig | None = None,
                 texture: torch.Tensor | None = None, batch_size: int = 32, cache_batches: int = 4, device="cpu",
                 log=None, **options):
        if not getattr(model, "res", 0):
            raise ValueError("SyntheticFaces needs a grid model (model.res > 0)")
        if n_identities < 1 or views_per_identity < 1:
            raise ValueError("n_identities and views_per_identity must be at least 1")
        if identity_offset < 0 or seed < 0:
            raise ValueError("seed and identity_offset must be non-negative")
        self.config = replace(config or SyntheticConfig(), **options)
        cfg = self.config
        self.model = model
        self.n_identities, self.views = int(n_identities), int(views_per_identity)
        self.size, self.seed, self.identity_offset = int(size), int(seed), int(identity_offset)
        self.landmark_set = landmark_set
        self.landmark_index = landmark_vertices(model, landmark_set)
        self.device = torch.device(device)
        self.renderer = GridRenderer(model, self.size, supersample=cfg.supersample, factor=cfg.factor,
                                     n_id=cfg.n_id, n_exp=cfg.n_exp).to(self.device)
        self.n_id, self.n_exp = self.renderer.stn.n_id, self.renderer.stn.n_exp
        self.bank = TextureBank(model, photos=cfg.photo_textures and texture is None,
                                photo_fraction=cfg.photo_fraction, device=self.device, log=log)
        self.tiles = []
        if "photo" in cfg.backgrounds:
            self.tiles = [t.to(self.device) for t in sample_photo_assets(model, log=log)["tiles"]] \
                if cfg.photo_textures else self._corner_tiles()
        self.fixed_texture = None if texture is None else torch.as_tensor(texture, dtype=torch.float32).to(self.device)
        # the face centre: centroid of the landmarks of the mean shape (the photo crops centre the face)
        lm_all = np.concatenate([np.asarray(v) for v in model.landmarks.values()]) if model.landmarks else None
        pick = model.landmarks.get("ibug68", lm_all) if model.landmarks else None
        mean = np.asarray(model.mean, np.float64)
        self.face_centre = torch.tensor(mean[pick].mean(0) if pick is not None else mean.mean(0), dtype=torch.float32)
        self.batch_size, self.cache_batches = max(1, int(batch_size)), max(1, int(cache_batches))
        self._cache: OrderedDict = OrderedDict()
        self._textures: OrderedDict = OrderedDict()
        self._store: dict | None = None

    def _corner_tiles(self):
        from ..photos import read_photo
        from ..samples import sample_photo_paths

        tiles = []
        for p in sample_photo_paths():
            try:
                tiles += _background_tiles(read_photo(p).image, None, 128)
            except Exception:  # pragma: no cover
                pass
        return [t.to(self.device) for t in tiles]

    # -- indexing ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.n_identities * self.views

    def identity_of(self, index: int) -> tuple[int, int]:
        """``index -> (identity, view)``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self.identity_offset + index // self.views, index % self.views

    @property
    def n_params(self) -> int:
        return N_POSE + self.n_id + self.n_exp

    # -- random parameters ------------------------------------------------------------------

    def identity_params(self, identity: int) -> dict:
        """Shape coefficients and texture parameters of an identity (deterministic)."""
        rng = np.random.default_rng([self.seed, 0, int(identity)])
        p = {"alpha_id": (rng.normal(0, 1, self.n_id) * self.config.id_scale).astype(np.float32)}
        p["texture"] = self.bank.identity_params(rng)
        return p

    def view_params(self, identity: int, view: int) -> dict:
        """Pose, expression, lighting, background and camera effects of one view (deterministic)."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, 1, int(identity), int(view)])
        p = {
            "yaw": float(rng.uniform(-cfg.yaw_range, cfg.yaw_range)),
            "pitch": float(rng.uniform(-cfg.pitch_range, cfg.pitch_range)),
            "roll": float(rng.uniform(-cfg.roll_range, cfg.roll_range)),
            "scale": float(cfg.scale * self.size / 224 * math.exp(rng.uniform(-cfg.scale_jitter, cfg.scale_jitter))),
            "shift": rng.uniform(-cfg.shift, cfg.shift, 2).astype(np.float32) * self.size,
            "alpha_exp": (rng.normal(0, 1, self.n_exp) * cfg.exp_scale).astype(np.float32),
        }
        d = np.array([rng.uniform(-0.9, 0.9), rng.uniform(-0.5, 0.9), rng.uniform(0.35, 1.0)])
        amb = rng.uniform(0.3, 0.7)
        tint = np.exp(rng.normal(0, 0.05, 3))
        p["light"] = {"direction": (d / np.linalg.norm(d)).astype(np.float32),
                      "ambient": (amb * np.exp(rng.normal(0, 0.03, 3))).astype(np.float32),
                      "diffuse": ((1.05 - amb) * rng.uniform(0.8, 1.2) * tint).astype(np.float32),
                      "specular": float(rng.uniform(0, 0.15)), "shininess": float(rng.uniform(6, 40))}
        p["background"] = background_params(rng, cfg.backgrounds, len(self.tiles))
        p["camera"] = {"brightness": float(rng.uniform(0.8, 1.2)), "contrast": float(rng.uniform(0.8, 1.2)),
                       "saturation": float(rng.uniform(0.65, 1.3)), "gamma": float(rng.uniform(0.85, 1.2)),
                       "noise": float(rng.uniform(0, cfg.noise)),
                       "blur": float(rng.uniform(0.3, 1.0)) if rng.uniform() < cfg.blur else 0.0,
                       "seed": int(rng.integers(0, 2 ** 62))}
        return p

    def theta_of(self, identity_params: list[dict], view_params: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground-truth ``theta (B, P)`` and ``pose (B, 3)`` for parameter dicts.

        ``t`` puts the projected face centre (centroid of the mean shape's landmarks) at the
        image centre plus the view's shift, as the photo pipeline's crops centre the face."""
        from ..stn.layers import rotation_to_axis_angle

        pose = torch.tensor([[v["yaw"], v["pitch"], v["roll"]] for v in view_params], dtype=torch.float64)
        rot = euler_to_rotation(pose[:, 0], pose[:, 1], pose[:, 2])
        r = rotation_to_axis_angle(rot)
        s = torch.tensor([v["scale"] for v in view_params], dtype=torch.float64)
        c = rot @ self.face_centre.double()
        shift = torch.as_tensor(np.stack([v["shift"] for v in view_params]), dtype=torch.float64)
        centre = 0.5 * (self.size - 1)
        t = torch.stack((centre + shift[:, 0] - s * c[:, 0], centre + shift[:, 1] + s * c[:, 1]), 1)
        a_id = torch.as_tensor(np.stack([i["alpha_id"] for i in identity_params]), dtype=torch.float64)
        a_exp = torch.as_tensor(np.stack([v["alpha_exp"] for v in view_params]), dtype=torch.float64)
        theta = torch.cat((r, t, s.log()[:, None], a_id, a_exp), 1)
        return theta.float(), pose.float()

    # -- textures ---------------------------------------------------------------------------

    def texture(self, identity: int) -> torch.Tensor:
        """The ``(3, R, R)`` texture of an identity (cached)."""
        return self._identity_textures([identity], [self.identity_params(identity)])[0]

    def _identity_textures(self, identities: list[int], params: list[dict]) -> torch.Tensor:
        if self.fixed_texture is not None:
            return self.fixed_texture[None].expand(len(identities), -1, -1, -1)
        missing = [(i, p) for i, p in zip(identities, params) if i not in self._textures]
        uniq = {}
        for i, p in missing:
            uniq.setdefault(i, p)
        if uniq:
            made = self.bank.make([p["texture"] for p in uniq.values()])
            for i, t in zip(uniq, made):
                self._textures[i] = t
        out = torch.stack([self._textures[i] for i in identities])
        for i in identities:
            self._textures.move_to_end(i)
        while len(self._textures) > max(256, 2 * len(set(identities))):
            self._textures.popitem(last=False)
        return out

    # -- rendering --------------------------------------------------------------------------

    @torch.no_grad()
    def render_batch(self, indices, extras: bool = False) -> dict:
        """Render items ``indices`` in one batch: a dict of stacked tensors (on ``device``) with
        the sample keys ``image, landmarks, visibility, identity, pose, index, theta``; with
        ``extras`` also ``alpha`` (B, 1, S, S) coverage, ``texture`` (B, 3, R, R),
        ``points`` (B, N, 2) all projected vertices and ``background`` (B, 3, S, S)."""
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("no indices")
        ids, views = zip(*(self.identity_of(i) for i in indices))
        id_params = {i: self.identity_params(i) for i in set(ids)}
        ip = [id_params[i] for i in ids]
        vp = [self.view_params(i, v) for i, v in zip(ids, views)]
        dev = self.device
        theta, pose = self.theta_of(ip, vp)
        theta = theta.to(dev)
        tex = self._identity_textures(list(ids), ip)
        if self.config.lighting:
            def lt(key):
                return torch.as_tensor(np.stack([np.asarray(v["light"][key], np.float32) for v in vp]), device=dev)

            light = Lighting(lt("direction"), lt("ambient"), lt("diffuse"), lt("specular"), lt("shininess"))
        else:
            light = None
        bg = make_backgrounds([v["background"] for v in vp], self.size, self.tiles, dev)
        out = self.renderer(theta, tex, light, bg)
        img = out["image"]
        lm_idx = torch.as_tensor(self.landmark_index, device=dev)
        landmarks = out["points"].index_select(1, lm_idx)
        vis = self.renderer.visibility(out, lm_idx)
        img = self._camera(img, [v["camera"] for v in vp])
        res = {"image": img.clamp(0, 1), "landmarks": landmarks, "visibility": vis.float(),
               "identity": torch.tensor(ids, dtype=torch.int64, device=dev), "pose": pose.to(dev),
               "index": torch.tensor(indices, dtype=torch.int64, device=dev), "theta": theta}
        if extras:
            res.update(alpha=out["alpha"], texture=tex, points=out["points"], background=bg)
        return res

    def _camera(self, img: torch.Tensor, cams: list[dict]) -> torch.Tensor:
        """Colour jitter, blur and pixel noise (per image parameters)."""
        cfg, dev = self.config, img.device

        def sc(key):
            return torch.tensor([c[key] for c in cams], device=dev, dtype=img.dtype)[:, None, None, None]

        if cfg.color_jitter:
            img = img * sc("brightness")
            mean = img.mean((1, 2, 3), keepdim=True)
            img = (img - mean) * sc("contrast") + mean
            grey = (0.299 * img[:, :1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3])
            img = grey + (img - grey) * sc("saturation")
            img = img.clamp(0, 1) ** sc("gamma")
        if cfg.blur > 0:
            img = blur_batch(img, sc("blur").view(-1))
        if cfg.noise > 0:
            noise = torch.stack([torch.randn(img.shape[1:], generator=torch.Generator().manual_seed(c["seed"]))
                                 for c in cams]).to(dev, img.dtype)
            img = img + noise * sc("noise")
        return img

    # -- Dataset protocol -------------------------------------------------------------------

    def _samples(self, batch: dict, rows) -> list[dict]:
        out = []
        for k in rows:
            img = batch["image"][k]
            if img.dtype == torch.uint8:
                img = img.float() / 255.0
            out.append(make_sample(img.cpu(), batch["landmarks"][k].cpu().numpy(), batch["visibility"][k].cpu().numpy(),
                                   int(batch["identity"][k]), batch["pose"][k].cpu().numpy(), int(batch["index"][k]),
                                   batch["theta"][k].cpu().numpy()))
        return out

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += len(self)
        self.identity_of(index)
        if self._store is not None:
            return self._samples(self._store, [index])[0]
        chunk = index // self.batch_size
        if chunk not in self._cache:
            lo = chunk * self.batch_size
            self._cache[chunk] = self.render_batch(range(lo, min(len(self), lo + self.batch_size)))
            while len(self._cache) > self.cache_batches:
                self._cache.popitem(last=False)
        self._cache.move_to_end(chunk)
        return self._samples(self._cache[chunk], [index - chunk * self.batch_size])[0]

    def __getitems__(self, indices) -> list[dict]:
        """Batched fetch used by ``torch.utils.data.DataLoader``: one render per batch."""
        indices = [int(i) for i in indices]
        if self._store is not None:
            return self._samples(self._store, indices)
        return self._samples(self.render_batch(indices), range(len(indices)))

    def prerender(self, progress: bool = False) -> "SyntheticFaces":
        """Render every item once and keep it (images as uint8: 3 S^2 bytes each)."""
        from tqdm import tqdm

        n = len(self)
        parts = []
        for lo in tqdm(range(0, n, self.batch_size), desc="render", unit="batch", disable=not progress):
            b = self.render_batch(range(lo, min(n, lo + self.batch_size)))
            b["image"] = (b["image"] * 255 + 0.5).clamp(0, 255).to(torch.uint8)
            parts.append({k: v.cpu() for k, v in b.items()})
        self._store = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        self._cache.clear()
        return self


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------

def item_name(identity: int, view: int, prefix: str = "synth") -> str:
    """File stem of an exported item: ``<prefix>_<identity:06d>_<view:02d>``."""
    return f"{prefix}_{identity:06d}_{view:02d}"


def _write_json_atomic(path: Path, obj) -> None:
    from ..paths import publish

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, separators=(",", ":"))
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def export_synthetic(out_dir, model, n_identities: int, views: int = 4, size: int = 112, seed: int = 0,
                     landmark_set: str = "aflw21", progress: bool = True, *, identity_offset: int = 0,
                     batch_size: int = 32, overwrite: bool = False, prefix: str = "synth",
                     config: SyntheticConfig | None = None, device="cpu", writers: int = 4, log=None,
                     **options) -> dict:
    """Render a synthetic data set to ``out_dir`` in the landmark-folder format (:mod:`stn3dmm.data.folder`).

    Every item is written with :func:`~stn3dmm.data.folder.write_folder_item`: ``<name>.png``
    (RGB, 8 bit, the S x S STN input) and ``<name>.json`` with ``landmarks`` [[x, y], ...]
    (0-based px, y down), ``visibility`` [0/1, ...], ``identity`` (int), ``pose`` [yaw, pitch,
    roll] (degrees, :data:`POSE_CONVENTION`), ``landmark_set``, ``theta`` (:data:`THETA_LAYOUT`)
    and ``"cropped": true``; each file atomically (temporary file moved into place), by
    ``writers`` background threads while the next batch renders. ``<name>`` is :func:`item_name`. A manifest
    ``synthetic.json`` (no ``landmarks`` key, so readers ignore it) records the arguments and the
    configuration. Existing complete items are skipped unless ``overwrite`` (the output is
    deterministic, so an interrupted export resumes where it stopped). ``options`` override
    :class:`SyntheticConfig` fields.

    Returns:
        dict with ``written``, ``skipped``, ``seconds``, ``images_per_second``, ``out_dir``.
    """
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import asdict

    from tqdm import tqdm

    from .folder import write_folder_item

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = SyntheticFaces(model, n_identities, views, size, seed, landmark_set, identity_offset=identity_offset,
                        config=config, batch_size=batch_size, device=device, log=log, **options)
    lset = landmark_set if isinstance(landmark_set, str) else [int(i) for i in ds.landmark_index]
    manifest = {"generator": "stn3dmm.data.synthetic.export_synthetic", "n_identities": int(n_identities),
                "views": int(views), "identity_offset": int(identity_offset), "size": int(size), "seed": int(seed),
                "landmark_set": lset, "items": len(ds), "name_pattern": f"{prefix}_<identity:06d>_<view:02d>",
                "model": str(model.source), "theta_layout": THETA_LAYOUT, "scale_map": "exp",
                "pose_convention": POSE_CONVENTION,
                "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(ds.config).items()}}
    _write_json_atomic(out / "synthetic.json", manifest)
    names = [item_name(*ds.identity_of(i), prefix=prefix) for i in range(len(ds))]
    todo = [i for i, n in enumerate(names)
            if overwrite or not ((out / f"{n}.png").exists() and (out / f"{n}.json").exists())]
    t0 = time.perf_counter()
    pending = []

    def write(items):
        for name, img, lm, vis, ident, pose, theta in items:
            write_folder_item(out, name, img, lm, vis, identity=ident, pose=pose, theta=theta, landmark_set=lset,
                              cropped=True)

    # the writer fsyncs every file: several threads overlap those waits (they release the GIL)
    with ThreadPoolExecutor(max_workers=writers) as pool, \
            tqdm(total=len(todo), desc="synthetic", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for lo in range(0, len(todo), batch_size):
            idx = todo[lo:lo + batch_size]
            b = ds.render_batch(idx)
            imgs = (b["image"].permute(0, 2, 3, 1) * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
            lms = np.round(b["landmarks"].double().cpu().numpy(), 4)
            vis = (b["visibility"].cpu().numpy() > 0.5).astype(np.float64)
            poses = np.round(b["pose"].double().cpu().numpy(), 4)
            thetas = b["theta"].double().cpu().numpy()
            items = [(names[i], imgs[k], lms[k], vis[k], int(b["identity"][k]), poses[k], thetas[k])
                     for k, i in enumerate(idx)]
            for w in range(writers):
                pending.append(pool.submit(write, items[w::writers]))
            while len(pending) > 2 * writers:
                pending.pop(0).result()
            bar.update(len(idx))
        for f in pending:
            f.result()
    dt = time.perf_counter() - t0
    return {"written": len(todo), "skipped": len(ds) - len(todo), "seconds": dt,
            "images_per_second": len(todo) / dt if dt > 0 else float("inf"), "out_dir": str(out)}


__all__ = ["POSE_CONVENTION", "THETA_LAYOUT", "euler_to_rotation", "rotation_to_euler", "pose_from_theta",
           "gaussian_blur", "blur_batch", "inpaint_blur", "texture_layout", "SKIN_PALETTE", "skin_tone",
           "sample_photo_assets", "TextureBank", "BACKGROUND_KINDS", "background_params", "make_backgrounds",
           "SyntheticConfig", "SyntheticFaces", "item_name", "export_synthetic"]
