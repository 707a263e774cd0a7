"""dlib's CNN face detector (MMOD), the detector's second look at faces turned to profile.

BlazeFace (:mod:`.detect`) misses some faces turned beyond 60 degrees even on the mirrored and
padded photo, and gives others weak boxes several times too large. dlib's max-margin object
detector (King 2015, "Max-Margin Object Detection"), a CNN trained on faces at many poses, finds
most of them, but it is some ten times slower, so :class:`~.detect.FaceDetector` runs it only
where nothing else found a face, and on a crop around a doubtful main face. The model
file, ``mmod_human_face_detector.dat``, comes inside the ``face_recognition_models`` package
from PyPI (run with ``dlib-bin``); nothing is downloaded.

Its boxes are framed differently from BlazeFace's: they are mapped to BlazeFace's framing
(:data:`MMOD_TO_BLAZEFACE`) so that everything after detection (the face mesh's crop, the
localiser's first crop) sees the box it was made for. It gives no keypoints: those are NaN.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np

from .crop import reduced

#: BlazeFace's box from dlib's: for a dlib box of side ``d`` and centre ``c``, a square of side
#: ``k d`` centred on ``c + (fx, fy) d``. Medians over 477 faces both detectors found: 297 in the
#: off-centre composites of ``benchmarks/main_face.py`` (held-out head renders, |yaw| 0-90, faces
#: about 90 px; alone 1.03, 0.06, 0.10) and 180 in LFW photos enlarged 1-3 times (near-frontal,
#: 95-300 px; alone 1.09, 0.03, 0.13): ``python benchmarks/main_face.py --calibrate-dlib``.
#: dlib's box sizes come in steps (its image pyramid), so one face's may be 10 % off.
MMOD_TO_BLAZEFACE = (1.05, 0.05, 0.11)
#: The photo is reduced by an integer factor to at most this many pixels a side first (dlib's
#: window is 80 pixels: faces down to an eighth of the reduced photo's side are found).
MMOD_SIDE = 640


def mmod_model_path() -> Path:
    """The MMOD model file inside the installed ``face_recognition_models`` package.

    Raises:
        ImportError: the package is not installed.
    """
    # find_spec, not import: the package's __init__ imports pkg_resources, gone from new setuptools
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ImportError("dlib's face detector needs pip install face_recognition_models==0.3.0 dlib-bin")
    path = Path(spec.origin).parent / "models" / "mmod_human_face_detector.dat"
    if not path.is_file():
        raise ImportError(f"{path}: missing from the face_recognition_models package")
    return path


def to_blazeface_box(box: np.ndarray, framing=MMOD_TO_BLAZEFACE) -> np.ndarray:
    """A dlib box (x0, y0, x1, y1) framed as BlazeFace frames the same face.

    Examples:
        >>> to_blazeface_box(np.array([0.0, 0.0, 100.0, 100.0]), (1.0, 0.1, 0.0))
        array([ 10.,   0., 110., 100.])
    """
    k, fx, fy = framing
    box = np.asarray(box, dtype=np.float64)
    d = float(max(box[2] - box[0], box[3] - box[1]))
    centre = (box[:2] + box[2:]) / 2 + np.array([fx, fy]) * d
    return np.concatenate([centre - k * d / 2, centre + k * d / 2])


class MmodDetector:
    """dlib's CNN face detector on an RGB uint8 image: ``[(box (4,), score, keypoints (6, 2) NaN)]``,
    boxes in image pixels, framed as BlazeFace's (``framing``: see :func:`to_blazeface_box`). Loads the model on first use; ``available`` is
    False (with one warning) where dlib or the model file is missing."""

    def __init__(self, side: int = MMOD_SIDE, n_keypoints: int = 6):
        self.side, self.n_keypoints = int(side), int(n_keypoints)
        self._net = None
        self.available = True

    def _load(self):
        if self._net is None and self.available:
            try:
                import dlib

                self._net = dlib.cnn_face_detection_model_v1(str(mmod_model_path()))
            except ImportError as e:
                self.available = False
                warnings.warn(f"dlib's face detector is unavailable, profiles BlazeFace misses stay missed: {e}",
                              stacklevel=3)
        return self._net

    def __call__(self, img: np.ndarray, framing=MMOD_TO_BLAZEFACE) -> list:
        net = self._load()
        if net is None:
            return []
        img, k = reduced(img, self.side)
        nan = np.full((self.n_keypoints, 2), np.nan)
        out = []
        for d in net(np.ascontiguousarray(img), 0):
            r = d.rect
            box = np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=np.float64) * k + (k - 1) / 2.0
            out.append((to_blazeface_box(box, framing), float(np.clip(d.confidence, 0.0, 1.0)), nan.copy()))
        return out


__all__ = ["MMOD_SIDE", "MMOD_TO_BLAZEFACE", "MmodDetector", "mmod_model_path", "to_blazeface_box"]
