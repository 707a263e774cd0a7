"""Photos in, flattened face textures out: the product's main job (``stn3dmm flatten``, ``average``).

Owns the per-face pipeline (:mod:`.pipeline`: detect, crop, fit, sample, mask, complete), the
batch runner (:mod:`.runner`: listing, reading, batches, the background writer, progress and
the summary), the output files of a face (:mod:`.outputs`), the textured-mesh export
(:mod:`.export`: OBJ + MTL) and the visibility-weighted mean of one person's textures
(:mod:`.average`).

May import: :mod:`stn3dmm.core`, :mod:`stn3dmm.model`, :mod:`stn3dmm.stn`, :mod:`stn3dmm.photos`,
:mod:`stn3dmm.fitting`.
"""

from .pipeline import Flattener, check_options
from .runner import flatten_paths

__all__ = ["Flattener", "check_options", "flatten_paths"]
