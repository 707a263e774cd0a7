"""The differentiable layers of the 3DMM spatial transformer, as pure tensor functions.

The paper's equations and where ours differ from the original: docs/paper.md, "Parameters and
the grid generator".

This module owns one function per layer of the paper's grid generator and sampler, named after
the layer, plus the composite :func:`grid_generator`. The input checks used by the module and
the fitter live in :mod:`stn3dmm.stn.checks` (still importable from here). Every function is batched over a leading ``B`` axis with no Python loop over
images or vertices, keeps the dtype (float32 or float64) and device of its inputs, and is
differentiable (except the masks, which are constants).

=======================  =============================  ==========================================
paper's layer            function                        shapes
=======================  =============================  ==========================================
(theta layout)           :func:`split_theta`            (B, 6+K+E) -> r, t, logs, alpha_id, alpha_exp
morphable model          :func:`morphable_model`        alpha (B, k), (B, e) -> X (B, N, 3)
axis-angle -> rotation   :func:`axis_angle_to_rotation`  r (B, 3) -> R (B, 3, 3)
rotate                   :func:`rotate`                 X (B, N, 3), R -> X' = X R^T
orthographic projection  :func:`orthographic_projection` X' -> Y = (X'_x, -X'_y) (B, N, 2)
scale                    :func:`scale`                  Y, logs (B,) -> s Y
translate                :func:`translate`              sY, t (B, 2) -> P (B, N, 2), image px
select                   :func:`select_landmarks`       P, idx (L,) -> (B, L, 2)
grid                     :func:`sampling_grid`          P (B, R*R, 2) -> (B, R', R', 2) in [-1, 1]
bilinear sampler         :func:`bilinear_sampler`       image (B, C, H, W), grid -> (B, C, R', R')
(outside image)          :func:`inside_image`           grid -> (B, 1, R', R') 0/1
masking                  :func:`masking`                flattened, mask -> flattened * mask
=======================  =============================  ==========================================

Conventions (see :mod:`stn3dmm.core.conventions`): the model is y up, the image y down, so the
projection flips y: ``P_x = s X'_x + t_x``, ``P_y = -s X'_y + t_y``. The rotation acts in the
model's y-up frame (``r`` means what it meant in the original). Pixel centres are at integer
coordinates; the sampler uses ``align_corners=True``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..core.conventions import (DEFAULT_SCALE, GRID_CONVENTIONS, N_POSE, pixel_to_normalized,
                                pixel_to_normalized_original, scale_from_log)
from .checks import check_images, check_landmarks, check_theta  # re-exported: callers import them from here too

# Below this squared angle, sin(a)/a and (1 - cos a)/a^2 come from their Taylor series
# (5 terms: truncation error < 3e-18 at the threshold), which are polynomials in |r|^2 and
# therefore smooth, with exact gradients, at and near r = 0.
_TAYLOR_THRESHOLD = 0.1 ** 2


# ----------------------------------------------------------------------------------------------
# layers
# ----------------------------------------------------------------------------------------------

def split_theta(theta: torch.Tensor, n_id: int, n_exp: int):
    """Split theta into its parts: ``r (B, 3), t (B, 2), logs (B,), alpha_id (B, n_id), alpha_exp (B, n_exp)``.

    The one place that knows theta's layout ``[r, t, logs, alpha_id, alpha_exp]``, so the layers
    below take named parts. The parts are views of ``theta`` (no copy; gradients flow back).

    Args:
        theta: (B, 6 + n_id + n_exp).
        n_id: number of identity coefficients.
        n_exp: number of expression coefficients.

    Returns:
        the tuple ``(r, t, logs, alpha_id, alpha_exp)``.

    Examples:
        >>> r, t, logs, a_id, a_exp = split_theta(torch.arange(9.0)[None], n_id=2, n_exp=1)
        >>> r, t, logs, a_id, a_exp
        (tensor([[0., 1., 2.]]), tensor([[3., 4.]]), tensor([5.]), tensor([[6., 7.]]), tensor([[8.]]))
    """
    if theta.shape[-1] != N_POSE + n_id + n_exp:
        raise ValueError(f"theta has {theta.shape[-1]} entries, expected 6 + {n_id} + {n_exp}")
    return (theta[..., 0:3], theta[..., 3:5], theta[..., 5], theta[..., N_POSE:N_POSE + n_id],
            theta[..., N_POSE + n_id:])


def morphable_model(mean: torch.Tensor, basis_id: torch.Tensor, basis_exp: torch.Tensor,
                    alpha_id: torch.Tensor, alpha_exp: torch.Tensor) -> torch.Tensor:
    """Morphable model layer: ``X = mean + sum_k alpha_id[k] basis_id[k] + sum_e alpha_exp[e] basis_exp[e]``.

    Turns shape coefficients into a face: the linear 3DMM, as one matrix product per basis.

    Args:
        mean: (N, 3) mean shape (mm).
        basis_id: (K, N, 3) identity basis, scaled so the coefficients are N(0, 1).
        basis_exp: (E, N, 3) expression basis.
        alpha_id: (B, k) with k <= K: the LEADING k identity components are used.
        alpha_exp: (B, e) with e <= E: the leading e expression components are used.

    Returns:
        X: (B, N, 3).

    Examples:
        >>> mean, basis_id, basis_exp = torch.zeros(4, 3), torch.ones(2, 4, 3), torch.zeros(1, 4, 3)
        >>> x = morphable_model(mean, basis_id, basis_exp, torch.tensor([[1.0, 2.0]]), torch.zeros(1, 1))
        >>> x.shape, x[0, 0].tolist()
        (torch.Size([1, 4, 3]), [3.0, 3.0, 3.0])
    """
    n = mean.shape[0]
    k, e = alpha_id.shape[-1], alpha_exp.shape[-1]
    if k > basis_id.shape[0] or e > basis_exp.shape[0]:
        raise ValueError(f"{k} identity / {e} expression coefficients for a model with "
                         f"{basis_id.shape[0]} / {basis_exp.shape[0]} components")
    b = alpha_id.shape[0]
    x = mean.expand(b, n, 3)
    if k:
        x = x + (alpha_id @ basis_id[:k].reshape(k, n * 3)).view(b, n, 3)
    if e:
        x = x + (alpha_exp @ basis_exp[:e].reshape(e, n * 3)).view(b, n, 3)
    return x


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrix: ``v (..., 3) -> [v]_x (..., 3, 3)`` with ``[v]_x w = v x w``.

    Writes the cross product as a matrix product, as Rodrigues' formula
    (:func:`axis_angle_to_rotation`) needs.

    Args:
        v: (..., 3).

    Returns:
        (..., 3, 3).

    Examples:
        >>> skew(torch.tensor([1.0, 2.0, 3.0]))
        tensor([[ 0., -3.,  2.],
                [ 3.,  0., -1.],
                [-2.,  1.,  0.]])
    """
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack((o, -z, y, z, o, -x, -y, x, o), dim=-1).view(*v.shape[:-1], 3, 3)


