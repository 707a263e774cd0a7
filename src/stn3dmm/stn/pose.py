"""The pose convention of the benchmark, the synthetic data and evaluation, and conversions into it.

Owns :data:`POSE_CONVENTION`, :data:`THETA_LAYOUT`, Euler angles <-> rotation matrices
(:func:`euler_to_rotation`, :func:`rotation_to_euler`), the pose of a theta
(:func:`pose_from_theta`; :func:`pose_in_photo` for a theta predicted in a turned crop) and 3DDFA's
``Pose_Para`` angles in ours and back (:func:`pose_from_pose_para`, :func:`pose_para_from_pose`).
Light: torch only, so evaluation does not import the renderer.
"""

from __future__ import annotations

import torch

POSE_CONVENTION = ("R = Rz(roll) Rx(pitch) Ry(yaw) in the model frame (x right, y up, z to the viewer), degrees; "
                   "yaw > 0: nose towards image +x; pitch > 0: nose down (image +y); roll > 0: counter-clockwise "
                   "in the image")
THETA_LAYOUT = "[r(3) axis-angle, t(2) px (x right, y down, 0-based), logs(1) s = exp(logs) px/mm, alpha_id, alpha_exp]"


def euler_to_rotation(yaw, pitch, roll) -> torch.Tensor:
    """``R = Rz(roll) Rx(pitch) Ry(yaw)`` from angles in degrees (tensors or numbers of one shape ``S``)
    -> ``(*S, 3, 3)`` (float64 for numbers). See :data:`POSE_CONVENTION`.

    Examples:
        >>> R = euler_to_rotation(90.0, 0.0, 0.0)          # yaw 90: the nose (+z) turns to +x
        >>> (R @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).round(decimals=6)
        tensor([1., 0., 0.], dtype=torch.float64)
    """
    y, p, r = (torch.as_tensor(a, dtype=torch.float64) if not isinstance(a, torch.Tensor) else a
               for a in (yaw, pitch, roll))
    y, p, r = torch.deg2rad(y), torch.deg2rad(p), torch.deg2rad(r)
    cy, sy, cp, sp, cr, sr = y.cos(), y.sin(), p.cos(), p.sin(), r.cos(), r.sin()
    o, i = torch.zeros_like(y), torch.ones_like(y)
    ry = torch.stack((cy, o, sy, o, i, o, -sy, o, cy), -1).view(*y.shape, 3, 3)
    rx = torch.stack((i, o, o, o, cp, -sp, o, sp, cp), -1).view(*y.shape, 3, 3)
    rz = torch.stack((cr, -sr, o, sr, cr, o, o, o, i), -1).view(*y.shape, 3, 3)
    return rz @ rx @ ry


