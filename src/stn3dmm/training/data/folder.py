"""A folder of images with a landmark file beside each: the reader and the writer.

This module owns :class:`LandmarkFolder`, :func:`write_folder_item`, :func:`read_folder_json`,
:func:`read_pts` and :func:`write_pts`. It is also the on-disk format of the synthetic-data
exporter (which writes items with :func:`write_folder_item`).

Layout
------
Any folder tree (searched recursively; hidden files ignored). Each image ``name.ext`` (any
extension :func:`~stn3dmm.photos.read_photo` lists) has beside it ``name.json`` or, failing
that, ``name.pts``. An image without either, or a landmark file without an image, is reported
as unusable; a ``.json`` file without an image and without a ``"landmarks"`` key (a manifest,
say) is ignored.

``name.json`` (written by :func:`write_folder_item`)::

    {"version": 1,
     "landmarks": [[x, y], ..., null, ...],   # L points; null (or NaN) = missing
     "visibility": [1, 0, ...],               # optional, L values in [0, 1]
     "identity": 12 or "person_a",            # optional; -1 / null = unknown
     "pose": [yaw, pitch, roll],              # optional, degrees
     "landmark_set": "ibug68" | "aflw21" | [vertex indices],   # optional
     "theta": [r(3), t(2), logs, alpha...],   # optional ground truth for this image
     "box": [x0, y0, x1, y1],                 # optional face box
     "cropped": true}                         # optional: the image already is the STN input

``name.pts``: the iBUG format (``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``).

Landmark convention
-------------------
JSON coordinates are **ours**: 0-based pixels of the image as stored, x right, y down (pixel
centres at integers, :mod:`stn3dmm.core.conventions`). ``.pts`` coordinates are **1-based** (the
300-W/iBUG convention; menpo, for one, subtracts 1 when importing them) and become ours by
``x - 1, y - 1`` (``pts_one_based=False`` reads them as 0-based). ``theta`` is in our convention
(``t`` in the image's pixels, ``s = exp(logs)``); the reader re-expresses it for the crop.

``landmark_set``: the constructor's argument, else the file's ``"landmark_set"``, else inferred
from the count (21 -> ``"aflw21"``, 68 -> ``"ibug68"``). Items whose set differs from the data
set's (the first item's) are unusable. Identity: the file's ``"identity"``; integers are kept,
and if any identity is a string all of them are mapped to ints 0..n-1 in sorted order of their
text (``identity_names`` lists the names); ``identity_from="folder"`` uses the item's folder
(its path relative to the root; items directly in the root get -1) instead, ``None`` gives -1
everywhere.

Cropping (``crop``): ``"auto"`` (default) takes a ``"cropped": true`` item whole (centred,
square-padded, resized to ``size``: exactly the written image when it is ``size`` x ``size``)
and frames the others from their landmarks (or their box with ``framing="box"``), as
:mod:`.crop` describes; ``"face"`` frames every item; ``"whole"`` takes every image whole.

Pointing it at real data: any landmark data set stored as images plus ``.pts`` files (300-W,
iBUG, HELEN, LFPW, AFW as distributed by iBUG; Menpo's profile faces need ``landmark_set``)
can be read with ``LandmarkFolder("/data/300W", crop="face")``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ...core.paths import write_text_atomically
from ...model.morphable import LANDMARK_SETS, SETS_BY_COUNT
from ...photos.crop import DEFAULT_MARGIN
from ...photos.io import IMAGE_EXTENSIONS, write_png_atomic
from .crop import (Annotation, LabelledFaces, ReaderError, as_path_list, check_image, identities_or_none,
                   identity_ids, report_bad)
from ...core.defaults import IMAGE_SIZE

FORMAT_VERSION = 1
CROPS = ("auto", "face", "whole")
_PREFERRED = (".png", ".jpg", ".jpeg")


# ----------------------------------------------------------------------------- .pts

def read_pts(path, one_based: bool = True) -> np.ndarray:
    """An iBUG ``.pts`` file -> (N, 2) points in our convention (module docstring).

    Raises:
        ReaderError: unreadable file or not the ``.pts`` layout.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except (OSError, UnicodeDecodeError) as e:
        raise ReaderError(f"{path}: cannot be read ({e})", [(path, "unreadable")]) from None
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    n_points, pts, state = None, [], "header"
    for ln in lines:
        if state == "header":
            if ln.startswith("{"):
                state = "points"
            elif ":" in ln:
                key, _, val = ln.partition(":")
                if key.strip().lower() == "n_points":
                    try:
                        n_points = int(val.strip())
                    except ValueError:
                        raise ReaderError(f"{path}: bad n_points line {ln!r}", [(path, "bad n_points")]) from None
            else:
                raise ReaderError(f"{path}: unexpected line {ln!r} before '{{'", [(path, "not a .pts file")])
        elif state == "points":
            if ln.startswith("}"):
                state = "done"
                continue
            parts = ln.replace(",", " ").split()
            try:
                if len(parts) != 2:
                    raise ValueError
                pts.append((float(parts[0]), float(parts[1])))
            except ValueError:
                raise ReaderError(f"{path}: bad point line {ln!r}", [(path, "bad point line")]) from None
    if state != "done":
        raise ReaderError(f"{path}: not a .pts file (no '{{' ... '}}' block of points)", [(path, "not a .pts file")])
    if n_points is not None and n_points != len(pts):
        raise ReaderError(f"{path}: n_points is {n_points} but {len(pts)} points follow", [(path, "point count")])
    a = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return a - 1.0 if one_based else a