def axis_angle_to_rotation(r: torch.Tensor) -> torch.Tensor:
    """Axis-angle -> rotation layer (Rodrigues): ``r (..., 3) -> R (..., 3, 3)``.

    theta carries the pose as an axis-angle vector ``r`` (direction = axis, length = angle in
    radians), three unconstrained numbers a network can regress; this layer makes the rotation
    matrix. ``R = I + A(a) [r]_x + B(a) (r r^T - a^2 I)`` with ``a = |r|``, ``A = sin(a)/a``,
    ``B = (1 - cos a)/a^2`` -- the same as ``I + sin(a) K + (1 - cos a) K^2`` with ``K = [r/a]_x``.
    ``B`` is evaluated as ``(sin(a/2)/(a/2))^2 / 2`` (no cancellation in float32), and both
    ``A`` and ``B`` switch to their Taylor series in ``a^2`` below ``a = 0.1``; the large-angle
    branch never sees ``a = 0`` (safe-norm), so values and gradients are finite and exact at
    and near ``r = 0`` (``dR/dr_i = [e_i]_x`` at 0) and everywhere else, including ``a = pi``.

    Args:
        r: (..., 3) axis-angle vectors (model frame, y up).

    Returns:
        R: (..., 3, 3) rotation matrices.

    Examples:
        >>> import math
        >>> R = axis_angle_to_rotation(torch.tensor([[0.0, 0.0, math.pi / 2]]))  # 90 degrees about z
        >>> (R @ torch.tensor([1.0, 1.0, 0.0])).round(decimals=4)
        tensor([[-1.,  1.,  0.]])
    """
    t2 = (r * r).sum(-1)[..., None, None]
    small = t2 < _TAYLOR_THRESHOLD
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    a = torch.sqrt(t2_safe)
    half = 0.5 * a
    a_big = torch.sin(a) / a
    b_big = 0.5 * (torch.sin(half) / half) ** 2
    t2_s = torch.where(small, t2, torch.zeros_like(t2))
    a_small = 1.0 - t2_s / 6.0 * (1.0 - t2_s / 20.0 * (1.0 - t2_s / 42.0 * (1.0 - t2_s / 72.0)))
    b_small = 0.5 * (1.0 - t2_s / 12.0 * (1.0 - t2_s / 30.0 * (1.0 - t2_s / 56.0 * (1.0 - t2_s / 90.0))))
    coef_a = torch.where(small, a_small, a_big)
    coef_b = torch.where(small, b_small, b_big)
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    rrT = r[..., :, None] * r[..., None, :]
    return eye + coef_a * skew(r) + coef_b * (rrT - t2 * eye)


