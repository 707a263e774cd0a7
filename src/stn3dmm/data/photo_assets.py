"""Photo material for the synthetic data: flattened face textures and background tiles.

Owns :func:`sample_photo_assets` (the sample photos of :mod:`stn3dmm.samples`, flattened once
per process and model with :class:`stn3dmm.flatten.Flattener`: symmetric completion, holes
inpainted by normalised blurring; and crops of them away from the face as background tiles),
``_background_tiles`` and the per-process cache.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .imageops import inpaint_blur
from .texture_layout import texture_layout

#: per-process cache: (model key, tile, texture folder state) -> assets
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


__all__ = ["sample_photo_assets"]
