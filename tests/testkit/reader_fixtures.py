"""Tiny data-set fixtures in the real formats, written by the tests themselves (no committed data).

Owns: landmark templates (:data:`AFLW21`, :func:`ibug68_template`), face-like images made of
one coloured square per landmark (:func:`dot_image`, :data:`PALETTE`), the check that a crop's
landmarks land on their squares (:func:`assert_on_dots`), and writers for the UMDFaces CSV
(:func:`write_umd_csv`) and the 300W-LP / AFLW2000-3D ``.mat`` files (:func:`write_pose_mat`,
:func:`write_mat73`).

Every landmark ``i`` is drawn as a ``2 * HALF + 1`` pixel square of colour ``PALETTE[i]`` on a
smooth background, so a crop is right where the crop pixel nearest a landmark has that
landmark's colour.
"""

from __future__ import annotations

import csv
import itertools
import math

import numpy as np

HALF = 3  # dot half size: 7 x 7 pixel squares

# AFLW-21 in the SPEC order, unit face (x right, y down; the face box is about [-1, 1] x [-0.7, 1])
AFLW21 = np.array([
    [-0.75, -0.55], [-0.45, -0.68], [-0.15, -0.55],    # brow (image left)
    [0.15, -0.55], [0.45, -0.68], [0.75, -0.55],       # brow (image right)
    [-0.6, -0.3], [-0.4, -0.3], [-0.2, -0.3],          # eye (image left): corner, centre, corner
    [0.2, -0.3], [0.4, -0.3], [0.6, -0.3],             # eye (image right)
    [-1.0, 0.05],                                      # ear lobe (image left)
    [-0.2, 0.3], [0.0, 0.34], [0.2, 0.3],              # nose
    [1.0, 0.05],                                       # ear lobe (image right)
    [-0.35, 0.62], [0.0, 0.62], [0.35, 0.62],          # mouth
    [0.0, 1.0],                                        # chin
])


def ibug68_template() -> np.ndarray:
    """A plausible 68-point iBUG layout on the unit face (points at least ~0.09 apart)."""
    pts = []
    for k in range(17):  # jaw: image left -> chin -> image right
        a = math.pi - k * math.pi / 16
        pts.append((math.cos(a), -0.1 + 1.1 * math.sin(a)))
    for side in (-1, 1):  # brows 17-21 (image left, outer -> inner), 22-26 (inner -> outer)
        xs = np.linspace(-0.8, -0.2, 5) if side < 0 else np.linspace(0.2, 0.8, 5)
        for x in xs:
            pts.append((x, -0.6 - 0.12 * math.cos((abs(x) - 0.5) / 0.3 * math.pi / 2)))
    for y in np.linspace(-0.42, 0.12, 4):  # nose bridge 27-30
        pts.append((0.0, y))
    for x in np.linspace(-0.22, 0.22, 5):  # nostrils 31-35
        pts.append((x, 0.3))
    for cx in (-0.42, 0.42):  # eyes 36-41, 42-47
        for a in (180, 120, 60, 0, -60, -120):
            pts.append((cx + 0.2 * math.cos(math.radians(a)), -0.3 - 0.1 * math.sin(math.radians(a))))
    for k in range(12):  # outer lip 48-59
        a = math.pi - k * 2 * math.pi / 12
        pts.append((0.42 * math.cos(a), 0.64 - 0.22 * math.sin(a)))
    for k in range(8):  # inner lip 60-67
        a = math.pi - k * 2 * math.pi / 8
        pts.append((0.26 * math.cos(a), 0.64 - 0.09 * math.sin(a)))
    return np.array(pts)


IBUG68 = ibug68_template()


def _palette(n: int = 125) -> np.ndarray:
    levels = (20, 80, 140, 200, 250)
    cols = np.array(list(itertools.product(levels, repeat=3)), dtype=np.uint8)
    return cols[np.random.default_rng(3).permutation(len(cols))][:n]


PALETTE = _palette()


def face_points(template: np.ndarray, center, scale: float) -> np.ndarray:
    """Template points placed in an image: ``center + scale * template`` (0-based pixels)."""
    return np.asarray(center, dtype=np.float64) + scale * np.asarray(template, dtype=np.float64)