def rotation_to_axis_angle(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`axis_angle_to_rotation` (log map): ``R (..., 3, 3) -> r (..., 3)``, ``|r|`` in [0, pi].

    Turns a rotation from elsewhere (a pose label, a rigid fit) into theta's ``r``. Goes through
    the quaternion (Shepperd's method: the best-conditioned of four formulas per matrix), so it
    is accurate at 0 and near pi. Meant for initialisation and evaluation; its gradient is not
    guaranteed at pi.

    Args:
        rotation: (..., 3, 3) rotation matrices.

    Returns:
        r: (..., 3) axis-angle vectors.

    Examples:
        >>> r = torch.tensor([[0.1, -0.2, 0.3]])
        >>> rotation_to_axis_angle(axis_angle_to_rotation(r)).round(decimals=4)
        tensor([[ 0.1000, -0.2000,  0.3000]])
    """
    m = rotation
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    tr = m00 + m11 + m22
    # four unnormalised quaternions (w, x, y, z), each proportional to the true one
    q_w = torch.stack((1 + tr, m21 - m12, m02 - m20, m10 - m01), -1)
    q_x = torch.stack((m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20), -1)
    q_y = torch.stack((m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21), -1)
    q_z = torch.stack((m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22), -1)
    cands = torch.stack((q_w, q_x, q_y, q_z), -2)  # (..., 4, 4)
    lead = torch.stack((1 + tr, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), -1)
    pick = lead.argmax(-1)
    q = torch.gather(cands, -2, pick[..., None, None].expand(*pick.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, v = q[..., 0], q[..., 1:]
    n = v.norm(dim=-1)
    angle = 2.0 * torch.atan2(n, w)
    n_safe = torch.where(n > 1e-12, n, torch.ones_like(n))
    factor = torch.where(n > 1e-12, angle / n_safe, 2.0 / w.clamp_min(1e-12))
    return v * factor[..., None]


def rotate(vertices: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate layer: ``X (B, N, 3), R (B, 3, 3) -> X' = X R^T (B, N, 3)`` (model frame, y up).

    Poses the face: each vertex (a row of X) is rotated by R before the projection.

    Args:
        vertices: X, (B, N, 3).
        rotation: R, (B, 3, 3).

    Returns:
        X', (B, N, 3).

    Examples:
        >>> import math
        >>> R = axis_angle_to_rotation(torch.tensor([[0.0, 0.0, math.pi / 2]]))
        >>> rotate(torch.tensor([[[1.0, 1.0, 0.0]]]), R).round(decimals=4)  # 90 degrees about z
        tensor([[[-1.,  1.,  0.]]])
    """
    return vertices @ rotation.transpose(-1, -2)


def orthographic_projection(vertices: torch.Tensor) -> torch.Tensor:
    """Orthographic projection layer: ``X' (B, N, 3) -> Y = (X'_x, -X'_y) (B, N, 2)``.

    Drops z (the camera looks along -z from far away) and flips y, because the model's y points
    up and the image's y points down.

    Args:
        vertices: X', (B, N, 3) posed vertices.

    Returns:
        Y, (B, N, 2).

    Examples:
        >>> orthographic_projection(torch.tensor([[[1.0, 2.0, 3.0]]]))
        tensor([[[ 1., -2.]]])
    """
    return torch.stack((vertices[..., 0], -vertices[..., 1]), dim=-1)


def scale(points: torch.Tensor, logs: torch.Tensor, mode: str = DEFAULT_SCALE) -> torch.Tensor:
    """Scale layer: ``Y (B, N, 2), logs (B,) -> s Y``, millimetres to pixels.

    ``s = exp(logs)`` (``mode="exp"``, default: any real ``logs`` gives a positive scale) or
    ``s = 0.99 ** logs`` (``mode="original"``, the original's map).

    Args:
        points: Y, (B, N, 2).
        logs: (B,) log scale.
        mode: ``"exp"`` or ``"original"``.

    Returns:
        s Y, (B, N, 2).

    Examples:
        >>> import math
        >>> scale(torch.tensor([[[1.0, -2.0]]]), torch.tensor([math.log(2.0)]))
        tensor([[[ 2., -4.]]])
    """
    return points * scale_from_log(logs, mode)[..., None, None]


def translate(points: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Translate layer: ``sY (B, N, 2), t (B, 2) -> P = sY + t`` in image pixels (ours: 0-based, y down).

    Places the face in the image: ``t`` is where the model's origin lands.

    Args:
        points: sY, (B, N, 2).
        t: (B, 2) pixels.

    Returns:
        P, (B, N, 2) pixels.

    Examples:
        >>> translate(torch.tensor([[[1.0, -2.0]]]), torch.tensor([[100.0, 50.0]]))
        tensor([[[101.,  48.]]])
    """
    return points + t[..., None, :]


def select_landmarks(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select layer: ``P (B, N, D), index (L,) -> P[:, index] (B, L, D)``.

    Picks the landmark vertices out of the projected model, for the landmark loss.

    Args:
        points: (B, N, D).
        index: (L,) long vertex indices.

    Returns:
        (B, L, D).

    Examples:
        >>> p = torch.arange(8.0).view(1, 4, 2)
        >>> select_landmarks(p, torch.tensor([3, 0]))
        tensor([[[6., 7.],
                 [0., 1.]]])
    """
    return points.index_select(-2, index)


def resample_grid(points_grid: torch.Tensor, out_res: int) -> torch.Tensor:
    """Bilinearly resample a grid of 2-D points ``(B, R, R, 2) -> (B, out_res, out_res, 2)``.

    Gives flattened outputs of any size from one model: the projected grid is interpolated,
    not the model. The corners of the UV square stay where they are (``align_corners=True``):
    grid vertex ``(i, j)`` sits at ``u = j / (R - 1)``, ``v = 1 - i / (R - 1)``, and output
    pixel ``(i', j')`` at ``j' / (out_res - 1)``.

    Args:
        points_grid: (B, R, R, 2).
        out_res: side of the output grid.

    Returns:
        (B, out_res, out_res, 2); ``points_grid`` itself when ``out_res == R``.

    Examples:
        >>> g = torch.tensor([[[[0.0, 0.0], [2.0, 0.0]], [[0.0, 2.0], [2.0, 2.0]]]])  # (1, 2, 2, 2)
        >>> resample_grid(g, 3)[0, 1]  # the middle row
        tensor([[0., 1.],
                [1., 1.],
                [2., 1.]])
    """
    if out_res == points_grid.shape[1]:
        return points_grid
    g = points_grid.permute(0, 3, 1, 2)
    g = F.interpolate(g, size=(out_res, out_res), mode="bilinear", align_corners=True)
    return g.permute(0, 2, 3, 1)


def sampling_grid(points: torch.Tensor, res: int, height: int, width: int, out_res: int | None = None,
                  convention: str = "ours") -> torch.Tensor:
    """Grid layer: projected grid vertices ``P (B, res*res, 2)`` (pixels) -> sampling grid ``(B, R', R', 2)``.

    Lays the projected vertices out on the UV grid, so that sampling the image there gives the
    flattened (UV) texture. Reshapes row-major (row 0 = top of the face), optionally resamples
    to ``out_res`` (:func:`resample_grid`), and normalises for ``grid_sample`` with
    ``align_corners=True``.

    ``convention="ours"`` (default): ``x_n = 2 x / (W - 1) - 1``, ``y_n = 2 y / (H - 1) - 1``, so
    the sampler reads the image exactly at each projected point, in the same pixel convention
    as the landmarks.

    ``convention="original"``: the original's normalisation, for reproducing its output. It
    held points in its 1-based, y-up frame (``x_1 = x + 1``, ``y_up = H - y``) and normalised
    them by the centre of its 224 x 224 input, ``(x_1 - 112) / 112`` and ``-(y_up - 112) / 112``.
    Reading 112 as half the image size, as that code did for its one input size, gives
    ``x_n = 2 (x + 1) / W - 1`` and ``y_n = 2 y / H - 1``
    (:func:`~stn3dmm.core.conventions.pixel_to_normalized_original`). Its sampler read the grid
    as ``align_corners=True`` does, so a point at ``(x, y)`` is sampled at column
    ``(x + 1)(W - 1) / W`` and row ``y (H - 1) / H``: up to a pixel away from the point (about
    half a pixel right and up at the image centre).

    Args:
        points: P, (B, res*res, 2) pixels.
        res: side R of the model's grid.
        height: image height H.
        width: image width W.
        out_res: side R' of the output (default R).
        convention: ``"ours"`` or ``"original"``.

    Returns:
        (B, R', R', 2) in [-1, 1] where inside the image.

    Examples:
        >>> p = torch.tensor([[[0.0, 0.0], [9.0, 0.0], [0.0, 9.0], [9.0, 9.0]]])  # a 10 x 10 image's corners
        >>> sampling_grid(p, res=2, height=10, width=10).tolist()
        [[[[-1.0, -1.0], [1.0, -1.0]], [[-1.0, 1.0], [1.0, 1.0]]]]
        >>> sampling_grid(p, res=2, height=10, width=10, convention="original")  # 2 (x + 1) / W - 1, 2 y / H - 1
        tensor([[[[-0.8000, -1.0000],
                  [ 1.0000, -1.0000]],
        <BLANKLINE>
                 [[-0.8000,  0.8000],
                  [ 1.0000,  0.8000]]]])
    """
    b, n, _ = points.shape
    if n != res * res:
        raise ValueError(f"{n} points do not form a {res} x {res} grid")
    if convention not in GRID_CONVENTIONS:
        raise ValueError(f"convention must be one of {GRID_CONVENTIONS}, got {convention!r}")
    g = points.reshape(b, res, res, 2)
    if out_res is not None:
        g = resample_grid(g, out_res)
    if convention == "original":
        return pixel_to_normalized_original(g, height, width)
    return pixel_to_normalized(g, height, width)


def bilinear_sampler(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear sampler layer: ``images (B, C, H, W), grid (B, R', R', 2) -> (B, C, R', R')``.

    Reads the image at the projected vertices, differentiably in both the image and the grid
    (so the landmark-free losses train the pose). ``torch.nn.functional.grid_sample`` with
    ``align_corners=True`` (pixel centres at integers) and zero padding: samples from outside
    the image read zeros (and :func:`inside_image` marks them invisible).

    Args:
        images: (B, C, H, W).
        grid: (B, R', R', 2) normalised, as :func:`sampling_grid` makes it.

    Returns:
        (B, C, R', R').

    Examples:
        >>> image = torch.arange(16.0).view(1, 1, 4, 4)  # pixel (x, y) holds 4 y + x
        >>> grid = sampling_grid(torch.tensor([[[0.0, 0.0], [1.5, 0.0], [0.0, 2.0], [3.0, 3.0]]]), 2, 4, 4)
        >>> bilinear_sampler(image, grid).round(decimals=4)
        tensor([[[[ 0.0000,  1.5000],
                  [ 8.0000, 15.0000]]]])
    """
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def inside_image(grid: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Outside-image mask: ``(B, R', R', 2)`` normalised grid -> ``(B, 1, R', R')`` (grid dtype).

    1 where the sample lies between the centres of the first and last pixels
    (``0 <= x <= W - 1``, same for y), so bilinear sampling reads only real pixels; 0 elsewhere,
    so the zero padding is never taken for texture. No gradient.

    Args:
        grid: (B, R', R', 2) normalised.
        eps: tolerance on the bound 1.

    Returns:
        (B, 1, R', R') 0 / 1.

    Examples:
        >>> inside_image(torch.tensor([[[[0.0, 0.0], [1.5, 0.0]]]]))  # the second sample is right of the image
        tensor([[[[1., 0.]]]])
    """
    g = grid.detach()
    inside = (g.abs() <= 1.0 + eps).all(-1)
    return inside[:, None].to(grid.dtype)


def masking(flattened: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masking layer: ``flattened (B, C, R', R'), mask (B, 1, R', R') -> flattened * mask``.

    Zeroes the pixels that are hidden or outside the image, so the symmetry and siamese losses
    skip them.

    Args:
        flattened: (B, C, R', R').
        mask: (B, 1, R', R').

    Returns:
        (B, C, R', R').

    Examples:
        >>> masking(torch.full((1, 1, 2, 2), 5.0), torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]]))
        tensor([[[[5., 0.],
                  [0., 5.]]]])
    """
    return flattened * mask


class Projection(NamedTuple):
    """What :func:`grid_generator` returns."""

    shape: torch.Tensor      #: (B, N, 3) X, the model instance (mm, y up)
    rotation: torch.Tensor   #: (B, 3, 3) R
    posed: torch.Tensor      #: (B, N, 3) X' = X R^T (mm, model frame: y up, viewer on +z)
    scale: torch.Tensor      #: (B,) s, px per mm
    points: torch.Tensor     #: (B, N, 2) P, image pixels (ours)


def grid_generator(theta: torch.Tensor, mean: torch.Tensor, basis_id: torch.Tensor, basis_exp: torch.Tensor,
                   n_id: int, n_exp: int, scale_map: str = DEFAULT_SCALE) -> Projection:
    """The composite grid generator: theta -> morphable model -> rotate -> project -> scale -> translate.

    All the layers up to the image points in one call, for the module, the fitter and the
    renderer of the synthetic data.

    Args:
        theta: (B, 6 + n_id + n_exp) ``[r, t, logs, alpha_id, alpha_exp]``.
        mean: (N, 3) model mean.
        basis_id: (K, N, 3); the leading ``n_id <= K`` components are used.
        basis_exp: (E, N, 3); the leading ``n_exp <= E`` components are used.
        n_id: number of identity coefficients in theta.
        n_exp: number of expression coefficients in theta.
        scale_map: ``"exp"`` or ``"original"``.

        Pass the landmark rows only (``mean[idx]``, ``basis_id[:, idx]``, ...) to project
        landmarks cheaply.

    Returns:
        a :class:`Projection`: ``shape`` X (B, N, 3), ``rotation`` R (B, 3, 3), ``posed`` X'
        (B, N, 3), ``scale`` s (B,), ``points`` P (B, N, 2).

    Examples:
        >>> mean = torch.tensor([[0.0, 0.0, 0.0], [10.0, 20.0, 5.0]])
        >>> no_basis = torch.zeros(0, 2, 3)
        >>> theta = torch.tensor([[0.0, 0.0, 0.0, 50.0, 60.0, 0.0]])  # r = 0, t = (50, 60), s = exp(0) = 1
        >>> grid_generator(theta, mean, no_basis, no_basis, 0, 0).points
        tensor([[[50., 60.],
                 [60., 40.]]])
    """
    r, t, logs, a_id, a_exp = split_theta(theta, n_id, n_exp)
    x = morphable_model(mean, basis_id, basis_exp, a_id, a_exp)
    rot = axis_angle_to_rotation(r)
    xp = rotate(x, rot)
    s = scale_from_log(logs, scale_map)
    p = translate(scale(orthographic_projection(xp), logs, scale_map), t)
    return Projection(x, rot, xp, s, p)


__all__ = [
    "check_theta", "check_images", "check_landmarks",
    "split_theta", "morphable_model", "skew", "axis_angle_to_rotation", "rotation_to_axis_angle",
    "rotate", "orthographic_projection", "scale", "translate", "select_landmarks",
    "resample_grid", "sampling_grid", "bilinear_sampler", "inside_image", "masking",
    "Projection", "grid_generator",
]
