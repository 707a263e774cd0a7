"""The 300W-LP and AFLW2000-3D reader: images with a MATLAB ``.mat`` annotation beside each.

This module owns :class:`Mat68`, :func:`read_pose_mat` and :func:`identity_key`.

The real data sets
------------------
Both come from 3DDFA (Zhu et al. 2016). Every image ``X.jpg`` has ``X.mat`` beside it, with
``Pose_Para`` (1 x 7: pitch, yaw, roll in radians, then tx, ty, tz, scale) and landmarks:

* **300W-LP** (``300W_LP/{AFW,HELEN,IBUG,LFPW}[_Flip]/*.jpg``, 122,450 images of 3,837 faces,
  each face rendered at several synthetic yaws): ``pt2d`` is 2 x 68 (iBUG order). Its
  ``landmarks/`` folder (``*_pts.mat`` with ``pts_2d``/``pts_3d`` and no image) is ignored.
  ``Mat68("/data/300W_LP")`` reads all of it; ``Mat68(["/data/300W_LP/AFW", ...])`` a part.
* **AFLW2000-3D** (``AFLW2000/image0XXXX.jpg``, 2,000 faces, the usual test set): ``pt3d_68``
  is 3 x 68 (the fitted 68 points; rows x, y are used); ``pt2d`` holds AFLW's original sparse
  points (21 in the files the author has seen; the count is taken from the file) with -1 where a
  point was not labelled. ``Mat68("/data/AFLW2000", points="pt3d_68")`` gives the 68 points of
  the AFLW2000-3D protocol; ``points="pt2d"`` the original labels.

Landmark convention
-------------------
``.mat`` coordinates are MATLAB's: 1-based pixels of the image as stored, x right, y down. They
become ours by ``x - 1, y - 1``. A point with a coordinate of exactly -1 (AFLW2000-3D's marker
for "not labelled") or a non-finite one is missing (NaN, visibility 0); other negative values
are real points outside the image (300W-LP's synthesised views) and are kept. 68 points are
``landmark_set = "ibug68"`` (iBUG-300W order), 21 points ``"aflw21"``; pass ``landmark_set`` for
other counts. All items of a reader must have the same count.

Pose is ``(yaw, pitch, roll)`` in degrees in OUR convention (:data:`stn3dmm.training.data.pose.POSE_CONVENTION`),
converted exactly from ``Pose_Para``'s (pitch, yaw, roll) in radians by
:func:`~stn3dmm.training.data.pose.pose_from_pose_para`: 3DDFA's rotation is ``Rx(-pitch) Ry(-yaw) Rz(-roll)``,
so for a single angle ours is minus theirs (300W-LP's yaw > 0 turns the nose towards image -x). Identity (``identity_from="name"``): 300W-LP names end in a view
index, ``<source face>_<view>`` (``AFW_134212_1_0.jpg`` is view 0 of face ``AFW_134212_1``);
all views of one source face, in the plain and the ``_Flip`` folders alike, share an identity id
(ids number the source faces in sorted order). ``mirrored`` flags the items of a ``*_Flip``
folder (horizontally flipped copies): a flipped image flattens to the mirror of its person's
texture, so identity pairs and the consistency metric never pair it with an unflipped image
(:func:`stn3dmm.training.batches.dataset_pair_groups`). Names without a ``_<digits>`` suffix, such as
AFLW2000-3D's ``image00002``, get -1 (unknown); ``identity_from=None`` gives -1 everywhere.

With ``check="exists"`` (default) the ``.mat`` files are parsed when an item is read (300W-LP has
122k of them); ``check="header"`` or ``"decode"`` parses them all when the reader is built, leaves
out unparsable ones and keeps the parsed labels in memory.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...model.morphable import LANDMARK_SETS, SETS_BY_COUNT
from ...photos.crop import DEFAULT_MARGIN
from ...photos.io import IMAGE_EXTENSIONS
from .crop import (Annotation, LabelledFaces, ReaderError, as_path_list, check_file, check_image, identities_or_none,
                   identity_ids, report_bad)
from .pose import pose_from_pose_para
from ...core.defaults import IMAGE_SIZE

POINT_FIELDS = ("pt2d", "pt3d_68")
#: Variables that mark a .mat file as an image annotation of these data sets.
ANNOTATION_FIELDS = ("Pose_Para", "pt2d", "pt3d_68")
_VIEW = re.compile(r"^(?P<key>.+)_(?P<view>\d+)$")
#: folder-name suffix of 300W-LP's horizontally flipped copies (AFW_Flip, HELEN_Flip, ...)
FLIP_SUFFIX = "_flip"
# image extensions preferred when several files share a stem
_PREFERRED = (".jpg", ".jpeg", ".png")


def identity_key(path) -> str | None:
    """The source-face key of a 300W-LP file name (its stem without the trailing ``_<view>``), or None."""
    m = _VIEW.match(Path(path).stem)
    return m.group("key") if m else None


def is_flipped_copy(path) -> bool:
    """Whether a file lies in a 300W-LP ``*_Flip`` folder (a horizontally flipped copy)."""
    return Path(path).parent.name.lower().endswith(FLIP_SUFFIX)


def _fail(path, reason: str):
    raise ReaderError(f"{path}: {reason}", [(Path(path), reason)])


def _load_mat(path: Path, names: tuple[str, ...]) -> dict:
    """The variables ``names`` (those present) of a MATLAB file, v4-v7 (scipy) or v7.3 (HDF5)."""
    import scipy.io

    try:
        return scipy.io.loadmat(str(path), variable_names=list(names))
    except NotImplementedError:  # MATLAB v7.3: HDF5
        pass
    except Exception as e:  # scipy raises ValueError, TypeError, OSError, MatReadError, ... for broken files
        _fail(path, f"not a readable MATLAB file ({type(e).__name__}: {e})")
    try:
        import h5py

        out = {}
        with h5py.File(path, "r") as f:
            for n in names:
                if n in f:
                    out[n] = np.asarray(f[n][()]).T  # HDF5 stores MATLAB arrays transposed
        return out
    except Exception as e:
        _fail(path, f"not a readable MATLAB v7.3 file ({type(e).__name__}: {e})")


def _as_rows(a: np.ndarray, path: Path, name: str) -> np.ndarray:
    """A (2 or 3, L) landmark array (also accepts (L, 2 or 3)) -> (L, 2) x, y."""
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        _fail(path, f"{name} is not a numeric array")
    if a.ndim == 2 and a.shape[0] not in (2, 3) and a.shape[1] in (2, 3):
        a = a.T
    if a.ndim != 2 or a.shape[0] not in (2, 3) or a.shape[1] < 1:
        _fail(path, f"{name} has shape {a.shape}, expected 2 x L or 3 x L")
    return a[:2].T.copy()


def read_pose_mat(path, points: str = "pt2d") -> dict:
    """One annotation file -> ``{"landmarks": (L, 2) ours (0-based, NaN missing), "pose": (3,)
    yaw, pitch, roll in degrees (NaN if absent)}`` (module docstring).

    Raises:
        ReaderError: unreadable file, no ``points`` variable, or a malformed array.
    """
    path = Path(path)
    if points not in POINT_FIELDS:
        raise ValueError(f"points must be one of {POINT_FIELDS}, got {points!r}")
    mat = _load_mat(path, (points, "Pose_Para"))
    if points not in mat:
        _fail(path, f"has no {points!r} variable")
    lm = _as_rows(mat[points], path, points)
    missing = ~np.isfinite(lm).all(1) | (lm == -1.0).any(1)
    lm = lm - 1.0
    lm[missing] = np.nan
    pose = np.full(3, np.nan)
    if "Pose_Para" in mat:
        pp = np.asarray(mat["Pose_Para"], dtype=np.float64).ravel()
        if pp.size >= 3 and np.isfinite(pp[:3]).all():
            pose = pose_from_pose_para(*(float(v) for v in pp[:3])).numpy()
    return {"landmarks": lm, "pose": pose}


def _is_annotation(path: Path) -> bool:
    """Whether a .mat file (without an image) looks like an image annotation of these data sets."""
    import scipy.io

    try:
        names = {n for n, *_ in scipy.io.whosmat(str(path))}
    except NotImplementedError:
        try:
            import h5py

            with h5py.File(path, "r") as f:
                names = set(f.keys())
        except Exception:
            return True
    except Exception:
        return True  # unreadable: report it
    return bool(names & set(ANNOTATION_FIELDS))


def _discover(inputs) -> tuple[list[tuple[Path, Path]], list]:
    """(image, mat) pairs in a stable order, and (path, reason) of files that cannot be paired."""
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    groups: dict = {}
    explicit: set = set()
    bad = []
    for p in as_path_list(inputs):
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
        elif p.exists():
            files = [p]
            explicit.add(p)
        else:
            bad.append((p, "does not exist"))
            continue
        for q in files:
            suf = q.suffix.lower()
            kind = "mat" if suf == ".mat" else ("image" if suf in exts else None)
            if kind is None:
                if q in explicit:
                    bad.append((q, "neither an image nor a .mat file"))
                continue
            g = groups.setdefault((q.parent, q.stem), {"image": [], "mat": []})
            if q not in g[kind]:
                g[kind].append(q)
    pairs = []
    for key in sorted(groups, key=lambda k: (str(k[0]), k[1])):
        g = groups[key]
        if g["image"] and g["mat"]:
            imgs = sorted(g["image"], key=lambda q: (_PREFERRED.index(q.suffix.lower())
                                                      if q.suffix.lower() in _PREFERRED else 99, q.name))
            pairs.append((imgs[0], g["mat"][0]))
        elif g["mat"]:
            m = g["mat"][0]
            if m in explicit or _is_annotation(m):
                bad.append((m, "no image beside this annotation"))
        else:
            for q in g["image"]:
                bad.append((q, "no .mat annotation beside this image"))
    return pairs, bad


class Mat68(LabelledFaces):
    """300W-LP / AFLW2000-3D images with their ``.mat`` labels (module docstring).

    Args:
        root_or_files: a folder (searched recursively), an image or ``.mat`` file, or a list of them.
        size: crop side (224; 112 for small models).
        points: ``"pt2d"`` (default) or ``"pt3d_68"`` (rows x, y).
        identity_from: ``"name"`` (300W-LP's source face, default) or None.
        landmark_set: override the set inferred from the point count (68 -> ``"ibug68"``,
            21 -> ``"aflw21"``): a name or an array of model vertex indices.
        check: ``"exists"`` (default; labels parsed on read), ``"header"`` or ``"decode"``.
        skip_bad: leave unusable items out with a warning (True) or raise :class:`ReaderError`.
        margin, framing, max_side, labels_on, padding: see :class:`~stn3dmm.training.data.crop.LabelledFaces`.

    Attributes:
        landmark_set, identities, mirrored ((N,) bool: in a ``*_Flip`` folder), paths, mat_paths,
        excluded, identity_names.
    """

    def __init__(self, root_or_files, size: int = IMAGE_SIZE, points: str = "pt2d", *,
                 identity_from: str | None = "name", landmark_set=None, margin: float = DEFAULT_MARGIN,
                 framing: str = "mesh", check: str = "exists", skip_bad: bool = True, max_side: int | None = None,
                 labels_on: str = "stored", padding: str = "zeros"):
        super().__init__(size, margin, framing, max_side, labels_on, padding)
        if points not in POINT_FIELDS:
            raise ValueError(f"points must be one of {POINT_FIELDS}, got {points!r}")
        if identity_from not in ("name", None):
            raise ValueError(f"identity_from must be 'name' or None, got {identity_from!r}")
        if framing == "box":
            raise ValueError("these data sets have no face box: use framing='mesh' or 'landmarks'")
        self.points = points
        pairs, bad = _discover(root_or_files)
        total = len(pairs) + len(bad)
        kept, cache = [], []
        if isinstance(landmark_set, str):
            n_points = LANDMARK_SETS.get(landmark_set)
        else:
            n_points = None if landmark_set is None else len(landmark_set)
        for img, mat in pairs:
            problem, where = check_image(img, check), img
            if not problem:
                problem, where = check_file(mat, "annotation"), mat
            ann = None
            if not problem and (check != "exists" or n_points is None):
                try:
                    ann = read_pose_mat(mat, points)
                except ReaderError as e:
                    problem = e.bad[0][1] if e.bad else str(e)
                else:
                    if n_points is None:
                        n_points = len(ann["landmarks"])
                    elif len(ann["landmarks"]) != n_points:
                        problem = f"{len(ann['landmarks'])} points in {points}, the data set has {n_points}"
            if problem:
                bad.append((where, problem))
                continue
            kept.append((img, mat))
            cache.append(ann)
        self.excluded = bad
        report_bad(f"Mat68 ({points})", bad, skip_bad, total)
        if landmark_set is None:
            if n_points is None:
                landmark_set = "ibug68"  # empty data set
            elif n_points not in SETS_BY_COUNT:
                raise ReaderError(f"{n_points} landmarks per image: pass landmark_set= (a name or vertex indices)")
            else:
                landmark_set = SETS_BY_COUNT[n_points]
        self.landmark_set = landmark_set if isinstance(landmark_set, str) else np.asarray(landmark_set, np.int64)
        self.n_points = n_points
        self.paths = [str(i) for i, _ in kept]
        self.mat_paths = [str(m) for _, m in kept]
        # keep parsed labels when every one was parsed (check != "exists"); else parse on read
        self._cache = cache if check != "exists" else None
        keys = [identity_key(i) if identity_from == "name" else None for i, _ in kept]
        self._ids, self.identity_names = identity_ids(keys)
        self.identities = identities_or_none(self._ids)
        self.mirrored = np.array([is_flipped_copy(i) for i, _ in kept], dtype=bool)

    def annotation(self, index: int) -> Annotation:
        ann = self._cache[index] if self._cache is not None else read_pose_mat(self.mat_paths[index], self.points)
        lm = ann["landmarks"]
        if self.n_points is not None and len(lm) != self.n_points:
            _fail(self.mat_paths[index], f"{len(lm)} points in {self.points}, the data set has {self.n_points}")
        return Annotation(landmarks=lm, identity=int(self._ids[index]), pose=ann["pose"])


__all__ = ["Mat68", "read_pose_mat", "identity_key", "is_flipped_copy", "POINT_FIELDS"]
