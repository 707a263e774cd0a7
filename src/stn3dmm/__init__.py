"""stn3dmm: a 3D morphable face model as a spatial transformer network (after Bas et al. 2017).

    import stn3dmm
    model = stn3dmm.load_model()                      # the prepared default grid model
    stn = stn3dmm.MorphableSTN(model, visibility="depth")
    out = stn(images, theta)                          # images (B, 3, H, W), theta (B, 6 + K + E)
    fit = stn3dmm.fit_landmarks(model, landmarks)     # theta from 2-D landmarks
"""

from .model import MorphableModel, load_model, load_model_file, save_model

__version__ = "0.1.0"
__all__ = ["MorphableModel", "MorphableSTN", "fit_landmarks", "load_model", "load_model_file", "save_model"]


def __getattr__(name):
    # torch-backed parts load on first use, so that the CLI and model tools start quickly
    if name == "MorphableSTN":
        from .stn import MorphableSTN

        return MorphableSTN
    if name == "fit_landmarks":
        from .fitting.landmarks import fit_landmarks

        return fit_landmarks
    raise AttributeError(f"module 'stn3dmm' has no attribute {name!r}")
