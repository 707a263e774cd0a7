"""Morphable models: sources, mesh recovery, symmetric UV maps, grid resampling, file format."""

from .morphable import (LANDMARK_SETS, SETS_BY_COUNT, ModelFileError, MorphableModel, landmark_indices,
                        load_model_file, save_model)

__all__ = ["LANDMARK_SETS", "SETS_BY_COUNT", "ModelFileError", "MorphableModel", "landmark_indices",
           "load_model_file", "save_model"]