def dot_image(width: int, height: int, points, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: a smooth background with landmark ``i`` drawn as a square of ``PALETTE[i]``
    centred on the pixel nearest it (NaN points are not drawn)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    base = rng.uniform(90, 160, 3)
    img = np.stack([base[c] + 25 * np.sin(x / (37 + 9 * c) + c) * np.cos(y / (41 + 5 * c)) for c in range(3)], -1)
    img = np.clip(img, 0, 255).astype(np.uint8)
    pts = np.asarray(points, dtype=np.float64)
    centres = np.round(pts[np.isfinite(pts).all(1)])
    if len(centres) > 1:  # squares must not overlap
        d = np.abs(centres[:, None] - centres[None]).max(-1) + np.eye(len(centres)) * 1e9
        assert d.min() >= 2 * HALF + 1, f"landmark squares overlap (closest centres {d.min()} px apart)"
    for i, p in enumerate(pts):
        if not np.isfinite(p).all():
            continue
        cx, cy = int(round(p[0])), int(round(p[1]))
        img[max(cy - HALF, 0):max(cy + HALF + 1, 0), max(cx - HALF, 0):max(cx + HALF + 1, 0)] = PALETTE[i]
    return img


def nearest_colour(rgb) -> int:
    """Index of the palette colour nearest ``rgb`` (0-255)."""
    return int(np.argmin(((PALETTE.astype(np.float64) - np.asarray(rgb, np.float64)) ** 2).sum(1)))


def assert_on_dots(sample: dict, min_checked: int = 3) -> int:
    """Every visible landmark inside the crop lands on a pixel of its own colour. Returns how many were checked."""
    img = (sample["image"].permute(1, 2, 0).numpy() * 255.0)
    lm = sample["landmarks"].numpy()
    vis = sample["visibility"].numpy()
    h, w = img.shape[:2]
    checked = 0
    for i, (p, v) in enumerate(zip(lm, vis)):
        if not (v > 0 and np.isfinite(p).all()):
            continue
        x, y = int(round(p[0])), int(round(p[1]))
        if not (0 <= x < w and 0 <= y < h):
            continue
        got = nearest_colour(img[y, x])
        assert got == i, f"landmark {i} at crop ({p[0]:.1f}, {p[1]:.1f}) lands on the colour of landmark {got}"
        checked += 1
    assert checked >= min_checked, f"only {checked} landmarks could be checked"
    return checked


# ----------------------------------------------------------------------------- UMDFaces

UMD_BASE = ["SUBJECT_ID", "FILE", "FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT", "YAW", "PITCH", "ROLL"]


def umd_columns(vis: bool = True) -> list[str]:
    cols = UMD_BASE + [f"P{k}X" for k in range(1, 22)] + [f"P{k}Y" for k in range(1, 22)]
    if vis:
        cols += [f"VIS{k}" for k in range(1, 22)]
    return cols + ["GENDER"]


def write_umd_csv(path, rows: list[dict], vis: bool = True, shuffle_seed: int | None = 1, bom: bool = True):
    """Write a UMDFaces CSV. Each row: subject, file, box (x, y, w, h), pose (yaw, pitch, roll),
    points (21, 2) as they go into the file (None entries written as empty strings), vis (21,)."""
    cols = umd_columns(vis)
    if shuffle_seed is not None:
        cols = [cols[i] for i in np.random.default_rng(shuffle_seed).permutation(len(cols))]
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        wr = csv.writer(f)
        wr.writerow(cols)
        for r in rows:
            vals = {"SUBJECT_ID": r["subject"], "FILE": r["file"], "GENDER": 0.93}
            for k, v in zip(("FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT"), r["box"]):
                vals[k] = v
            for k, v in zip(("YAW", "PITCH", "ROLL"), r["pose"]):
                vals[k] = v
            for i, (x, y) in enumerate(r["points"], start=1):
                vals[f"P{i}X"] = "" if x is None else x
                vals[f"P{i}Y"] = "" if y is None else y
            for i, v in enumerate(r.get("vis", [1] * 21), start=1):
                vals[f"VIS{i}"] = v
            wr.writerow([vals.get(c, "") for c in cols])
    return path


# ----------------------------------------------------------------------------- .mat

def write_pose_mat(path, pt2d=None, pt3d_68=None, pose_para=None, **extra):
    """A 300W-LP / AFLW2000-3D style .mat (v5, scipy.io.savemat): pt2d (2, L), pt3d_68 (3, 68),
    Pose_Para (1, 7), given in the file's own convention (1-based MATLAB pixels)."""
    import scipy.io

    d = dict(extra)
    if pt2d is not None:
        d["pt2d"] = np.asarray(pt2d, dtype=np.float64)
    if pt3d_68 is not None:
        d["pt3d_68"] = np.asarray(pt3d_68, dtype=np.float64)
    if pose_para is not None:
        d["Pose_Para"] = np.asarray(pose_para, dtype=np.float32).reshape(1, -1)
    scipy.io.savemat(str(path), d)
    return path


def write_mat73(path, **arrays):
    """A MATLAB v7.3 file (HDF5 with the 128-byte MATLAB header, arrays stored transposed)."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=np.asarray(v, dtype=np.float64).T)
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header)
    return path
