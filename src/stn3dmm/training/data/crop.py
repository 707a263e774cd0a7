"""Shared machinery of the labelled data-set readers: framing a face, cropping it, checking files.

This module owns :func:`landmark_square` (the square crop around labelled landmarks),
:data:`FRAMING`, :func:`exif_matrix` (file pixels -> upright pixels), :class:`Annotation`,
:class:`LabelledFaces` (the base Dataset of :mod:`.umdfaces`, :mod:`.w300lp` and
:mod:`.folder`), :class:`ReaderError` and the file checks (:func:`check_image`).

Landmark convention
-------------------
Readers convert every data set's labels into :class:`Annotation` s in **file pixels, ours**:
x right, y down, 0-based pixel centres (:mod:`stn3dmm.core.conventions`), on the pixel grid of the
image as stored in the file, missing points NaN. Each reader's docstring says how its own
labels are converted (1-based MATLAB, 0-based, ...). Samples then carry landmarks in **crop
pixels** (the same convention in the ``size`` x ``size`` crop).

The crop, as the photo pipeline does it
---------------------------------------
The photo pipeline (:func:`stn3dmm.photos.crop_face`) crops the square around the bounding box
of the 468 face-mesh points, enlarged by :data:`~stn3dmm.photos.crop.DEFAULT_MARGIN` on each
side, resampled with :func:`~stn3dmm.photos.crop_square` (bilinear, box-filtered when
shrinking, black outside the photo). Labelled data sets have no face mesh, only their own few
landmarks, whose box is smaller (no forehead) and lower. With ``framing="mesh"`` (default) the
landmark box is turned into the box the face mesh would have given before the same margin is
added: for a landmark box of centre ``c`` and longer side ``d``::

    centre = c + (fx, fy) d,      side = k d (1 + 2 margin)

with ``(k, fx, fy)`` from :data:`FRAMING` per landmark set: typical values of the two boxes'
relation on the default model's mean face rendered over a range of yaws and pitches (mesh box
from the detector on the render, landmark box from the model's ``aflw21`` / ``ibug68``
vertices) and on a real photo (iBUG points from its face mesh). A face thus fills a data-set
crop as it fills a photo crop, so the localiser sees the same framing in training and at run
time. ``framing="landmarks"`` uses the plain landmark box (``k = 1``, no shift);
``framing="box"`` the data set's own face box where it has one; landmark sets given as vertex
indices always use the plain landmark box. Crops are never turned.

Files
-----
``check`` decides what is verified when a reader is built: ``"exists"`` (the image and
annotation files exist and are not empty: one ``stat`` each, cheap for any data set size),
``"header"`` (also: Pillow can read the image header and annotations parse) or ``"decode"``
(also: every image decodes fully; slow). With ``skip_bad=True`` (default) bad items are left
out with one warning listing them (all of them are in the reader's ``excluded``); with
``skip_bad=False`` the reader raises :class:`ReaderError` listing them. A file that goes bad
after that (or is corrupt under a cheaper ``check``) makes ``reader[i]`` raise an error naming
it (:class:`~stn3dmm.photos.PhotoError` for images): a reader never returns a made-up sample.

EXIF orientation: :func:`~stn3dmm.photos.read_photo` returns upright images. Labels are taken
to refer to the pixel grid as stored in the file (``labels_on="stored"``, default: MATLAB's
``imread`` and Pillow do not apply the EXIF tag, and the data sets here were labelled that
way) and are mapped onto the upright image; pass ``labels_on="upright"`` for labels made on
EXIF-corrected images.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ...photos.crop import (DEFAULT_MARGIN, FRAMING, MIN_FRAMING_POINTS, CropTransform, box_square,  # noqa: F401
                            landmark_square, square_transform, transform_theta, warp)
from ...photos.io import PhotoError, read_photo
from .sample import make_sample
from ...core.defaults import IMAGE_SIZE

FRAMINGS = ("mesh", "landmarks", "box")
CHECKS = ("exists", "header", "decode")
#: Smallest square (photo pixels) a face may be framed by.
MIN_SIDE = 4.0
#: How many bad items a warning or error message lists by name.
LIST_LIMIT = 20


class ReaderError(ValueError):
    """A data set cannot be read as asked. ``bad`` lists ``(path, reason)`` pairs when the
    problem is with particular files."""

    def __init__(self, message: str, bad: list | None = None):
        self.bad = list(bad or [])
        super().__init__(message)


def describe_bad(bad: list, limit: int = LIST_LIMIT) -> str:
    """``path: reason`` lines for the first ``limit`` bad items, and how many more there are."""
    lines = [f"  {p}: {r}" for p, r in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more (see the reader's `excluded`)")
    return "\n".join(lines)


def report_bad(kind: str, bad: list, skip_bad: bool, total: int) -> None:
    """Warn about (``skip_bad``) or refuse (raise :class:`ReaderError`) the bad items of a reader."""
    if not bad:
        return
    head = f"{kind}: {len(bad)} of {total} items are unusable"
    if not skip_bad:
        raise ReaderError(f"{head} (pass skip_bad=True to leave them out):\n{describe_bad(bad)}", bad)
    warnings.warn(f"{head} and were left out:\n{describe_bad(bad)}", UserWarning, stacklevel=3)


def check_file(path, what: str = "file") -> str | None:
    """None if ``path`` is an existing non-empty file, else the reason it is not."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"{what} does not exist"
    except OSError as e:
        return f"{what} cannot be accessed: {e.strerror or e}"
    if not os.path.isfile(path):
        return f"{what} is not a file"
    if st.st_size == 0:
        return f"{what} is empty"
    return None


