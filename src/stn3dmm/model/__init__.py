"""Morphable models: sources, mesh recovery, symmetric UV maps, grid resampling, the file format, the cache.

Owns :class:`MorphableModel` and its ``.npz`` file contract (:mod:`.morphable`, read through
:mod:`.npz`, which checks the sizes a file declares before reading it), the readers of
source models (:mod:`.sources`), the preparation pipeline from a source to an R x R grid model
(:mod:`.prepare` with :mod:`.mesh`, :mod:`.triangulate`, :mod:`.symmetry`, :mod:`.uv`,
:mod:`.uv_repair`, :mod:`.resample`) and the cache of prepared models with :func:`load_model`
(:mod:`.store`).

May import: :mod:`stn3dmm.core` only. NumPy and SciPy, no torch.
"""

from .morphable import (LANDMARK_SETS, SETS_BY_COUNT, ModelFileError, MorphableModel, landmark_indices,
                        load_model_file, save_model)
from .store import load_model

__all__ = ["LANDMARK_SETS", "SETS_BY_COUNT", "ModelFileError", "MorphableModel", "landmark_indices",
           "load_model", "load_model_file", "save_model"]
