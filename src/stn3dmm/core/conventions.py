"""Coordinate, parameter and scale conventions of stn3dmm, and converters from the original release.

This module owns the ONE image convention used everywhere in stn3dmm and every conversion
between it and the conventions of the 2017 MATLAB/MatConvNet release ("the original").

Image convention (ours)
-----------------------
* x points right, y points DOWN, both 0-based, in pixels.
* Pixel centres sit at integer coordinates: the pixel in row ``i``, column ``j`` of an image
  of height ``H`` and width ``W`` covers ``[j - 0.5, j + 0.5] x [i - 0.5, i + 0.5]`` and its
  centre is ``(x, y) = (j, i)``. The image spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``; the
  centres of the first and last pixels are at 0 and ``W - 1`` (resp. ``H - 1``).
* Normalised coordinates for :func:`torch.nn.functional.grid_sample` use
  ``align_corners=True``, which maps -1 and +1 to the centres of the first and last pixels::

      x_n = 2 x / (W - 1) - 1,      y_n = 2 y / (H - 1) - 1

  (see :func:`pixel_to_normalized` / :func:`normalized_to_pixel`). A point is *inside* the
  image when ``0 <= x <= W - 1`` and ``0 <= y <= H - 1``: there bilinear sampling reads only
  real pixels. Anything further out is treated as outside (sampled as 0, masked invisible).

Model frame
-----------
The morphable model is in millimetres with x right (as seen by a viewer in front of the face),
y UP and z towards the viewer (right-handed). The rotation ``R(r)`` acts in this y-up frame,
exactly as in the original, so ``r`` keeps its original meaning (a positive ``r_y`` turns the
nose towards +x, i.e. towards the image's right). Because the image y axis points down, the
orthographic projection flips y::

    P_x =  s * X'_x + t_x
    P_y = -s * X'_y + t_y          with X' = X R^T

theta
-----
``theta`` has shape ``(B, 6 + K + E)`` and the original's order
``[r (3), t (2), logs (1), alpha_id (K), alpha_exp (E)]``; ``t`` is in our image convention.

Scale maps
----------
``logs`` is turned into the positive scale ``s`` (pixels per millimetre) by one of

* ``"exp"`` (our default): ``s = exp(logs)`` -- the map the paper writes; gradients have the
  same magnitude for enlarging and shrinking, and ``logs = 0`` is ``s = 1``.
* ``"original"``: ``s = 0.99 ** logs`` -- the map of the released code (``logs = 0`` is also
  ``s = 1``; larger ``logs`` means a smaller face).

:func:`convert_log_scale` converts between them: ``logs_exp = logs_original * ln(0.99)``.

The original's conventions
--------------------------
Images were 224 x 224, 1-based, and landmark labels were stored as ``(x, y_up)`` with
``x`` the 1-based column and ``y_up = H + 1 - row`` (row 1-based). Converting a point::

    ours.x = x - 1,         ours.y = H - y_up
    x = ours.x + 1,         y_up = H - ours.y

The original's ``t`` lives in that same y-up 1-based frame and its projection did not flip y
(``P_orig = s X'_xy + t_orig``), so converting ``theta`` maps ``t`` exactly like a point and
leaves ``r`` and ``alpha`` alone (see :func:`theta_from_original`).

Its grid layer normalised points by ``(x - 112) / 112`` in that frame, which samples the image
up to a pixel away from the projected point; ours samples the point itself.
:func:`pixel_to_normalized_original` gives the original's grid (``sampling_grid(...,
convention="original")``).
"""

from __future__ import annotations

import math

import torch
from .defaults import IMAGE_SIZE

#: Width of the pose part of theta: r (3), t (2), logs (1).
N_POSE = 6
#: Slices into theta.
R_SLICE = slice(0, 3)
T_SLICE = slice(3, 5)
LOGS_INDEX = 5

SCALE_MAPS = ("exp", "original")
#: Sampling-grid normalisations: ours (align_corners, the point itself) and the original's.
GRID_CONVENTIONS = ("ours", "original")
DEFAULT_SCALE = "exp"
_LN_099 = math.log(0.99)

#: The original's input size (H, W) and initial translation (its image centre, y-up 1-based).
ORIGINAL_IMAGE_SIZE = (IMAGE_SIZE, IMAGE_SIZE)
ORIGINAL_START_T = (IMAGE_SIZE / 2, IMAGE_SIZE / 2)
#: The original's initial logs (s = 0.99 ** 1 = 0.99).
ORIGINAL_START_LOGS = 1.0


def _check_scale_map(mode: str) -> str:
    if mode not in SCALE_MAPS:
        raise ValueError(f"scale map must be one of {SCALE_MAPS}, got {mode!r}")
    return mode


def _tensor(x) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


def scale_from_log(logs: torch.Tensor, mode: str = DEFAULT_SCALE) -> torch.Tensor:
    """Scale ``s`` (px/mm) from ``logs`` (any shape) under a scale map (``"exp"`` or ``"original"``)."""
    _check_scale_map(mode)
    logs = _tensor(logs)
    return torch.exp(logs) if mode == "exp" else torch.exp(logs * _LN_099)


def log_from_scale(s: torch.Tensor, mode: str = DEFAULT_SCALE) -> torch.Tensor:
    """Inverse of :func:`scale_from_log` (``s`` must be positive)."""
    _check_scale_map(mode)
    s = _tensor(s)
    return torch.log(s) if mode == "exp" else torch.log(s) / _LN_099


