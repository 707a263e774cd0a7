"""Photos in, flattened face textures out: the product's main job (``stn3dmm flatten``, ``average``).

Owns the per-face pipeline (:mod:`.pipeline`: detect, crop, fit, sample, mask, complete), the
batch runner (:mod:`.runner`: listing and planning; :mod:`.batches`: one process's loop of
reading, batches and the background writer, and the report; :mod:`.workers`: more processes
sharing a run's photos), the run's hold on its output folder and its signals (:mod:`.state`), the
output files of a face and what marks a photo done (:mod:`.outputs`), the textured-mesh export
(:mod:`.export`: OBJ + MTL) and the visibility-weighted mean of one person's textures, or of
each folder of a tree (:mod:`.average`).

May import: :mod:`stn3dmm.core`, :mod:`stn3dmm.model`, :mod:`stn3dmm.stn`, :mod:`stn3dmm.photos`,
:mod:`stn3dmm.fitting`.
"""

from .pipeline import Flattener, check_options
from .runner import NothingToFlatten, RunReport, flatten_paths
from .state import OutputInUse

__all__ = ["Flattener", "check_options", "flatten_paths", "RunReport", "NothingToFlatten", "OutputInUse"]
