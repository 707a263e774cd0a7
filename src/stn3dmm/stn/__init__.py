"""The 3DMM spatial transformer: pure tensor layers, visibility, and the :class:`MorphableSTN` module.

This package owns the differentiable grid generator, sampler and masking of SPEC section 2
(:mod:`.layers`), the visibility rules of section 4 (:mod:`.visibility`) and the module that
composes them (:mod:`.module`). Conventions live in :mod:`stn3dmm.core.conventions`.
"""

from .checks import check_images, check_landmarks, check_theta
from .depth import depth_buffer
from .layers import (Projection, axis_angle_to_rotation, bilinear_sampler, grid_generator, inside_image, masking,
                     morphable_model, orthographic_projection, resample_grid, rotate, rotation_to_axis_angle,
                     sampling_grid, scale, select_landmarks, skew, split_theta, translate)
from .module import VISIBILITY_MODES, MorphableSTN, STNOutput
from .visibility import vertex_normals, visibility_backface, visibility_depth

__all__ = [
    "MorphableSTN", "STNOutput", "VISIBILITY_MODES", "Projection",
    "split_theta", "morphable_model", "skew", "axis_angle_to_rotation", "rotation_to_axis_angle", "rotate",
    "orthographic_projection", "scale", "translate", "select_landmarks", "resample_grid", "sampling_grid",
    "bilinear_sampler", "inside_image", "masking", "grid_generator",
    "check_theta", "check_images", "check_landmarks",
    "vertex_normals", "visibility_backface", "depth_buffer", "visibility_depth",
]