def convert_log_scale(logs: torch.Tensor, from_mode: str, to_mode: str) -> torch.Tensor:
    """Re-express ``logs`` given under ``from_mode`` so that it gives the same ``s`` under ``to_mode``."""
    _check_scale_map(from_mode)
    _check_scale_map(to_mode)
    logs = _tensor(logs)
    if from_mode == to_mode:
        return logs.clone()
    return logs * _LN_099 if from_mode == "original" else logs / _LN_099


def points_from_original(points: torch.Tensor, height: int) -> torch.Tensor:
    """Original (1-based, y up) points ``(..., 2)`` -> ours (0-based, y down). NaN stays NaN."""
    p = _tensor(points)
    return torch.stack((p[..., 0] - 1.0, height - p[..., 1]), dim=-1)


def points_to_original(points: torch.Tensor, height: int) -> torch.Tensor:
    """Our points ``(..., 2)`` -> the original's (1-based x, y_up = H - y). NaN stays NaN."""
    p = _tensor(points)
    return torch.stack((p[..., 0] + 1.0, height - p[..., 1]), dim=-1)


def theta_from_original(theta: torch.Tensor, height: int, scale: str = DEFAULT_SCALE) -> torch.Tensor:
    """An original theta ``(..., 6 + D)`` (t in its y-up 1-based frame, ``s = 0.99 ** logs``) -> ours.

    ``r`` and ``alpha`` are unchanged; ``t`` is converted like a point; ``logs`` is re-expressed
    for the scale map ``scale`` (``"exp"`` by default, or ``"original"`` to keep it).
    """
    th = _tensor(theta).clone()
    th[..., T_SLICE] = points_from_original(th[..., T_SLICE], height)
    th[..., LOGS_INDEX] = convert_log_scale(th[..., LOGS_INDEX], "original", scale)
    return th


def theta_to_original(theta: torch.Tensor, height: int, scale: str = DEFAULT_SCALE) -> torch.Tensor:
    """Inverse of :func:`theta_from_original`: our theta (scale map ``scale``) -> the original's."""
    th = _tensor(theta).clone()
    th[..., T_SLICE] = points_to_original(th[..., T_SLICE], height)
    th[..., LOGS_INDEX] = convert_log_scale(th[..., LOGS_INDEX], scale, "original")
    return th


def original_start_theta(n_params: int, height: int = ORIGINAL_IMAGE_SIZE[0], scale: str = DEFAULT_SCALE,
                         dtype=None, device=None) -> torch.Tensor:
    """The original's starting pose (r = 0, t = (112, 112) y-up 1-based, logs = 1) in our
    convention, with all shape coefficients zero: a ``(n_params,)`` vector."""
    th = torch.zeros(n_params, dtype=dtype or torch.get_default_dtype(), device=device)
    th[T_SLICE] = torch.tensor(ORIGINAL_START_T, dtype=th.dtype, device=device)
    th[LOGS_INDEX] = ORIGINAL_START_LOGS
    return theta_from_original(th, height, scale)


def pixel_to_normalized(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates ``(..., 2)`` (x, y) -> ``grid_sample`` coordinates with ``align_corners=True``."""
    if height < 2 or width < 2:
        raise ValueError(f"images must be at least 2 x 2 pixels, got {height} x {width}")
    sx = 2.0 / (width - 1)
    sy = 2.0 / (height - 1)
    return torch.stack((points[..., 0] * sx - 1.0, points[..., 1] * sy - 1.0), dim=-1)


def normalized_to_pixel(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`pixel_to_normalized`."""
    return torch.stack(((grid[..., 0] + 1.0) * (width - 1) / 2.0, (grid[..., 1] + 1.0) * (height - 1) / 2.0), dim=-1)


def pixel_to_normalized_original(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Our pixel coordinates ``(..., 2)`` -> the normalised grid the original's grid layer made.

    The original normalised its points, held in its 1-based, y-up frame, by the centre of its
    224 x 224 input: ``g_x = (x_1 - 112) / 112``, ``g_y = -(y_up - 112) / 112``. With 112 read as
    half the image size and ``x_1 = x + 1``, ``y_up = H - y`` (:func:`points_to_original`)::

        g_x = 2 (x + 1) / W - 1,      g_y = 2 y / H - 1

    Its sampler (MatConvNet's) reads these like ``grid_sample(align_corners=True)``, so the
    original samples column ``(x + 1)(W - 1) / W`` and row ``y (H - 1) / H`` for a point at
    ``(x, y)``: up to a pixel away from the point, which :func:`pixel_to_normalized` samples.
    """
    if height < 2 or width < 2:
        raise ValueError(f"images must be at least 2 x 2 pixels, got {height} x {width}")
    return torch.stack((2.0 * (points[..., 0] + 1.0) / width - 1.0, 2.0 * points[..., 1] / height - 1.0), dim=-1)


__all__ = [
    "N_POSE", "R_SLICE", "T_SLICE", "LOGS_INDEX", "SCALE_MAPS", "DEFAULT_SCALE",
    "ORIGINAL_IMAGE_SIZE", "ORIGINAL_START_T", "ORIGINAL_START_LOGS",
    "scale_from_log", "log_from_scale", "convert_log_scale",
    "points_from_original", "points_to_original", "theta_from_original", "theta_to_original",
    "original_start_theta", "pixel_to_normalized", "normalized_to_pixel", "pixel_to_normalized_original",
    "GRID_CONVENTIONS",
]
