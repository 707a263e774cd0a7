"""Face crops for the spatial transformer's input, and the similarity that relates them to the photo.

This module owns :class:`CropTransform` (a 2 x 3 similarity between photo pixels and crop
pixels), :func:`warp` (resample an image through one; :func:`read_region` and :func:`crop_to_region`, the
photo region it reads and OpenCV's map into it), :func:`square_transform`,
:func:`crop_square` and :func:`crop_face`; and the framing of a face from its landmarks or a
face box (:func:`landmark_square` with :data:`FRAMING`, :func:`box_square`), its turn
(:func:`landmark_turn`), with the theta that
follows a crop (:func:`transform_theta`), shared by the training readers, the localiser and the
benchmark.

Coordinates follow :mod:`stn3dmm.core.conventions` in both images: x right, y down, 0-based pixel
centres. A square crop of ``side`` photo pixels centred on photo point ``c`` and resampled to
``size`` pixels, turned by ``angle`` (radians; the crop's x axis points along the photo
direction ``(cos angle, sin angle)``), is the similarity::

    x_crop = s * Rot(angle)^T (x_photo - c) + (size - 1) / 2,      s = size / side

so the photo square's outer pixel edges land on the crop's outer pixel edges. Sampling is
bilinear; when the crop shrinks the photo by 2x or more, the photo region is first box-filtered
by the integer factor ``floor(1 / s)`` so that the crop does not alias. Crop pixels whose
source lies outside the photo (``x < 0 or x > W - 1``, likewise y) are padded: ``"zeros"``
(default, black, the STN's own convention for outside samples) or ``"border"`` (the nearest
edge pixel); :meth:`CropTransform.valid_mask` tells which crop pixels are real.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from ..core.defaults import IMAGE_SIZE

#: Context added around the face box on each side, as a fraction of the box side. With the
#: face-mesh box (which the default model's mean nearly fills, centred close to the model's
#: origin), a 224 crop shows the face at about 1 px/mm with the origin near the centre: the
#: STN's start pose (t at the image centre, s = 1).
DEFAULT_MARGIN = 0.2
PADDINGS = ("zeros", "border")

#: Landmark box -> face-mesh box, per landmark set: (side factor k, centre shift fx, fy in units
#: of the landmark box's longer side; y down, so negative fy moves the square up).
FRAMING: dict[str, tuple[float, float, float]] = {
    "aflw21": (1.08, 0.0, -0.10),
    "ibug68": (1.08, 0.0, -0.09),
}
#: Fewer valid landmarks than this cannot frame a face (the face box is used if there is one).
MIN_FRAMING_POINTS = 3


@dataclass(frozen=True)
class CropTransform:
    """``x_crop = matrix[:, :2] @ x_photo + matrix[:, 2]`` (a similarity), with the sizes it joins.

    Attributes:
        matrix: (2, 3) float64.
        source_size: (width, height) of the photo it reads.
        size: (width, height) of the crop it makes.
    """

    matrix: np.ndarray
    source_size: tuple[int, int]
    size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def angle(self) -> float:
        """Rotation of the crop's x axis in the photo, radians."""
        return float(math.atan2(self.matrix[0, 1], self.matrix[0, 0]))

    def apply(self, points) -> np.ndarray:
        """Photo points ``(..., 2)`` -> crop points (NaN stays NaN)."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inverse(self) -> "CropTransform":
        """The transform from crop pixels back to photo pixels."""
        a_inv = np.linalg.inv(self.matrix[:, :2])
        m = np.concatenate([a_inv, -(a_inv @ self.matrix[:, 2])[:, None]], axis=1)
        return CropTransform(m, self.size, self.source_size)

    def to_source(self, points) -> np.ndarray:
        """Crop points ``(..., 2)`` -> photo points."""
        return self.inverse().apply(points)

    def then(self, other: "CropTransform") -> "CropTransform":
        """The transform that applies ``self`` and then ``other``."""
        a = other.matrix[:, :2] @ self.matrix[:, :2]
        b = other.matrix[:, :2] @ self.matrix[:, 2] + other.matrix[:, 2]
        return CropTransform(np.concatenate([a, b[:, None]], axis=1), self.source_size, other.size)

    def valid_mask(self) -> np.ndarray:
        """(h, w) bool: crop pixels whose source point lies inside the photo (not padding)."""
        w, h = self.size
        sw, sh = self.source_size
        eps = 1e-6

        def inside(src):
            return ((src[..., 0] >= -eps) & (src[..., 0] <= sw - 1 + eps)
                    & (src[..., 1] >= -eps) & (src[..., 1] <= sh - 1 + eps))

        # the crop's pixels map to a parallelogram: all inside the photo when its corners are
        if inside(self.to_source(np.array([[0.0, 0.0], [w - 1.0, 0.0], [0.0, h - 1.0], [w - 1.0, h - 1.0]]))).all():
            return np.ones((h, w), bool)
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        return inside(self.to_source(np.stack([u, v], axis=-1)))


def reduced(img: np.ndarray, side: int) -> tuple[np.ndarray, int]:
    """An antialiased copy of a uint8 (H, W, 3) image reduced by the smallest integer factor ``k``
    that brings its longer side to at most ``side`` (box filter; Pillow's reduce is fast), and
    ``k``. Reduced pixel j is centred at full-size pixel ``k j + (k - 1) / 2``.

    Examples:
        >>> small, k = reduced(np.zeros((600, 500, 3), np.uint8), 256)
        >>> small.shape, k
        ((200, 167, 3), 3)
    """
    k = max(1, math.ceil(max(img.shape[:2]) / side))
    if k == 1:
        return img, 1
    from PIL import Image

    return np.asarray(Image.fromarray(img).reduce(k)), k


def square_transform(center, side: float, size: int, source_size, angle: float = 0.0) -> CropTransform:
    """The similarity of a ``side``-pixel square around photo point ``center`` to a ``size`` crop."""
    if not (side > 0 and size >= 1):
        raise ValueError(f"need side > 0 and size >= 1, got side={side}, size={size}")
    s = size / float(side)
    c, si = math.cos(angle), math.sin(angle)
    a = s * np.array([[c, si], [-si, c]])
    half = (size - 1) / 2.0
    b = np.array([half, half]) - a @ np.asarray(center, dtype=np.float64)
    return CropTransform(np.concatenate([a, b[:, None]], axis=1), tuple(int(v) for v in source_size),
                         (int(size), int(size)))


def _as_chw(image) -> torch.Tensor:
    """(C, H, W) float tensor from numpy (H, W[, C]) or torch (C, H, W) / (H, W); uint8 is divided by 255."""
    if isinstance(image, torch.Tensor):
        t = image if image.ndim == 3 else image[None]
        return t.float() / 255.0 if t.dtype == torch.uint8 else (t if t.is_floating_point() else t.float())
    a = image if image.ndim == 3 else image[:, :, None]
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)
    return t.float() / 255.0 if a.dtype == np.uint8 else t.float()


def _box_reduce(region: np.ndarray, k: int) -> torch.Tensor:
    """(C, ceil(H / k), ceil(W / k)) float32: :func:`_box_reduce_hwc`, channels first."""
    return torch.from_numpy(_box_reduce_hwc(region, k)).permute(2, 0, 1).contiguous()


def _box_reduce_hwc(region: np.ndarray, k: int) -> np.ndarray:
    """(ceil(H / k), ceil(W / k), C) float32: the mean of each k x k block of a numpy region
    (H, W[, C]) (uint8 read as value / 255), blocks cut by the edge averaged over their pixels:
    ``avg_pool2d(k, stride=k, ceil_mode=True)`` to float rounding. The whole blocks by OpenCV's
    area resize (an integer factor is its exact block mean; several times faster than Pillow's
    ``reduce`` or torch's pooling on a photo-sized region, ``benchmarks/pixels.py``), the cut ones by numpy.

    Examples:
        >>> r = np.arange(30, dtype=np.float32).reshape(5, 6)
        >>> _box_reduce_hwc(r, 2)[:, 0, 0].tolist()      # the last row's blocks have two pixels
        [3.5, 15.5, 24.5]
    """
    import cv2

    src = region if region.ndim == 3 else region[:, :, None]

    def as_float(part):                  # float32 (a view where it is already), uint8 read as value / 255
        if src.dtype != np.uint8:
            return np.asarray(part, np.float32)
        out = part.astype(np.float32)
        out /= 255.0
        return out

    h, w, c = src.shape
    hq, wq = h // k, w // k
    rw, rh = w - wq * k, h - hq * k      # the cut blocks' width and height
    out = np.empty((hq + (rh > 0), wq + (rw > 0), c), np.float32)
    if hq and wq:
        whole = as_float(src[:hq * k, :wq * k])     # OpenCV reads rows of any stride: no copy needed
        out[:hq, :wq] = cv2.resize(whole, (wq, hq), interpolation=cv2.INTER_AREA).reshape(hq, wq, c)
    if rw and hq:                        # the last column of blocks
        out[:hq, wq] = as_float(src[:hq * k, wq * k:]).reshape(hq, k, rw, c).mean((1, 2))
    if rh and wq:                        # the last row of blocks
        out[hq, :wq] = as_float(src[hq * k:, :wq * k]).reshape(rh, wq, k, c).mean((0, 2))
    if rh and rw:
        out[hq, wq] = as_float(src[hq * k:, wq * k:]).reshape(-1, c).mean(0)
    return out


def read_region(transform: CropTransform) -> tuple[int, tuple[int, int, int, int]]:
    """What :func:`warp` reads of the photo for ``transform``: ``(k, (x0, y0, x1, y1))``, the box
    filter's integer shrink factor and the photo pixels ``[x0, x1) x [y0, y1)`` the crop's samples
    draw on (a similarity maps the crop's corner pixels to the extremes), with slack for the box
    filter and bilinear interpolation, clipped to the photo.

    Examples:
        >>> read_region(square_transform((50.0, 50.0), 20.0, 10, (100, 100)))   # shrunk 2x
        (2, (38, 38, 63, 63))
    """
    w, h = transform.size
    sw, sh = transform.source_size
    corners = transform.inverse().apply(np.array([[0.0, 0.0], [w - 1.0, 0.0], [0.0, h - 1.0], [w - 1.0, h - 1.0]]))
    k = max(1, int(math.floor(1.0 / transform.scale + 1e-9)))
    lo, hi = corners.min(0), corners.max(0)
    x0 = min(max(0, int(math.floor(lo[0])) - k - 1), sw - 1)
    y0 = min(max(0, int(math.floor(lo[1])) - k - 1), sh - 1)
    x1 = max(min(sw, int(math.ceil(hi[0])) + k + 2), x0 + 1)
    y1 = max(min(sh, int(math.ceil(hi[1])) + k + 2), y0 + 1)
    return k, (x0, y0, x1, y1)


def crop_to_region(transform: CropTransform, origin, k: int) -> np.ndarray:
    """(2, 3) float64: crop pixel -> pixel of the photo region whose top-left pixel is photo pixel
    ``origin``, box-filtered by ``k`` (reduced pixel j centred at region pixel ``k j + (k - 1) / 2``),
    all at pixel centres: OpenCV's inverse map (``WARP_INVERSE_MAP``)."""
    inv = transform.inverse().matrix
    off = np.asarray(origin, np.float64) + (k - 1) / 2.0
    return np.concatenate([inv[:, :2] / k, ((inv[:, 2] - off) / k)[:, None]], 1)


def _warp_opencv(region: np.ndarray, k: int, origin: tuple, transform: CropTransform, padding: str) -> np.ndarray:
    """:func:`warp`'s resampling of a numpy ``region`` of the photo whose top-left pixel is photo pixel
    ``origin``: the box filter by ``k`` (:func:`_box_reduce_hwc`), then OpenCV's bilinear
    ``warpAffine`` in float32 (the torch path's values to 1e-5, a few thousandths of a level; several times
    faster on a 224 px crop; on a machine with few cores torch's thread pool also runs slowly
    beside mediapipe's threads), padded as ``padding`` says."""
    import cv2

    if k > 1:
        src = _box_reduce_hwc(region, k)
    else:
        src = region.astype(np.float32) / 255.0 if region.dtype == np.uint8 else np.asarray(region, np.float32)
    to_region = crop_to_region(transform, origin, k)
    border = cv2.BORDER_CONSTANT if padding == "zeros" else cv2.BORDER_REPLICATE
    out = cv2.warpAffine(np.ascontiguousarray(src), to_region, tuple(transform.size),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border, borderValue=0)
    if out.ndim < src.ndim:                   # OpenCV drops a single channel
        out = out[:, :, None]
    if padding == "zeros":                    # outside the photo (x < 0 or x > W - 1, likewise y): 0
        inside = transform.valid_mask()
        if not inside.all():
            out *= inside[..., None] if out.ndim == 3 else inside
    return out if region.ndim == 3 else out.reshape(out.shape[:2])


def image_size(image) -> tuple[int, int]:
    """(width, height) of a numpy (H, W[, C]) or torch (C, H, W) / (H, W) image."""
    if isinstance(image, torch.Tensor):
        return int(image.shape[-1]), int(image.shape[-2])
    return int(image.shape[1]), int(image.shape[0])


def warp(image, transform: CropTransform, padding: str = "zeros"):
    """Resample ``image`` into the crop of ``transform`` (see the module docstring).

    Args:
        image: numpy (H, W) or (H, W, C), uint8 (read as value / 255) or float; or a torch
            tensor (C, H, W) or (H, W).
        transform: photo -> crop similarity; its ``source_size`` must be the image's size.
        padding: ``"zeros"`` or ``"border"``.

    Returns:
        numpy (h, w[, C]) float32 for numpy input, torch (C, h, w) (or (h, w)) for torch input.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    is_torch = isinstance(image, torch.Tensor)
    if not is_torch:
        image = np.asarray(image)
    sw, sh = image_size(image)
    if (sw, sh) != tuple(transform.source_size):
        raise ValueError(f"image is {sw} x {sh} but the transform reads a {transform.source_size} image")
    w, h = transform.size
    inv = transform.inverse()
    k, (x0, y0, x1, y1) = read_region(transform)
    region = image[..., y0:y1, x0:x1] if is_torch else image[y0:y1, x0:x1]
    if not is_torch and (image.ndim == 2 or image.shape[2] <= 4):
        return _warp_opencv(region, k, (x0, y0), transform, padding)
    # box filter: pooled pixel (i, j) is centred at photo (x0 + k j + (k-1)/2, y0 + k i + (k-1)/2)
    if k > 1 and not is_torch:
        t = _box_reduce(region, k)
    else:
        t = _as_chw(region)
        if k > 1:
            t = F.avg_pool2d(t[None], k, stride=k, ceil_mode=True)[0]
    rh, rw = t.shape[-2:]
    # one affine map: crop normalised -> crop pixels -> photo pixels -> pooled pixels -> pooled
    # normalised, all with align_corners=True (stn3dmm.core.conventions)
    to_pixels = np.array([[(w - 1) / 2.0, 0.0, (w - 1) / 2.0], [0.0, (h - 1) / 2.0, (h - 1) / 2.0], [0, 0, 1]])
    photo = np.vstack([inv.matrix, [0.0, 0.0, 1.0]])
    ax, ay = 2.0 / (k * max(rw - 1, 1)), 2.0 / (k * max(rh - 1, 1))
    to_pooled = np.array([[ax, 0.0, -ax * (x0 + (k - 1) / 2.0) - 1.0], [0.0, ay, -ay * (y0 + (k - 1) / 2.0) - 1.0],
                          [0, 0, 1]])
    theta = torch.from_numpy((to_pooled @ photo @ to_pixels)[:2]).to(t.dtype)
    grid = F.affine_grid(theta[None], [1, t.shape[0], h, w], align_corners=True)
    out = F.grid_sample(t[None], grid, mode="bilinear", padding_mode=padding, align_corners=True)[0]
    if padding == "zeros":  # outside the photo (x < 0 or x > W - 1, likewise y) is padding
        lo_n = to_pooled[:2] @ np.array([0.0, 0.0, 1.0])
        hi_n = to_pooled[:2] @ np.array([sw - 1.0, sh - 1.0, 1.0])
        e = 1e-6 * min(ax, ay)
        gx, gy = grid[0, ..., 0], grid[0, ..., 1]
        inside = (gx >= lo_n[0] - e) & (gx <= hi_n[0] + e) & (gy >= lo_n[1] - e) & (gy <= hi_n[1] + e)
        out = out * inside.to(out.dtype)
    if is_torch:
        return out if image.ndim == 3 else out[0]
    out = out.permute(1, 2, 0).numpy().astype(np.float32, copy=False)
    return out if image.ndim == 3 else out[:, :, 0]


def crop_square(image, center, side: float, size: int = IMAGE_SIZE, *, angle: float = 0.0,
                padding: str = "zeros"):
    """Crop a ``side``-pixel square around ``center`` (turned by ``angle``) to ``size`` pixels.

    Returns ``(crop, transform)``: the crop as :func:`warp` returns it and the photo -> crop
    :class:`CropTransform`.
    """
    t = square_transform(center, side, size, image_size(image), angle)
    return warp(image, t, padding), t


def face_square(face, margin: float = DEFAULT_MARGIN, *, align: bool = False):
    """(center (2,), side, angle) of the square crop around a detected face.

    The face box is the bounding box of the face's landmark points when it has them, else its
    detector box; the square has the box's longer side plus ``margin`` times it on each side,
    centred on the box. With ``align``, the square turns so that the eyes lie on a horizontal
    line (from the landmark eye corners, or the detector's eye keypoints).
    """
    pts = getattr(face, "points", None)
    if pts is not None:
        pts = np.asarray(pts, dtype=np.float64)
        lo, hi = pts.min(0), pts.max(0)
    else:
        b = np.asarray(face.bbox, dtype=np.float64)
        lo, hi = b[:2], b[2:]
    center = (lo + hi) / 2.0
    side = float(max(hi - lo)) * (1.0 + 2.0 * margin)
    angle = 0.0
    if align:
        eyes = face.eye_centers() if hasattr(face, "eye_centers") else None
        if eyes is not None and np.isfinite(eyes).all():     # a face without eye points stays unturned
            d = eyes[1] - eyes[0]  # image-left eye -> image-right eye
            angle = float(math.atan2(d[1], d[0]))
    return center, max(side, 1.0), angle


def crop_face(image, face, size: int = IMAGE_SIZE, margin: float = DEFAULT_MARGIN, *, align: bool = False,
              padding: str = "zeros"):
    """Crop a detected face for the STN: ``(crop (size, size, 3), transform)``.

    See :func:`face_square` for the square and the module docstring for sampling and padding.
    ``transform`` maps photo pixels to crop pixels (``transform.apply``) and back
    (``transform.to_source``); ``face.transformed(transform)`` gives the face (box, landmarks)
    in crop coordinates.

    Args:
        image: numpy (H, W, 3) (uint8, or float in [0, 1]) or torch (3, H, W); a
            :class:`~stn3dmm.photos.io.Photo` is accepted too (its ``image``).
        face: a :class:`~stn3dmm.photos.detect.Face` (anything with ``bbox`` and ``points``).
        size: crop side in pixels (the STN input, 224 by default).
        margin: context on each side, as a fraction of the face box side.
        align: turn the crop so that the eyes are level.
        padding: ``"zeros"`` or ``"border"``.
    """
    image = getattr(image, "image", image)
    center, side, angle = face_square(face, margin, align=align)
    return crop_square(image, center, side, size, angle=angle, padding=padding)




# ----------------------------------------------------------------------------- framing from landmarks

def landmark_square(points, landmark_set=None, margin: float = DEFAULT_MARGIN, framing: str = "mesh"):
    """(centre (2,), side) of the square crop around labelled landmarks (module docstring).

    Args:
        points: (L, 2) pixels, NaN rows ignored.
        landmark_set: ``"aflw21"``, ``"ibug68"`` (framing factors from :data:`FRAMING`) or
            anything else (the plain landmark box).
        margin: context on each side, a fraction of the (mesh-equivalent) box side.
        framing: ``"mesh"`` (default) or ``"landmarks"``.

    Raises:
        ValueError: fewer than :data:`MIN_FRAMING_POINTS` valid points, or a degenerate box.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    p = p[np.isfinite(p).all(1)]
    if len(p) < MIN_FRAMING_POINTS:
        raise ValueError(f"only {len(p)} valid landmarks: at least {MIN_FRAMING_POINTS} are needed to frame the face")
    lo, hi = p.min(0), p.max(0)
    d = float(max(hi - lo))
    if not d > 0:
        raise ValueError("the landmarks all lie on one point: cannot frame the face")
    k, fx, fy = (1.0, 0.0, 0.0)
    if framing == "mesh" and isinstance(landmark_set, str):
        k, fx, fy = FRAMING.get(landmark_set, (1.0, 0.0, 0.0))
    elif framing not in ("mesh", "landmarks"):
        raise ValueError(f"framing must be 'mesh' or 'landmarks' here, got {framing!r}")
    center = (lo + hi) / 2.0 + np.array([fx, fy]) * d
    return center, d * k * (1.0 + 2.0 * margin)


def landmark_square_of_box(box, landmark_set=None) -> tuple[np.ndarray, float]:
    """:func:`landmark_square` of a box ``(x0, y0, x1, y1)`` taken as the landmarks' own box
    (a benchmark's face square, or a detector box mapped onto the landmarks' box)."""
    b = np.asarray(box, dtype=np.float64)
    return landmark_square(np.array([b[:2], b[2:], [b[0], b[3]]]), landmark_set)


def landmark_turn(points68) -> float:
    """The turn of a face in the photo from its iBUG-68 points (radians, as :func:`crop_square`'s
    ``angle``: a crop so turned shows the face upright): the direction from the mouth's mean point
    (points 48-67) to the eyes' (36-47), 0 where it points up the photo, positive clockwise as
    seen (x right, y down).

    Examples:
        >>> p = np.zeros((68, 2)); p[36:48] = [50.0, 40.0]; p[48:68] = [50.0, 60.0]   # eyes above the mouth
        >>> landmark_turn(p), round(landmark_turn(p[:, ::-1]), 4)   # upright; lying with its top to the left
        (0.0, -1.5708)
    """
    p = np.asarray(points68, dtype=np.float64)
    up = p[36:48].mean(0) - p[48:68].mean(0)
    return math.atan2(float(up[0]), float(-up[1]))


def box_square(box, margin: float = DEFAULT_MARGIN):
    """(centre (2,), side) of the square around a face box ``(x0, y0, x1, y1)`` (as
    :func:`stn3dmm.photos.crop.face_square` does with a detector box)."""
    b = np.asarray(box, dtype=np.float64)
    if not (np.isfinite(b).all() and b[2] > b[0] and b[3] > b[1]):
        raise ValueError(f"invalid face box {b.tolist()}")
    return (b[:2] + b[2:]) / 2.0, float(max(b[2:] - b[:2])) * (1.0 + 2.0 * margin)


def transform_theta(theta, matrix: np.ndarray):
    """Re-express a ground-truth theta ``[r, t, logs, alpha]`` (our convention, ``exp`` scale
    map) for an image mapped by the 2 x 3 ``matrix``, which must be a scale-and-shift (no
    rotation or flip): ``t -> A t + b``, ``logs -> logs + ln(scale)``."""
    th = np.asarray(theta, dtype=np.float64).copy()
    a = np.asarray(matrix, dtype=np.float64)[:2]
    sx, sy = a[0, 0], a[1, 1]
    if abs(a[0, 1]) > 1e-6 * abs(sx) or abs(a[1, 0]) > 1e-6 * abs(sx) or sx <= 0 or abs(sx - sy) > 2e-3 * sx:
        raise ValueError("theta can only follow a crop that scales and shifts the image (no rotation, flip, "
                         "EXIF orientation or uneven scaling)")
    th[3:5] = a[:, :2] @ th[3:5] + a[:, 2]
    th[5] = th[5] + math.log(0.5 * (sx + sy))
    return th


__all__ = ["reduced", "DEFAULT_MARGIN", "PADDINGS", "CropTransform", "image_size", "square_transform", "warp",
           "read_region", "crop_to_region", "crop_square", "face_square", "crop_face",
           "FRAMING", "MIN_FRAMING_POINTS", "landmark_square", "landmark_square_of_box", "box_square",
           "transform_theta"]
