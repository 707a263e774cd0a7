"""Photos whose landmarks are detected on the fly by the photo pipeline: the reader.

This module owns :class:`DetectedPhotos`.

When the reader is built, every photo is read (:func:`~stn3dmm.photos.read_photo`, downscaled
to ``max_side`` as ``stn3dmm flatten`` does) and the detector runs on it once
(:func:`~stn3dmm.photos.detect_faces`, with a progress bar); the main face (first) that has face-mesh
landmarks (and is not tiny, unless ``allow_tiny``) is kept, and its landmark targets on the
model (:meth:`~stn3dmm.photos.Face.landmarks` with ``mapping``) and its crop square
(:func:`~stn3dmm.photos.crop.face_square`) are held in memory. Photos that cannot be read, or
have no usable face, are left out and reported (one warning listing them; ``excluded`` keeps
all of them), or refused with ``skip_bad=False``. Reading an item re-reads the photo and crops
it exactly as :func:`~stn3dmm.photos.crop_face` does for ``stn3dmm flatten``.

Landmark convention
-------------------
``landmark_set`` is the map's model vertex indices (``LandmarkMap.vertices``; fixed per map and
model: about 390 for ``"dense"``, 68 for ``"ibug68"``). A sample's landmarks are the targets'
image points in crop pixels (ours: 0-based, y down); its visibility is the target weight in
[0, 1] (map weight times the detector's per-point visibility; 0 for points that do not count,
such as the iBUG jaw contour under the default ``contour_weight``). Pose is unknown (NaN).
Identity (``identity_from="folder"``): photos in one folder are one person; folders are
numbered in sorted order of their names (``identity_names``); ``None`` gives -1.

Pointing it at real data: any folder of photos, one sub-folder per person, e.g.
``DetectedPhotos("/data/my_people", model)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ...photos.crop import DEFAULT_MARGIN, CropTransform, crop_square, face_square
from ...photos.io import DEFAULT_MAX_SIDE, PhotoError, iter_photos, read_photo
from .crop import ReaderError, identities_or_none, identity_ids, report_bad
from .sample import make_sample
from ...core.defaults import IMAGE_SIZE

MAPPINGS = ("dense", "ibug68")


class DetectedPhotos(Dataset):
    """Photos with detector landmarks mapped onto the model (module docstring).

    Args:
        paths_or_dirs: photo files and/or folders (folders are listed recursively by default).
        model: the morphable model the landmark map is for.
        size: crop side (224; 112 for small models).
        mapping: ``"dense"`` (default) or ``"ibug68"``.
        identity_from: ``"folder"`` (default) or None.
        detector: a :class:`~stn3dmm.photos.FaceDetector` (default: the shared one).
        max_side: photos are read downscaled to this longer side (as ``stn3dmm flatten`` does).
        recursive: list folders recursively.
        margin: crop margin (the photo pipeline's by default).
        allow_tiny: keep faces below the detector's ``min_face``.
        skip_bad: leave out unusable photos with a warning (True) or raise :class:`ReaderError`.
        progress: show a progress bar while detecting.
        padding: crop padding outside the photo, ``"zeros"`` or ``"border"``.
        map_options: passed to :func:`~stn3dmm.photos.landmark_map.get_map`.

    Attributes:
        landmark_set: (L,) int64 model vertex indices.
        identities: (N,) int64 or None; identity_names: folder names.
        paths, excluded, ignored (files in the folders that are not photos).
    """

    def __init__(self, paths_or_dirs, model, size: int = IMAGE_SIZE, mapping: str = "dense",
                 identity_from: str | None = "folder", *, detector=None, max_side: int | None = DEFAULT_MAX_SIDE,
                 recursive: bool = True, margin: float = DEFAULT_MARGIN, allow_tiny: bool = False,
                 skip_bad: bool = True, progress: bool = True, padding: str = "zeros", map_options: dict | None = None):
        from tqdm import tqdm

        from ...photos.detect import detect_faces
        from ...photos.landmark_map import face_targets, get_map

        if mapping not in MAPPINGS:
            raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
        if identity_from not in ("folder", None):
            raise ValueError(f"identity_from must be 'folder' or None, got {identity_from!r}")
        if int(size) < 8:
            raise ValueError(f"size must be at least 8 pixels, got {size}")
        self.size, self.margin, self.max_side, self.padding = int(size), float(margin), max_side, padding
        self.mapping = mapping
        options = dict(map_options or {})
        lmap = get_map(model, mapping, **options)
        self.landmark_set = np.asarray(lmap.vertices, dtype=np.int64).copy()
        bad, ignored = [], []

        def on_skip(path, reason):
            (bad if "exist" in reason or "cannot be listed" in reason else ignored).append((path, reason))

        paths = list(iter_photos(paths_or_dirs, recursive=recursive, on_skip=on_skip))
        total = len(paths) + len(bad)
        kept, points, weights, squares, sizes = [], [], [], [], []
        for p in tqdm(paths, desc="detect faces", unit="photo", disable=not progress, dynamic_ncols=True):
            try:
                photo = read_photo(p, max_side=max_side)
            except PhotoError as e:
                bad.append((p, e.problem))
                continue
            faces = detect_faces(photo, detector)
            with_mesh = [f for f in faces if f.points is not None]
            usable = [f for f in with_mesh if allow_tiny or not f.tiny]
            if not usable:
                reason = ("no face found" if not faces else "no face landmarks found" if not with_mesh
                          else f"only tiny faces ({max(f.size for f in with_mesh):.0f} px; allow_tiny=True keeps them)")
                bad.append((p, reason))
                continue
            face = usable[0]
            t = face_targets(face, model, mapping, allow_tiny=allow_tiny, **options)
            center, side, _ = face_square(face, margin)
            kept.append(p)
            points.append(np.asarray(t.points, dtype=np.float64))
            weights.append(np.asarray(t.weights, dtype=np.float32))
            squares.append((float(center[0]), float(center[1]), float(side)))
            sizes.append((photo.width, photo.height, photo.original_size[0], photo.original_size[1]))
        self.excluded, self.ignored = bad, ignored
        report_bad(f"DetectedPhotos ({mapping})", bad, skip_bad, total)
        self.paths = [str(p) for p in kept]
        n = len(kept)
        self._points = np.asarray(points, dtype=np.float64).reshape(n, len(self.landmark_set), 2)
        self._weights = np.asarray(weights, dtype=np.float32).reshape(n, len(self.landmark_set))
        self._squares = np.asarray(squares, dtype=np.float64).reshape(n, 3)
        self._sizes = np.asarray(sizes, dtype=np.int64).reshape(n, 4)
        keys = [Path(p).parent.name if identity_from == "folder" else None for p in kept]
        self._ids, self.identity_names = identity_ids(keys)
        self.identities = identities_or_none(self._ids)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        return self.item(index)[0]

    def item(self, index: int):
        """``(sample, transform)``; ``transform`` maps the upright full-resolution photo to the crop."""
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a data set of {len(self)} items")
        index %= len(self)
        path = self.paths[index]
        photo = read_photo(path, max_side=self.max_side)
        w, h, ow, oh = (int(v) for v in self._sizes[index])
        if photo.size != (w, h) or tuple(photo.original_size) != (ow, oh):
            raise ReaderError(f"{path}: the photo changed since its face was detected ({w} x {h} then, "
                              f"{photo.width} x {photo.height} now): rebuild the data set", [(path, "changed")])
        cx, cy, side = self._squares[index]
        crop, tr = crop_square(photo.image, (cx, cy), side, self.size, padding=self.padding)
        sample = make_sample(crop, tr.apply(self._points[index]), self._weights[index], int(self._ids[index]), None,
                             index)
        rx, ry = w / ow, h / oh
        scale = np.array([[rx, 0.0, 0.5 * rx - 0.5], [0.0, ry, 0.5 * ry - 0.5], [0.0, 0.0, 1.0]])
        full = np.vstack([tr.matrix, [0.0, 0.0, 1.0]]) @ scale
        return sample, CropTransform(full[:2].copy(), (ow, oh), (self.size, self.size))

    def __repr__(self) -> str:
        n_id = "unknown" if self.identities is None else len(self.identity_names)
        return (f"DetectedPhotos({len(self)} photos, mapping={self.mapping}, {len(self.landmark_set)} landmarks, "
                f"identities={n_id}, size={self.size}, excluded={len(self.excluded)})")


__all__ = ["DetectedPhotos"]
