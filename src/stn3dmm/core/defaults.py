"""The named defaults of stn3dmm: one place for the sizes that the original hard-coded.

* :data:`IMAGE_SIZE`: the side of the STN's input, the square face crop (the original's 224).
  It is also the reference of the scale: at this size the start pose maps 1 mm to 1 px.
* :data:`GRID_RES`: the grid resolution R of the prepared model, so the flattened texture is
  R x R (the original's 112).
* :data:`LOCALISER_SIZE`: the input side of the small localiser backbones, which see a reduced
  copy of the crop.
"""

IMAGE_SIZE = 224
GRID_RES = 112
LOCALISER_SIZE = 112

__all__ = ["GRID_RES", "IMAGE_SIZE", "LOCALISER_SIZE"]