def check_image(path, check: str = "exists") -> str | None:
    """None if the image at ``path`` passes ``check`` (see the module docstring), else why not."""
    if check not in CHECKS:
        raise ValueError(f"check must be one of {CHECKS}, got {check!r}")
    problem = check_file(path, "image")
    if problem or check == "exists":
        return problem
    if check == "decode":
        try:
            read_photo(path, max_side=None)
        except PhotoError as e:
            return f"image unusable: {e.problem}"
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except UnidentifiedImageError:
        return "image unusable: not an image (or a format Pillow cannot read)"
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        return f"image unusable: corrupt header ({e})"
    if w < 1 or h < 1:
        return f"image unusable: empty ({w} x {h})"
    return None


# ----------------------------------------------------------------------------- geometry

def _affine(matrix3: np.ndarray, points) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    return p @ matrix3[:2, :2].T + matrix3[:2, 2]


def exif_matrix(orientation: int, stored_size) -> np.ndarray:
    """(3, 3) map from the pixel grid stored in a file (``stored_size`` = (width, height) as
    stored) to the upright image that EXIF orientation ``orientation`` (1-8) displays, in our
    pixel-centre convention (``ImageOps.exif_transpose``'s transposition of pixels)."""
    w, h = float(stored_size[0]) - 1.0, float(stored_size[1]) - 1.0
    m = {
        1: [[1, 0, 0], [0, 1, 0]],
        2: [[-1, 0, w], [0, 1, 0]],          # mirror left-right
        3: [[-1, 0, w], [0, -1, h]],         # rotate 180
        4: [[1, 0, 0], [0, -1, h]],          # mirror top-bottom
        5: [[0, 1, 0], [1, 0, 0]],           # transpose
        6: [[0, -1, h], [1, 0, 0]],          # rotate 90 clockwise
        7: [[0, -1, h], [-1, 0, w]],         # transverse
        8: [[0, 1, 0], [-1, 0, w]],          # rotate 90 counter-clockwise
    }.get(int(orientation))
    if m is None:
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation}")
    return np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------- items

@dataclass
class Annotation:
    """One labelled face, in file pixels (module docstring).

    Attributes:
        landmarks: (L, 2) float64, NaN = missing.
        visibility: (L,) in [0, 1], or None (1 where the landmark is valid).
        identity: subject id, -1 when unknown.
        pose: (3,) yaw, pitch, roll in degrees, or None.
        theta: ground-truth theta for the image as stored, or None.
        box: (4,) face box x0, y0, x1, y1 in file pixels, or None.
        whole_image: the image is already a face crop: take all of it (square-padded).
    """

    landmarks: np.ndarray
    visibility: np.ndarray | None = None
    identity: int = -1
    pose: np.ndarray | None = None
    theta: np.ndarray | None = None
    box: np.ndarray | None = None
    whole_image: bool = False


