"""stn3dmm: a 3D morphable face model as a spatial transformer network (after Bas et al. 2017).

    import stn3dmm
    model = stn3dmm.load_model()                      # the prepared default grid model
    stn = stn3dmm.MorphableSTN(model, visibility="depth")
    out = stn(images, theta)                          # images (B, 3, H, W), theta (B, 6 + K + E)
    fit = stn3dmm.fit_landmarks(model, landmarks)     # theta from 2-D landmarks
    loc = stn3dmm.load_localiser()                    # the trained localiser that ships in the package
    faces = loc.from_boxes([photo], [face_box])       # theta from a photo and a face box, no landmarks
"""

from .model import MorphableModel, load_model, load_model_file, save_model

__version__ = "0.1.0"
__all__ = ["MorphableModel", "MorphableSTN", "fit_landmarks", "load_localiser", "load_model", "load_model_file",
           "save_model"]


def __getattr__(name):
    # torch-backed parts load on first use, so that the CLI and model tools start quickly
    if name == "MorphableSTN":
        from .stn import MorphableSTN

        return MorphableSTN
    if name == "fit_landmarks":
        from .fitting.landmarks import fit_landmarks

        return fit_landmarks
    if name == "load_localiser":
        from .fitting.localiser import load_localiser

        return load_localiser
    raise AttributeError(f"module 'stn3dmm' has no attribute {name!r}")
