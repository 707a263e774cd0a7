"""The 3DMM spatial transformer: every equation of the paper, as pure tensor functions and one module.

Owns, one module per concept:

=====================  ===================================================================
module                 contents
=====================  ===================================================================
:mod:`.layers`         the grid generator, sampler and masking of the paper, one
                       function per layer of the paper (its docstring maps layer to function)
:mod:`.checks`         the input checks at the front doors (theta, images, landmarks)
:mod:`.depth`          the orthographic depth buffer of posed meshes
:mod:`.visibility`     the visibility rules: (a) back-face (ours and the original's),
                       (b) depth test
:mod:`.cpu_kernels`      the depth test's exact step compiled for the CPU (numba), the same
                       verdicts as the torch version, which CUDA runs
:mod:`.module`         :class:`MorphableSTN`, the layers composed as one ``nn.Module``, and
                       its typed output :class:`STNOutput` (``out.masked`` or ``out["masked"]``)
:mod:`.losses`         the four training losses of the paper
:mod:`.flip`           left-right mirroring of images, landmarks and theta (the augmentation)
:mod:`.texture`        symmetric completion and weighted averaging of flattened textures
:mod:`.pose`           the pose convention: Euler angles (yaw, pitch, roll) <-> rotations,
                       the pose of a theta, 3DDFA's angles in ours
=====================  ===================================================================

Each equation of the paper, the function implementing it and where it differs from the original
release: docs/paper.md. Every public function documents its shapes and carries a runnable example
(``tests/stn/test_doctests.py`` runs them). Conventions live in :mod:`stn3dmm.core.conventions`;
pictures of these results (e.g. the visibility comparison) live in :mod:`stn3dmm.viz`.

May import: :mod:`stn3dmm.core`, :mod:`stn3dmm.model`.
"""

from .checks import check_images, check_landmarks, check_theta
from .depth import depth_buffer
from .layers import (Projection, axis_angle_to_rotation, bilinear_sampler, grid_generator, inside_image, masking,
                     morphable_model, orthographic_projection, resample_grid, rotate, rotation_to_axis_angle,
                     sampling_grid, scale, select_landmarks, skew, split_theta, translate)
from .module import VISIBILITY_MODES, MorphableSTN, STNOutput
from .visibility import (original_grid_faces, vertex_normals, visibility_backface, visibility_backface_original,
                         visibility_depth)

__all__ = [
    "MorphableSTN", "STNOutput", "VISIBILITY_MODES", "Projection",
    "split_theta", "morphable_model", "skew", "axis_angle_to_rotation", "rotation_to_axis_angle", "rotate",
    "orthographic_projection", "scale", "translate", "select_landmarks", "resample_grid", "sampling_grid",
    "bilinear_sampler", "inside_image", "masking", "grid_generator",
    "check_theta", "check_images", "check_landmarks",
    "vertex_normals", "visibility_backface", "visibility_backface_original", "original_grid_faces", "depth_buffer",
    "visibility_depth",
]
