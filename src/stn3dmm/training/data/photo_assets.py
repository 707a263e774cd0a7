"""Photo material for the synthetic data: flattened face textures and background tiles.

Owns :func:`sample_photo_assets` (the sample photos of :mod:`stn3dmm.photos.samples`, flattened once
per process and model with :class:`stn3dmm.flatten.pipeline.Flattener`: symmetric completion, holes
inpainted by normalised blurring; and crops of them away from the face as background tiles),
:func:`folder_photo_assets` (the same textures from a folder of the user's photos or of
``stn3dmm flatten`` outputs at any resolution: ``SyntheticConfig.textures``),
``_background_tiles`` and the per-process cache.
"""

from __future__ import annotations

import warnings
from pathlib import Path

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
    from ...photos import read_photo
    from ...photos.samples import sample_photo_paths

    out = {"textures": [], "skins": [], "tiles": [], "problems": []}
    photos = []
    for p in sample_photo_paths():
        try:
            photos.append((p, read_photo(p).image))
        except Exception as e:  # pragma: no cover - a broken installed package
            out["problems"].append(f"{p.name}: unreadable ({e})")
    boxes = _flatten_photos(model, photos, out, "the sample photos")
    out["skins"] = _skins(model, out["textures"])
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


def _flatten_photos(model, photos: list, out: dict, what: str) -> dict:
    """Flatten the main face of each ``(path, (H, W, 3) image)`` with the photo pipeline,
    appending textures (symmetric completion, holes inpainted) to ``out["textures"]`` and
    problems to ``out["problems"]``; returns ``{path: face box}``."""
    boxes = {}
    if not photos:
        return boxes
    try:
        from ...flatten.pipeline import Flattener, flatten_main_face

        fl = Flattener(model)
        try:
            for p, img in photos:
                try:
                    res = flatten_main_face(fl, img)
                except ValueError as e:
                    out["problems"].append(f"{p.name}: {e}")
                    continue
                boxes[p] = np.asarray(res.face.bbox, np.float64)
                tex = torch.from_numpy(np.ascontiguousarray(res.completed.transpose(2, 0, 1))).float()[None]
                alpha = torch.from_numpy(np.ascontiguousarray(res.completed_alpha)).float()[None, None]
                out["textures"].append(inpaint_blur(tex, alpha)[0].clamp(0, 1))
        finally:
            close = getattr(fl.detector, "close", None)
            if close:
                close()
    except Exception as e:  # no detector here: procedural textures only
        out["problems"].append(f"flattening {what} failed: {type(e).__name__}: {e}")
    return boxes


def _skins(model, textures: list) -> list:
    """(3,) mean cheek colour of each (3, R, R) texture (the photo's skin tone)."""
    if not textures:
        return []
    w = torch.from_numpy(texture_layout(model)["cheek"])
    return [((t * w).sum((1, 2)) / w.sum()).numpy() for t in textures]


#: file-name endings of ``stn3dmm flatten`` textures (RGBA, alpha = coverage); completed first
FLATTEN_TEXTURES = ("_completed.png", "_texture.png")


def _folder_files(folder: Path) -> tuple[list, list]:
    """(flatten texture files, photo files) of a folder, recursively, sorted. ``X_completed.png``
    is preferred to ``X_texture.png``; flatten's other images (``*_overlay.png``, the mesh
    texture ``X.png`` beside ``X.obj``) are not photos."""
    from ...photos.io import IMAGE_EXTENSIONS

    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    files = sorted(q for q in folder.rglob("*") if q.is_file() and not q.name.startswith(".")
                   and q.suffix.lower() in exts)
    by_base, photos = {}, []
    for q in files:
        end = next((e for e in FLATTEN_TEXTURES if q.name.endswith(e)), None)
        if end:
            base = q.parent / q.name[: -len(end)]
            if end == FLATTEN_TEXTURES[0] or base not in by_base:
                by_base[base] = q
        elif not (q.name.endswith("_overlay.png") or q.with_suffix(".obj").exists()):
            photos.append(q)
    return [by_base[k] for k in sorted(by_base)], photos


def _read_flatten_texture(path: Path, res: int) -> torch.Tensor:
    """A flatten output (RGB or RGBA PNG, any side) -> (3, res, res): resampled with its alpha
    as weight (grid points at the corners: align_corners), holes inpainted."""
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"{path}: a flattened texture is square, this is {a.shape[1]} x {a.shape[0]}")
    rgb = torch.from_numpy(np.ascontiguousarray(a[..., :3].transpose(2, 0, 1)))[None]
    alpha = torch.from_numpy(np.ascontiguousarray(a[..., 3]))[None, None]
    if a.shape[0] != res:
        num = F.interpolate(rgb * alpha, size=(res, res), mode="bilinear", align_corners=True)
        alpha = F.interpolate(alpha, size=(res, res), mode="bilinear", align_corners=True)
        rgb = num / alpha.clamp_min(1e-6)
    if float(alpha.max()) <= 0.5:
        raise ValueError(f"{path}: the texture is empty (alpha 0 everywhere)")
    return inpaint_blur(rgb, alpha)[0].clamp(0, 1)


def folder_photo_assets(model, folder, *, log=None) -> dict:
    """Photo textures from a folder of the user's: ``stn3dmm flatten`` outputs
    (``*_completed.png``, else ``*_texture.png``, any resolution, resampled to the model's R)
    and/or photos (flattened here with the photo pipeline, main face). Cached per process
    (keyed by the folder's files). Returns ``textures``, ``skins``, ``problems`` and
    ``sources`` (the file of each texture) like :func:`sample_photo_assets` (no tiles).

    Raises:
        ValueError: the folder does not exist or gives no texture at all.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder of textures or photos")
    flat, photos = _folder_files(folder)
    state = tuple((str(q), q.stat().st_mtime_ns, q.stat().st_size) for q in flat + photos)
    key = _model_key(model) + ("folder", str(folder.resolve()), state)
    if key in _PHOTO_ASSETS:
        return _PHOTO_ASSETS[key]
    from ...photos import read_photo

    out = {"textures": [], "skins": [], "tiles": [], "problems": [], "sources": []}
    for q in flat:
        try:
            out["textures"].append(_read_flatten_texture(q, int(model.res)))
            out["sources"].append(str(q))
        except (OSError, ValueError) as e:
            out["problems"].append(f"{q.name}: {e}")
    imgs = []
    for q in photos:
        try:
            imgs.append((q, read_photo(q).image))
        except Exception as e:
            out["problems"].append(f"{q.name}: unreadable ({e})")
    boxes = _flatten_photos(model, imgs, out, f"the photos in {folder}")
    out["sources"] += [str(q) for q, _ in imgs if q in boxes]
    if not out["textures"]:
        raise ValueError(f"{folder}: no usable texture ({len(flat)} flatten output(s), {len(photos)} photo(s))"
                         + (f": {'; '.join(out['problems'][:5])}" if out["problems"] else ""))
    if out["problems"]:
        warnings.warn(f"{folder}: {len(out['problems'])} file(s) skipped: " + "; ".join(out["problems"][:5]),
                      stacklevel=2)
    out["skins"] = _skins(model, out["textures"])
    if log:
        log(f"{folder}: {len(out['textures'])} photo texture(s) ({len(flat)} flatten output(s), "
            f"{len(boxes)} photo(s) flattened)")
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


__all__ = ["sample_photo_assets", "folder_photo_assets", "FLATTEN_TEXTURES"]
