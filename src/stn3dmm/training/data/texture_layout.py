"""Feature masks of the grid model's UV layout, placed from its landmark vertices.

Owns :func:`texture_layout` (eyes, brows, lips, nostrils, jaw line, beard and inner-face
masks, ``(R, R)`` float32 in grid coordinates: row 0 = top of the face) and its geometry
helpers (polygon masks, polyline distances, ellipses, Gaussians). Used by the procedural
textures (:mod:`.textures`) and the photo textures' skin tone (:mod:`.photo_assets`).
"""

from __future__ import annotations

import numpy as np

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


def _landmark_features(landmarks: dict, r: int) -> dict | None:
    """The outlines the masks are placed from, in grid (row, col): ``brows`` (2 polylines),
    ``eyes`` (2 polygons), ``mouth_outer`` / ``mouth_inner`` (polygons), ``nostrils`` (2 points),
    ``nose_tip`` and ``jaw`` (a polyline). From iBUG-68 when the model has it, else approximated
    from AFLW-21 (ellipses through the eye and mouth corners); None without either."""
    if "ibug68" in landmarks:
        idx = np.asarray(landmarks["ibug68"])
        rc = np.stack((idx // r, idx % r), 1).astype(np.float64)
        nose_base = rc[31:36]
        return {"brows": [rc[17:22], rc[22:27]], "eyes": [rc[36:42], rc[42:48]],
                "mouth_outer": rc[48:60], "mouth_inner": rc[60:68],
                "nostrils": [0.5 * (nose_base[0] + nose_base[1]) + (-0.6, 0.3),
                             0.5 * (nose_base[3] + nose_base[4]) + (-0.6, -0.3)],
                "nose_tip": rc[30], "jaw": rc[0:17]}
    if "aflw21" in landmarks:
        idx = np.asarray(landmarks["aflw21"])
        rc = np.stack((idx // r, idx % r), 1).astype(np.float64)
        mc = 0.5 * (rc[17] + rc[19])
        return {"brows": [rc[0:3], rc[3:6]],
                "eyes": [_ellipse_polygon(rc[7], rc[6], rc[8], 0.38), _ellipse_polygon(rc[10], rc[9], rc[11], 0.38)],
                "mouth_outer": _ellipse_polygon(mc, rc[17], rc[19], 0.5),
                "mouth_inner": _ellipse_polygon(mc, rc[17], rc[19], 0.12),
                "nostrils": [rc[13] + (0.5, 1.0), rc[15] + (0.5, -1.0)], "nose_tip": rc[14],
                "jaw": np.array([rc[12], 0.5 * (rc[12] + rc[20]) + (8, -4), rc[20], 0.5 * (rc[16] + rc[20]) + (8, 4),
                                 rc[16]])}
    return None


def _featureless_layout(r: int) -> dict:
    """The layout of a model without landmarks: no features, the whole grid is face."""
    z = np.zeros((r, r), np.float32)
    return {"brow_dist": z + 1e3, "eye": z, "eye_dist": z + 1e3, "iris_dist": z + 1e3, "lips": z, "mouth": z,
            "nostril": z, "socket": z, "cheek": z, "nose": z, "beard": z, "face": z + 1,
            "jaw_row": np.full(r, r - 1.0, np.float32), "eye_height": 1.0}


def _eye_masks(eyes: list, r: int) -> dict:
    """``eye``, ``eye_dist`` (distance to the outlines), ``iris_dist`` and ``eye_height``."""
    out = {"eye": np.maximum(_polygon_mask(eyes[0], r), _polygon_mask(eyes[1], r))}
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
    return out


def _mouth_masks(outer: np.ndarray, mouth_inner: np.ndarray, r: int) -> dict:
    """``mouth`` (the opening and the slit) and ``lips`` (the outer outline's mask ``outer`` without it)."""
    inner = _polygon_mask(mouth_inner, r)
    # the mouth slit: the inner outline's mid-line (corner - middle - corner) as a thin dark line
    slit = np.array([mouth_inner[0], 0.5 * (mouth_inner[2] + mouth_inner[6]), mouth_inner[4]])
    mouth = np.maximum(inner, np.clip(1.0 - 0.8 * _polyline_distance(slit, r), 0, 1)).astype(np.float32)
    return {"mouth": mouth, "lips": np.clip(outer - 0.5 * mouth, 0, 1).astype(np.float32)}


def _jaw_and_beard(jaw: np.ndarray, nostrils: list, outer: np.ndarray, r: int) -> dict:
    """``jaw_row`` (the jaw line's row per column) and ``beard`` (below the nose, above the jaw,
    inside the jaw's columns, off the lips)."""
    cols = np.arange(r, dtype=np.float64)
    order = np.argsort(jaw[:, 1])
    jaw_row = np.interp(cols, jaw[order, 1], jaw[order, 0], left=jaw[order[0], 0], right=jaw[order[-1], 0])
    rr = np.arange(r, dtype=np.float64)[:, None]
    nose_row = max(n[0] for n in nostrils)
    below_nose = 1 / (1 + np.exp(-(rr - (nose_row + 2.5)) / 1.2))
    above_jaw = 1 / (1 + np.exp(-(jaw_row[None] + 2.0 - rr) / 1.5))
    side = 1 / (1 + np.exp(-(np.minimum(cols - jaw[:, 1].min(), jaw[:, 1].max() - cols) - 3) / 2))[None]
    return {"jaw_row": jaw_row.astype(np.float32),
            "beard": (below_nose * above_jaw * side * (1 - outer)).astype(np.float32)}


def _face_oval(brows: list, jaw: np.ndarray, r: int) -> dict:
    """``face``: a soft oval from above the brows to the jaw (for photo blending), and ``brow_top``."""
    brow_top = min(b[:, 0].min() for b in brows)
    centre = np.array([0.5 * (brow_top + jaw[:, 0].max()), 0.5 * (r - 1)])
    half_h = 0.5 * (jaw[:, 0].max() - brow_top) + 6
    half_w = 0.5 * (jaw[:, 1].max() - jaw[:, 1].min()) + 1
    rr, cc = np.arange(r, dtype=np.float64)[:, None], np.arange(r, dtype=np.float64)[None]
    d = np.sqrt(((rr - centre[0]) / half_h) ** 2 + ((cc - centre[1]) / half_w) ** 2)
    return {"face": np.clip((1.0 - d) / 0.15, 0, 1).astype(np.float32), "brow_top": float(brow_top)}


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
    f = _landmark_features(model.landmarks, r)
    if f is None:
        return _featureless_layout(r)
    brows, eyes, nostrils = f["brows"], f["eyes"], f["nostrils"]
    out = {"brow_dist": np.minimum(_polyline_distance(brows[0], r), _polyline_distance(brows[1], r))}
    out.update(_eye_masks(eyes, r))
    outer = _polygon_mask(f["mouth_outer"], r)
    out.update(_mouth_masks(outer, f["mouth_inner"], r))
    out["nostril"] = np.maximum(_gauss(r, nostrils[0], 0.8, 1.1), _gauss(r, nostrils[1], 0.8, 1.1))
    ec = [e.mean(0) for e in eyes]
    out["socket"] = np.maximum(_gauss(r, ec[0] + (-1.0, 0), 3.5, 5.5), _gauss(r, ec[1] + (-1.0, 0), 3.5, 5.5))
    cheek_row = 0.5 * (ec[0][0] + f["mouth_outer"].mean(0)[0])
    out["cheek"] = np.maximum(_gauss(r, (cheek_row, ec[0][1] - 3), 6, 6), _gauss(r, (cheek_row, ec[1][1] + 3), 6, 6))
    out["nose"] = _gauss(r, f["nose_tip"], 3, 3)
    out.update(_jaw_and_beard(f["jaw"], nostrils, outer, r))
    out.update(_face_oval(brows, f["jaw"], r))
    return out


__all__ = ["texture_layout"]
