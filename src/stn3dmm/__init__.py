"""stn3dmm: a 3D morphable face model as a spatial transformer network (after Bas et al. 2017)."""

from .model import MorphableModel, load_model_file, save_model

__version__ = "0.1.0"
__all__ = ["MorphableModel", "load_model_file", "save_model"]