class LabelledFaces(Dataset):
    """Base class of the labelled readers: turns an image file and its :class:`Annotation`
    into a sample (:mod:`stn3dmm.training.data.sample`) cropped as the photo pipeline crops.

    Subclasses set ``self.paths`` (image files, one per item), ``self.landmark_set``,
    ``self.identities`` and implement :meth:`annotation`.

    Args:
        size: crop side in pixels (224, or 112 for small models).
        margin: context around the face box (see :func:`landmark_square`).
        framing: ``"mesh"``, ``"landmarks"`` or ``"box"`` (module docstring).
        max_side: read images downscaled to this longer side (None: full resolution; labels
            follow either way).
        labels_on: ``"stored"`` or ``"upright"`` (EXIF orientation, module docstring).
        padding: crop padding outside the photo, ``"zeros"`` (the photo pipeline's) or ``"border"``.
    """

    paths: list
    landmark_set = None
    identities = None

    def __init__(self, size: int = IMAGE_SIZE, margin: float = DEFAULT_MARGIN, framing: str = "mesh",
                 max_side: int | None = None, labels_on: str = "stored", padding: str = "zeros"):
        if int(size) < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
        if labels_on not in ("stored", "upright"):
            raise ValueError(f"labels_on must be 'stored' or 'upright', got {labels_on!r}")
        self.size = int(size)
        self.margin = float(margin)
        self.framing = framing
        self.max_side = max_side
        self.labels_on = labels_on
        self.padding = padding
        self.excluded: list = []

    # -- to implement
    def annotation(self, index: int) -> Annotation:
        raise NotImplementedError

    # -- Dataset
    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return self.item(index)[0]

    def item(self, index: int):
        """``(sample, transform)``: the sample and the :class:`~stn3dmm.photos.CropTransform` from
        the annotation's file pixels to the crop (``transform.to_source(sample["landmarks"])``
        gives the labels back in file pixels, e.g. for errors in the original image)."""
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a data set of {len(self)} items")
        index %= len(self)
        path = self.paths[index]
        ann = self.annotation(index)
        photo = read_photo(path, max_side=self.max_side)
        ow, oh = photo.original_size
        swap = photo.orientation in (5, 6, 7, 8)
        stored = (oh, ow) if swap else (ow, oh)
        m = np.eye(3)
        if self.labels_on == "stored" and photo.orientation != 1:
            m = exif_matrix(photo.orientation, stored)
        rx, ry = photo.width / ow, photo.height / oh
        m = np.array([[rx, 0.0, 0.5 * rx - 0.5], [0.0, ry, 0.5 * ry - 0.5], [0.0, 0.0, 1.0]]) @ m
        lm = np.asarray(ann.landmarks, dtype=np.float64)
        try:
            center, side = self._square(ann, m, photo)
        except ValueError as e:
            raise ReaderError(f"{path}: {e}", [(path, str(e))]) from None
        tr = square_transform(center, side, self.size, photo.size)
        if photo.size == (self.size, self.size) and np.allclose(tr.matrix, np.eye(2, 3), rtol=0, atol=1e-9):
            crop = photo.image  # already the STN input (a "cropped" item at its own size): exact
        else:
            crop = warp(photo.image, tr, self.padding)
        full = np.vstack([tr.matrix, [0.0, 0.0, 1.0]]) @ m
        transform = CropTransform(full[:2].copy(), (int(stored[0]), int(stored[1])) if self.labels_on == "stored"
                                  else (photo.original_size[0], photo.original_size[1]), (self.size, self.size))
        theta = None
        if ann.theta is not None:
            try:
                theta = transform_theta(ann.theta, full)
            except ValueError as e:
                raise ReaderError(f"{path}: {e}", [(path, str(e))]) from None
        sample = make_sample(crop, _affine(full, lm), ann.visibility, ann.identity, ann.pose, index, theta)
        return sample, transform

    def _square(self, ann: Annotation, m: np.ndarray, photo):
        if ann.whole_image:
            w, h = photo.size
            return np.array([(w - 1) / 2.0, (h - 1) / 2.0]), float(max(w, h))
        box = None
        if ann.box is not None:
            b = np.asarray(ann.box, dtype=np.float64)
            c = _affine(m, np.array([[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]]))
            box = np.concatenate([c.min(0), c.max(0)])
        if self.framing == "box" and box is not None:
            center, side = box_square(box, self.margin)
        else:
            pts = _affine(m, ann.landmarks)
            n_valid = int(np.isfinite(pts).all(1).sum())
            if n_valid < MIN_FRAMING_POINTS and box is not None:
                center, side = box_square(box, self.margin)
            else:
                framing = "landmarks" if self.framing == "box" else self.framing
                center, side = landmark_square(pts, self.landmark_set, self.margin, framing)
        if not side >= MIN_SIDE:
            raise ValueError(f"the face is framed by a {side:.1f} px square: too small")
        return center, side

    def __repr__(self) -> str:
        ls = self.landmark_set if isinstance(self.landmark_set, str) else f"{len(self.landmark_set)} vertices"
        n_id = "unknown" if self.identities is None else len(np.unique(self.identities[self.identities >= 0]))
        return (f"{type(self).__name__}({len(self)} items, landmark_set={ls}, identities={n_id}, size={self.size}, "
                f"excluded={len(self.excluded)})")


def identity_ids(keys) -> tuple[np.ndarray, list]:
    """Map identity keys (None / -1 = unknown) to ints 0..n-1 in sorted order of ``str(key)``.
    Returns ``(ids (N,) int64 with -1 for unknown, names (n,))``."""
    known = sorted({str(k) for k in keys if k is not None and not (isinstance(k, (int, np.integer)) and k < 0)})
    lut = {k: i for i, k in enumerate(known)}
    ids = np.array([-1 if k is None or (isinstance(k, (int, np.integer)) and k < 0) else lut[str(k)] for k in keys],
                   dtype=np.int64)
    return ids, known


def identities_or_none(ids) -> np.ndarray | None:
    """The identities array, or None when no item has a known identity."""
    ids = np.asarray(ids, dtype=np.int64)
    return None if ids.size == 0 or (ids < 0).all() else ids


def as_path_list(inputs) -> list[Path]:
    """A path or an iterable of paths as a list of Paths."""
    if isinstance(inputs, (str, os.PathLike)):
        return [Path(inputs)]
    return [Path(p) for p in inputs]


__all__ = ["FRAMING", "FRAMINGS", "CHECKS", "MIN_FRAMING_POINTS", "ReaderError", "Annotation", "LabelledFaces",
           "landmark_square", "box_square", "exif_matrix", "transform_theta", "check_file", "check_image",
           "report_bad", "describe_bad", "identity_ids", "identities_or_none", "as_path_list"]
