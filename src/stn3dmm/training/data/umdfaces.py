"""The UMDFaces reader: still images with 21 AFLW-style keypoints, pose and subject identity.

This module owns :class:`UMDFaces` and :func:`read_umdfaces_csv`.

The real data set
-----------------
UMDFaces (Bansal et al. 2017; 367,888 faces of 8,277 subjects) comes in three batches, each a
folder ``umdfaces_batchN/`` holding one sub-folder of JPEGs per subject and the annotation file
``umdfaces_batchN_ultraface.csv``. Point the reader at the CSV; images are looked up relative to
the CSV's folder unless ``image_root`` says otherwise::

    UMDFaces("/data/umdfaces/umdfaces_batch1/umdfaces_batch1_ultraface.csv")
    UMDFaces([f"/data/umdfaces/umdfaces_batch{n}/umdfaces_batch{n}_ultraface.csv" for n in (1, 2, 3)])

(the three batches as one data set; ``image_root`` may then be one folder or one per CSV).

CSV format
----------
Columns are found by header name (any order, case-insensitive, surrounding spaces and a UTF-8
byte-order mark ignored; extra columns such as the gender estimate are ignored): ``SUBJECT_ID``,
``FILE`` (image path relative to the image root), ``FACE_X``, ``FACE_Y`` (top-left corner of the
human-curated face box), ``FACE_WIDTH``, ``FACE_HEIGHT``, ``YAW``, ``PITCH``, ``ROLL`` (degrees),
``P1X`` .. ``P21X``, ``P1Y`` .. ``P21Y`` and, when present, ``VIS1`` .. ``VIS21``.

Landmark convention
-------------------
The 21 points ``P1..P21`` are AFLW's 21 keypoints in AFLW's order, which is the AFLW-21 order
of the original (brows 1-6 and eye points 7-12 left to right in the image, 13 and 17 the ear
lobes, 14-16 nose, 18-20 mouth, 21 chin): ``landmark_set = "aflw21"``, point ``k`` is column
``Pk``. Coordinates are pixels of the original image, x right and y down. **Assumed 0-based**
(pixel centres at integers, as ours): the keypoints were produced by a Python/Caffe network
(All-in-One CNN) and the data set documents no offset; if they were 1-based the error is half a
pixel to one pixel, far below the labels' own accuracy (pass ``one_based=True`` to subtract 1).
A point with a non-positive or NaN (empty) coordinate is missing (NaN, visibility 0). ``VISk``
(0/1) is the point's visibility; without VIS columns (or with an empty value) a point is
visible when its coordinates are valid. A point labelled with VIS 0 keeps its coordinates (the
loss ignores it; mirroring keeps it). Identity is ``SUBJECT_ID``; when several CSV files are
read, the ids of each file are shifted past those of the files before it, so that batches never
share an id. Pose is ``(YAW, PITCH, ROLL)`` in degrees as given (UMDFaces' sign convention).

Faces are framed from the landmarks (``framing="mesh"``, see :mod:`.crop`), falling back to the
CSV's face box when fewer than three points are valid; ``framing="box"`` uses the face box.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...photos.crop import DEFAULT_MARGIN
from .crop import Annotation, LabelledFaces, ReaderError, as_path_list, check_image, identities_or_none, report_bad
from ...core.defaults import IMAGE_SIZE

N_POINTS = 21
REQUIRED = ("SUBJECT_ID", "FILE", "FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT", "YAW", "PITCH", "ROLL")
POINT_COLUMNS = tuple(f"P{k}{a}" for a in "XY" for k in range(1, N_POINTS + 1))
VIS_COLUMNS = tuple(f"VIS{k}" for k in range(1, N_POINTS + 1))


def _floats(values) -> np.ndarray:
    """Strings -> float64, empty or unparsable values -> NaN."""
    try:
        return np.asarray(values, dtype=np.float64)
    except ValueError:
        out = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            try:
                out[i] = float(v)
            except ValueError:
                out[i] = np.nan
        return out


def read_umdfaces_csv(csv_path, one_based: bool = False) -> dict:
    """Parse one UMDFaces CSV by header names (module docstring).

    Returns a dict of arrays over its N rows: ``file`` (N,) str, ``subject`` (N,) int64,
    ``box`` (N, 4) x0, y0, x1, y1, ``pose`` (N, 3) yaw, pitch, roll, ``landmarks`` (N, 21, 2)
    0-based (NaN missing), ``visibility`` (N, 21), ``has_vis`` (bool), and ``bad``: a list of
    ``(row description, reason)`` for rows that cannot be used (they are not in the arrays).

    Raises:
        ReaderError: the file cannot be read or lacks a required column.
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise ReaderError(f"{csv_path}: cannot be read: {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ReaderError(f"{csv_path}: not a readable CSV file ({e})") from None
    if not rows:
        raise ReaderError(f"{csv_path}: empty file (no header)")
    header = [h.strip().upper() for h in rows[0]]
    col = {}
    for i, h in enumerate(header):
        if h in col:
            raise ReaderError(f"{csv_path}: column {h!r} appears twice in the header")
        col[h] = i
    missing = [c for c in REQUIRED + POINT_COLUMNS if c not in col]
    if missing:
        raise ReaderError(f"{csv_path}: missing column(s) {', '.join(missing)} (found: {', '.join(header)})")
    has_vis = any(c in col for c in VIS_COLUMNS)
    good, bad, lines = [], [], []
    for n, r in enumerate(rows[1:], start=2):
        if not r or all(not v.strip() for v in r):
            continue
        if len(r) != len(header):
            bad.append((f"{csv_path} line {n}", f"{len(r)} fields, the header has {len(header)}"))
            continue
        good.append(r)
        lines.append(n)
    cols = list(zip(*good)) if good else [()] * len(header)

    def get(name):
        return _floats([v.strip() for v in cols[col[name]]])

    files = np.array([v.strip().replace("\\", "/") for v in cols[col["FILE"]]], dtype=object)
    subject = get("SUBJECT_ID")
    x0, y0 = get("FACE_X"), get("FACE_Y")
    box = np.stack([x0, y0, x0 + get("FACE_WIDTH"), y0 + get("FACE_HEIGHT")], axis=1) if good else np.zeros((0, 4))
    pose = np.stack([get("YAW"), get("PITCH"), get("ROLL")], axis=1) if good else np.zeros((0, 3))
    n = len(good)
    xs = np.stack([get(f"P{k}X") for k in range(1, N_POINTS + 1)], axis=1) if n else np.zeros((0, N_POINTS))
    ys = np.stack([get(f"P{k}Y") for k in range(1, N_POINTS + 1)], axis=1) if n else np.zeros((0, N_POINTS))
    lm = np.stack([xs, ys], axis=-1)
    valid = np.isfinite(lm).all(-1) & (lm > 0).all(-1)
    lm[~valid] = np.nan
    if one_based:
        lm -= 1.0
        box -= 1.0
    vis = np.ones((n, N_POINTS))
    for k, c in enumerate(VIS_COLUMNS):
        if c in col:
            v = get(c)
            vis[:, k] = np.where(np.isfinite(v), np.clip(v, 0.0, 1.0), 1.0)
    vis[~valid] = 0.0
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        where = f"{csv_path} line {lines[i]}"
        if not files[i]:
            bad.append((where, "empty FILE"))
            keep[i] = False
        elif not (np.isfinite(subject[i]) and subject[i] == int(subject[i])):
            bad.append((where, f"SUBJECT_ID {cols[col['SUBJECT_ID']][i]!r} is not an integer"))
            keep[i] = False
    return {"file": files[keep], "subject": subject[keep].astype(np.int64), "box": box[keep], "pose": pose[keep],
            "landmarks": lm[keep], "visibility": vis[keep], "has_vis": has_vis, "bad": bad}


class UMDFaces(LabelledFaces):
    """UMDFaces stills from their CSV annotations (module docstring).

    Args:
        csv_path: one ``umdfaces_batchN_ultraface.csv`` or a list of them.
        image_root: folder the CSV's FILE paths are relative to (None or "": the CSV's own
            folder); one folder for all CSVs or one per CSV.
        size: crop side (224; 112 for small models).
        margin, framing, max_side, labels_on, padding: see :class:`~stn3dmm.training.data.crop.LabelledFaces`.
        check: ``"exists"`` (default), ``"header"`` or ``"decode"`` (see :mod:`.crop`).
        skip_bad: leave unusable rows and images out with a warning (True) or raise.
        one_based: the CSV's coordinates are 1-based (default False, see the module docstring).

    Attributes:
        landmark_set: ``"aflw21"``.
        identities: (N,) int64 subject ids.
        paths: image file of each item.
        excluded: ``(path or row, reason)`` of everything left out.
    """

    def __init__(self, csv_path, image_root=None, size: int = IMAGE_SIZE, *, margin: float = DEFAULT_MARGIN,
                 framing: str = "mesh", check: str = "exists", skip_bad: bool = True, max_side: int | None = None,
                 labels_on: str = "stored", padding: str = "zeros", one_based: bool = False):
        super().__init__(size, margin, framing, max_side, labels_on, padding)
        csvs = as_path_list(csv_path)
        if not csvs:
            raise ReaderError("no CSV file given")
        if image_root is None or (isinstance(image_root, str) and not image_root):
            roots = [c.parent for c in csvs]
        elif isinstance(image_root, (str, Path)):
            roots = [Path(image_root)] * len(csvs)
        else:
            roots = [Path(r) if r else c.parent for r, c in zip(image_root, csvs, strict=True)]
        self.landmark_set = "aflw21"
        paths, lms, vis, poses, boxes, ids, bad = [], [], [], [], [], [], []
        offset = 0
        total = 0
        for c, root in zip(csvs, roots):
            d = read_umdfaces_csv(c, one_based)
            bad += d["bad"]
            total += len(d["file"]) + len(d["bad"])
            subj = d["subject"] + offset
            if len(csvs) > 1 and len(subj):
                offset = int(subj.max()) + 1
            for i, f in enumerate(d["file"]):
                p = Path(f) if Path(f).is_absolute() else root / f
                problem = check_image(p, check)
                if problem:
                    bad.append((p, problem))
                    continue
                paths.append(str(p))
                lms.append(d["landmarks"][i])
                vis.append(d["visibility"][i])
                poses.append(d["pose"][i])
                boxes.append(d["box"][i])
                ids.append(subj[i])
        self.excluded = bad
        report_bad(f"UMDFaces ({', '.join(str(c) for c in csvs)})", bad, skip_bad, total)
        self.paths = paths
        self._landmarks = np.asarray(lms, dtype=np.float32).reshape(-1, N_POINTS, 2)
        self._visibility = np.asarray(vis, dtype=np.float32).reshape(-1, N_POINTS)
        self._pose = np.asarray(poses, dtype=np.float32).reshape(-1, 3)
        self._box = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.identities = identities_or_none(np.asarray(ids, dtype=np.int64))
        self._ids = np.asarray(ids, dtype=np.int64)

    def annotation(self, index: int) -> Annotation:
        box = self._box[index].astype(np.float64)
        return Annotation(landmarks=self._landmarks[index].astype(np.float64), visibility=self._visibility[index],
                          identity=int(self._ids[index]), pose=self._pose[index],
                          box=box if np.isfinite(box).all() and (box[2:] > box[:2]).all() else None)


__all__ = ["UMDFaces", "read_umdfaces_csv", "N_POINTS", "REQUIRED"]