def rotation_to_euler(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`euler_to_rotation`: ``(..., 3, 3) -> (..., 3)`` (yaw, pitch, roll) in degrees,
    pitch in [-90, 90]. From the third row ``(-cos p sin y, sin p, cos p cos y)`` and the second
    column ``(-sin r cos p, cos r cos p, sin p)``.

    Examples:
        >>> rotation_to_euler(euler_to_rotation(30.0, -10.0, 5.0)).round(decimals=6)
        tensor([ 30., -10.,   5.], dtype=torch.float64)
    """
    m = rotation
    pitch = torch.asin(m[..., 2, 1].clamp(-1, 1))
    yaw = torch.atan2(-m[..., 2, 0], m[..., 2, 2])
    roll = torch.atan2(-m[..., 0, 1], m[..., 1, 1])
    return torch.rad2deg(torch.stack((yaw, pitch, roll), -1))


def pose_from_theta(theta: torch.Tensor) -> torch.Tensor:
    """``theta (..., P) -> (..., 3)`` yaw, pitch, roll in degrees (of its axis-angle ``r``).

    Examples:
        >>> import math
        >>> theta = torch.tensor([[0.0, math.pi / 4, 0.0, 111.5, 111.5, 0.0]])   # r about +y: yaw
        >>> pose_from_theta(theta).round(decimals=4).abs()
        tensor([[45.,  0.,  0.]])
    """
    from .layers import axis_angle_to_rotation

    return rotation_to_euler(axis_angle_to_rotation(theta[..., :3]))


def pose_in_photo(theta: torch.Tensor, crop_angle) -> torch.Tensor:
    """The pose in the photo of a theta predicted in a crop turned by ``crop_angle`` (radians,
    clockwise as seen: :func:`~stn3dmm.photos.crop.crop_square`'s ``angle``): ``theta (..., P)``,
    ``crop_angle`` a number or ``(...)`` -> ``(..., 3)`` yaw, pitch, roll in degrees. Turning the
    crop is a rotation about the camera axis, the outermost factor ``Rz(roll)`` of
    :data:`POSE_CONVENTION`, so yaw and pitch stay and the roll moves by ``-crop_angle``
    (wrapped to [-180, 180)).

    Examples:
        >>> import math
        >>> theta = torch.tensor([[0.0, 0.0, math.radians(30.0), 55.5, 55.5, 0.0]])   # rolled 30 in the crop
        >>> pose_in_photo(theta, math.radians(30.0)).round(decimals=4).abs()          # upright in the photo
        tensor([[0., 0., 0.]])
    """
    pose = pose_from_theta(theta).clone()
    turn = torch.rad2deg(torch.as_tensor(crop_angle, dtype=pose.dtype))
    pose[..., 2] = torch.remainder(pose[..., 2] - turn + 180.0, 360.0) - 180.0
    return pose


def pose_from_pose_para(pitch, yaw, roll) -> torch.Tensor:
    """3DDFA's ``Pose_Para`` angles (300W-LP, AFLW2000-3D; radians) as our ``(yaw, pitch, roll)``
    in degrees (:data:`POSE_CONVENTION`), exactly: ``(*S,)`` numbers or tensors -> ``(*S, 3)``.

    3DDFA projects ``f R X + t`` with ``R = Rx' Ry' Rz'`` where each factor is the TRANSPOSE
    of the right-handed rotation by its angle (``RotationMatrix.m``), i.e.
    ``R = Rx(-pitch) Ry(-yaw) Rz(-roll)``, in the model frame of ours (x right, y up, z to
    the viewer; the image y is flipped afterwards, as in our projection). The signs are
    reversed and the factor order differs from ours, so the angles are re-derived from R:
    for a single angle, ours = -theirs (their yaw > 0 turns the nose towards image -x).

    Examples:
        >>> import math
        >>> pose_from_pose_para(0.0, math.radians(30.0), 0.0).round(decimals=4).abs()   # their yaw 30
        tensor([30.,  0.,  0.], dtype=torch.float64)
        >>> round(float(pose_from_pose_para(0.0, math.radians(30.0), 0.0)[0]), 4)     # is our -30
        -30.0
    """
    p, y, r = (torch.as_tensor(a, dtype=torch.float64) if not isinstance(a, torch.Tensor) else a
               for a in (pitch, yaw, roll))
    zero = torch.zeros_like(p)
    deg = torch.rad2deg
    rx = euler_to_rotation(zero, -deg(p), zero)
    ry = euler_to_rotation(-deg(y), zero, zero)
    rz = euler_to_rotation(zero, zero, -deg(r))
    return rotation_to_euler(rx @ ry @ rz)


def pose_para_from_pose(pose: torch.Tensor) -> torch.Tensor:
    """Our ``(..., 3)`` yaw, pitch, roll in degrees as 3DDFA's ``Pose_Para`` angles ``(..., 3)``
    (pitch, yaw, roll) in degrees: the inverse of :func:`pose_from_pose_para`, with their yaw in
    [-90, 90], as the field's pose protocol reads a rotation (FSA-Net, Yang et al. 2019; SynergyNet's
    benchmark). ``R = Rx(a) Ry(b) Rz(c)`` with ``(a, b, c) = -(pitch, yaw, roll)`` gives
    ``b = asin R[0, 2]``, ``c = atan2(-R[0, 1], R[0, 0])``, ``a = atan2(-R[1, 2], R[2, 2])``.

    Examples:
        >>> import math
        >>> ours = pose_from_pose_para(math.radians(10.0), math.radians(70.0), math.radians(-20.0))
        >>> pose_para_from_pose(ours).round(decimals=6)
        tensor([ 10.,  70., -20.], dtype=torch.float64)
    """
    pose = torch.as_tensor(pose, dtype=torch.float64)
    m = euler_to_rotation(pose[..., 0], pose[..., 1], pose[..., 2])
    b = torch.asin(m[..., 0, 2].clamp(-1, 1))
    c = torch.atan2(-m[..., 0, 1], m[..., 0, 0])
    a = torch.atan2(-m[..., 1, 2], m[..., 2, 2])
    return -torch.rad2deg(torch.stack((a, b, c), -1))


__all__ = ["POSE_CONVENTION", "THETA_LAYOUT", "euler_to_rotation", "rotation_to_euler", "pose_from_theta",
           "pose_in_photo", "pose_from_pose_para", "pose_para_from_pose"]