def write_pts(path, points, one_based: bool = True) -> Path:
    """Write (N, 2) points (ours) as an iBUG ``.pts`` file (1-based by default), atomically.
    The format has no way to mark a missing point: NaN points raise ValueError."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(p).all():
        raise ValueError(".pts files cannot hold missing points: use the JSON format")
    q = p + 1.0 if one_based else p
    body = "version: 1\nn_points: %d\n{\n%s\n}\n" % (len(q), "\n".join(f"{x:.6f} {y:.6f}" for x, y in q))
    return _write_text_atomic(Path(path), body)


# ----------------------------------------------------------------------------- .json

def _write_text_atomic(path: Path, text: str) -> Path:
    return write_text_atomically(path, text, durable=True)


def _plain(x):
    """numpy / torch scalars and arrays -> plain Python for JSON."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _float_or_none(v):
    v = float(v)
    return v if math.isfinite(v) else None


def write_folder_item(root, name: str, image, landmarks, visibility=None, identity=-1, pose=None, theta=None,
                      landmark_set=None, *, cropped: bool | None = None, box=None) -> Path:
    """Write one item of the folder format: ``root/name.png`` and ``root/name.json``, each atomically
    (temporary file + rename), the JSON last so that a reader never sees half an item.

    Args:
        root: the data set's folder (created if missing).
        name: item name, may contain sub-folders (``"id0003/view02"``); no extension.
        image: (H, W, 3) uint8 or float in [0, 1] (numpy or torch; torch (3, H, W) is accepted).
        landmarks: (L, 2) in our convention (0-based pixels of this image, y down); NaN = missing.
        visibility: (L,) in [0, 1] or None.
        identity: int or str (-1 = unknown).
        pose: (yaw, pitch, roll) degrees or None.
        theta: ground-truth theta for this image (our convention) or None.
        landmark_set: ``"ibug68"``, ``"aflw21"``, vertex indices, or None (inferred from L when 21 or 68).
        cropped: the image is the STN input itself (default: True when ``theta`` is given).
        box: optional face box (x0, y0, x1, y1).

    Returns:
        The path of the JSON file.
    """
    root = Path(root)
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.name or rel.suffix.lower() in (".png", ".json"):
        raise ValueError(f"name must be a relative path without extension and without '..', got {name!r}")
    img = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3, 4):
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    lm = np.asarray(_plain(landmarks), dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2:
        raise ValueError(f"landmarks must be (L, 2), got shape {lm.shape}")
    doc: dict = {"version": FORMAT_VERSION,
                 "landmarks": [None if not np.isfinite(p).all() else [float(p[0]), float(p[1])] for p in lm]}
    if visibility is not None:
        v = np.asarray(_plain(visibility), dtype=np.float64).ravel()
        if v.shape != (len(lm),):
            raise ValueError(f"visibility must have {len(lm)} values, got {v.shape}")
        doc["visibility"] = [_float_or_none(x) for x in v]
    identity = _plain(identity)
    if identity is not None and not isinstance(identity, (int, str)):
        raise ValueError(f"identity must be an int or a str, got {type(identity).__name__}")
    doc["identity"] = identity
    if pose is not None:
        doc["pose"] = [_float_or_none(x) for x in np.asarray(_plain(pose), dtype=np.float64).ravel()]
    if landmark_set is None:
        landmark_set = SETS_BY_COUNT.get(len(lm))
    if landmark_set is not None:
        doc["landmark_set"] = landmark_set if isinstance(landmark_set, str) else [int(i) for i in _plain(landmark_set)]
    if theta is not None:
        doc["theta"] = [float(x) for x in np.asarray(_plain(theta), dtype=np.float64).ravel()]
    if box is not None:
        doc["box"] = [float(x) for x in np.asarray(_plain(box), dtype=np.float64).ravel()]
    doc["cropped"] = bool(theta is not None if cropped is None else cropped)
    png = (root / rel).with_name(rel.name + ".png")
    js = (root / rel).with_name(rel.name + ".json")
    write_png_atomic(png, img)
    return _write_text_atomic(js, json.dumps(doc, indent=None, separators=(",", ":")) + "\n")


def read_folder_json(path) -> dict:
    """Parse one item's JSON -> ``{"landmarks": (L, 2), "visibility": (L,) or None, "identity",
    "pose": (3,) or None, "landmark_set": str / int array / None, "theta": array or None, "box",
    "cropped": bool}``.

    Raises:
        ReaderError: unreadable, not JSON, or malformed fields.
    """
    path = Path(path)

    def fail(reason):
        raise ReaderError(f"{path}: {reason}", [(path, reason)])

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot be read ({e})")
    except json.JSONDecodeError as e:
        fail(f"not valid JSON ({e})")
    if not isinstance(doc, dict) or "landmarks" not in doc:
        fail('no "landmarks" in the file')
    try:
        lm = np.array([[np.nan, np.nan] if p is None else [np.nan if c is None else float(c) for c in p]
                       for p in doc["landmarks"]], dtype=np.float64).reshape(-1, 2)
        if len(lm) != len(doc["landmarks"]):
            raise ValueError
    except (TypeError, ValueError):
        fail('"landmarks" must be a list of [x, y] pairs (or null)')
    out = {"landmarks": lm, "visibility": None, "identity": doc.get("identity", -1), "pose": None,
           "landmark_set": doc.get("landmark_set"), "theta": None, "box": None, "cropped": bool(doc.get("cropped"))}
    if doc.get("visibility") is not None:
        try:
            v = np.array([np.nan if x is None else float(x) for x in doc["visibility"]], dtype=np.float64)
        except (TypeError, ValueError):
            fail('"visibility" must be a list of numbers')
        if v.shape != (len(lm),):
            fail(f'"visibility" has {v.size} values for {len(lm)} landmarks')
        out["visibility"] = np.where(np.isfinite(v), np.clip(v, 0.0, 1.0), 1.0)
    for key, n in (("pose", 3), ("box", 4)):
        if doc.get(key) is not None:
            try:
                a = np.array([np.nan if x is None else float(x) for x in doc[key]], dtype=np.float64)
            except (TypeError, ValueError):
                fail(f'"{key}" must be a list of {n} numbers')
            if a.shape != (n,):
                fail(f'"{key}" must be a list of {n} numbers')
            out[key] = a
    if doc.get("theta") is not None:
        try:
            out["theta"] = np.array([float(x) for x in doc["theta"]], dtype=np.float64)
        except (TypeError, ValueError):
            fail('"theta" must be a list of numbers')
        if out["theta"].size < 6:
            fail('"theta" must have at least 6 values (r, t, logs)')
    ident = out["identity"]
    if ident is not None and not isinstance(ident, (int, str)) or isinstance(ident, bool):
        fail('"identity" must be an integer or a string')
    ls = out["landmark_set"]
    if ls is not None and not isinstance(ls, str):
        try:
            ls = np.asarray(ls, dtype=np.int64).ravel()
        except (TypeError, ValueError):
            fail('"landmark_set" must be a name or a list of vertex indices')
        if ls.size != len(lm):
            fail(f'"landmark_set" has {ls.size} vertices for {len(lm)} landmarks')
        out["landmark_set"] = ls
    return out


# ----------------------------------------------------------------------------- reader

def _same_set(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return np.array_equal(np.asarray(a), np.asarray(b))


def _set_name(s) -> str:
    return s if isinstance(s, str) else f"{len(s)} vertex indices"


def _discover(root: Path, recursive: bool):
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    files = root.rglob("*") if recursive else root.iterdir()
    groups: dict = {}
    for q in sorted(files):
        if not q.is_file() or any(part.startswith(".") for part in q.relative_to(root).parts):
            continue
        suf = q.suffix.lower()
        kind = "image" if suf in exts else ("json" if suf == ".json" else ("pts" if suf == ".pts" else None))
        if kind:
            groups.setdefault((q.parent, q.stem), {}).setdefault(kind, []).append(q)
    return groups


def _find_items(roots: list, recursive: bool) -> tuple[list, list]:
    """The folders' items ``(root, image, landmark file)`` (a ``.json`` before a ``.pts``, the
    preferred image extension first) and the unusable files ``(path, reason)``."""
    bad, items = [], []
    for r in roots:
        if not r.is_dir():
            bad.append((r, "not a folder" if r.exists() else "does not exist"))
            continue
        for (parent, stem), g in sorted(_discover(r, recursive).items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
            ann_file = (g.get("json") or g.get("pts") or [None])[0]
            images = sorted(g.get("image", []), key=lambda q: (_PREFERRED.index(q.suffix.lower())
                                                                if q.suffix.lower() in _PREFERRED else 99, q.name))
            if ann_file is None:
                bad += [(q, "no .json or .pts landmark file beside this image") for q in images]
                continue
            if not images:
                if ann_file.suffix == ".json" and not _has_landmarks_key(ann_file):
                    continue  # some other JSON (a manifest, ...)
                bad.append((ann_file, "no image beside this landmark file"))
                continue
            items.append((r, images[0], ann_file))
    return items, bad


def _read_landmark_file(path: Path, pts_one_based: bool) -> dict:
    """:func:`read_folder_json`'s dict for a ``.json`` or a ``.pts`` file (raises :class:`ReaderError`)."""
    if path.suffix.lower() == ".pts":
        return {"landmarks": read_pts(path, pts_one_based), "visibility": None, "identity": -1, "pose": None,
                "landmark_set": None, "theta": None, "box": None, "cropped": False}
    return read_folder_json(path)


def _landmark_set_problem(d: dict, data_set, given) -> tuple:
    """``(data set's landmark set, why the item cannot be used or None)``. The data set's set is
    ``given`` (the constructor's), else the first item's that names or implies one."""
    n = len(d["landmarks"])
    item_set = d["landmark_set"] if d["landmark_set"] is not None else SETS_BY_COUNT.get(n)
    if data_set is None:
        if item_set is None:
            return None, f"{n} landmarks and no landmark_set: pass landmark_set= to the reader"
        data_set = item_set
    want_n = len(data_set) if not isinstance(data_set, str) else LANDMARK_SETS.get(data_set)
    if want_n is not None and n != want_n:
        return data_set, f"{n} landmarks, the data set's {_set_name(data_set)} has {want_n}"
    if item_set is not None and given is None and not _same_set(item_set, data_set):
        return data_set, f"landmark set {_set_name(item_set)}, the data set's is {_set_name(data_set)}"
    return data_set, None


def _identity_key(identity_from: str | None, d: dict, image: Path, root: Path):
    """An item's identity before numbering: the file's, its folder (None directly in the root), or None."""
    if identity_from == "file":
        return d["identity"]
    if identity_from == "folder":
        return str(image.parent.relative_to(root)) if image.parent != root else None
    return None


def _number_identities(keys: list) -> tuple[np.ndarray, list | None]:
    """(ids, names): integer keys as they are (None: -1), else every known key numbered 0..n-1 in
    sorted order of its text (:func:`~.crop.identity_ids`); negative ids become -1."""
    if all(k is None or (isinstance(k, int) and not isinstance(k, bool)) for k in keys):
        ids, names = np.array([-1 if k is None else int(k) for k in keys], dtype=np.int64), None
    else:
        ids, names = identity_ids(keys)
    ids[ids < 0] = -1
    return ids, names


class LandmarkFolder(LabelledFaces):
    """Images with ``.json`` or ``.pts`` landmark files beside them (module docstring).

    Args:
        root: the folder (or a list of folders).
        size: crop side (224; 112 for small models).
        landmark_set: the data set's landmark set (default: from the files / the point count).
        crop: ``"auto"`` (default), ``"face"`` or ``"whole"``.
        identity_from: ``"file"`` (default), ``"folder"`` or None.
        pts_one_based: ``.pts`` coordinates are 1-based (default True).
        recursive: search sub-folders (default True).
        check: ``"exists"`` (default), ``"header"`` or ``"decode"`` for the images; landmark
            files are always parsed when the reader is built.
        skip_bad: leave unusable items out with a warning (True) or raise :class:`ReaderError`.
        margin, framing, max_side, labels_on, padding: see :class:`~stn3dmm.training.data.crop.LabelledFaces`.
    """

    def __init__(self, root, size: int = IMAGE_SIZE, landmark_set=None, *, crop: str = "auto",
                 identity_from: str | None = "file", pts_one_based: bool = True, recursive: bool = True,
                 margin: float = DEFAULT_MARGIN, framing: str = "mesh", check: str = "exists", skip_bad: bool = True,
                 max_side: int | None = None, labels_on: str = "stored", padding: str = "zeros"):
        super().__init__(size, margin, framing, max_side, labels_on, padding)
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if identity_from not in ("file", "folder", None):
            raise ValueError(f"identity_from must be 'file', 'folder' or None, got {identity_from!r}")
        if landmark_set is not None and not isinstance(landmark_set, str):
            landmark_set = np.asarray(landmark_set, dtype=np.int64).ravel()
        self.crop = crop
        roots = as_path_list(root)
        items, bad = _find_items(roots, recursive)
        total = len(items) + len(bad)
        kept, anns, keys = [], [], []
        data_set = landmark_set
        for r, img, af in items:
            problem = check_image(img, check)
            if problem:
                bad.append((img, problem))
                continue
            try:
                d = _read_landmark_file(af, pts_one_based)
            except ReaderError as e:
                bad.append((af, e.bad[0][1] if e.bad else str(e)))
                continue
            data_set, problem = _landmark_set_problem(d, data_set, landmark_set)
            if problem:
                bad.append((af, problem))
                continue
            whole = crop == "whole" or (crop == "auto" and d["cropped"])
            kept.append(img)
            anns.append(Annotation(landmarks=d["landmarks"], visibility=d["visibility"], identity=-1, pose=d["pose"],
                                   theta=d["theta"], box=d["box"], whole_image=whole))
            keys.append(_identity_key(identity_from, d, img, r))
        self.excluded = bad
        report_bad(f"LandmarkFolder ({', '.join(str(r) for r in roots)})", bad, skip_bad, total)
        self.landmark_set = data_set if data_set is not None else "ibug68"
        self.paths = [str(p) for p in kept]
        self._anns = anns
        ids, self.identity_names = _number_identities(keys)
        self._ids = ids
        self.identities = identities_or_none(ids)
        for a, i in zip(self._anns, ids):
            a.identity = int(i)

    def annotation(self, index: int) -> Annotation:
        return self._anns[index]


def _has_landmarks_key(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return True  # unreadable: report it
    return isinstance(doc, dict) and "landmarks" in doc


__all__ = ["LandmarkFolder", "write_folder_item", "read_folder_json", "read_pts", "write_pts", "FORMAT_VERSION"]
