"""The pose convention, re-exported from :mod:`stn3dmm.stn.pose` (where it lives, below the fitting
and flatten stages that need it too)."""

from ...stn.pose import (POSE_CONVENTION, THETA_LAYOUT, euler_to_rotation, pose_from_pose_para, pose_from_theta,
                         rotation_to_euler)

__all__ = ["POSE_CONVENTION", "THETA_LAYOUT", "euler_to_rotation", "rotation_to_euler", "pose_from_theta",
           "pose_from_pose_para"]
