"""Poses of theta: the pose in the photo of a theta predicted in a turned crop (known answers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stn3dmm.photos.crop import crop_square
from stn3dmm.stn.layers import rotation_to_axis_angle
from stn3dmm.stn.pose import euler_to_rotation, pose_in_photo


def _theta(yaw, pitch, roll):
    r = rotation_to_axis_angle(euler_to_rotation(yaw, pitch, roll)[None])[0]
    return torch.cat([r, torch.tensor([55.5, 55.5, 0.0], dtype=torch.float64)])[None]


@pytest.mark.parametrize("turn", [-2.5, -0.4, 0.3, 1.2, math.pi])
def test_a_turned_crop_moves_the_roll_only(turn):
    """A face at (yaw 35, pitch -12, roll 8) in the photo, seen in a crop turned by ``turn``
    (clockwise as seen), has roll 8 + turn in the crop; read back, the photo's pose returns."""
    crop_roll = 8.0 + math.degrees(turn)
    pose = pose_in_photo(_theta(35.0, -12.0, crop_roll), turn)[0]
    np.testing.assert_allclose(pose.numpy(), [35.0, -12.0, 8.0], atol=1e-6)


def test_the_turn_matches_the_crops_pixels():
    """The sign, by crop_square's own pixels: a crop turned by +a shows the photo's x axis, and so
    any face, turned counter-clockwise by a as seen, which is a roll of +a (POSE_CONVENTION)."""
    image = np.zeros((200, 200, 3), np.float32)
    _, tr = crop_square(image, (100.0, 100.0), 100.0, 112, angle=0.5)
    x_axis = tr.apply(np.array([[110.0, 100.0]])) - tr.apply(np.array([[100.0, 100.0]]))
    seen = math.atan2(-x_axis[0, 1], x_axis[0, 0])              # counter-clockwise as seen (y down)
    assert seen == pytest.approx(0.5)                          # so roll in the crop = roll in the photo + 0.5 rad


def test_pose_para_round_trips_through_our_convention():
    """3DDFA's angles -> ours -> theirs again, over their whole range with |yaw| < 90 (float64)."""
    from stn3dmm.stn.pose import pose_from_pose_para, pose_para_from_pose

    g = torch.Generator().manual_seed(0)
    theirs = torch.stack([torch.empty(500, dtype=torch.float64).uniform_(-80, 80, generator=g),
                          torch.empty(500, dtype=torch.float64).uniform_(-89.5, 89.5, generator=g),
                          torch.empty(500, dtype=torch.float64).uniform_(-80, 80, generator=g)], -1)
    back = pose_para_from_pose(pose_from_pose_para(*torch.deg2rad(theirs).unbind(-1)))
    assert (back - theirs).abs().max() < 1e-7
    assert pose_para_from_pose(torch.tensor([30.0, 0.0, 0.0])).tolist() == pytest.approx([0.0, -30.0, 0.0])
