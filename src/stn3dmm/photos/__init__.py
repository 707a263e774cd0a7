"""Real photos in: reading them robustly, finding faces and landmarks, mapping landmarks onto the model, cropping.

This package owns the photo side of ``stn3dmm flatten``: :mod:`.io` (reading, listing and
writing image files), :mod:`.png` (the fast PNG encoder those writes use), :mod:`.jpeg` (the checks of a JPEG's structure and completeness that
Pillow does not make), :mod:`.detect` (mediapipe face detection and 468-point face mesh,
offline), :mod:`.mmod` (dlib's CNN face detector, the detector's second look at profiles), :mod:`.mesh_roi` (the face mesh's landmark model on a region we choose, where its
own detector finds no face), :mod:`.landmark_map` (detector points -> morphable-model vertices, above
:mod:`.detect`: a face is mapped by its caller, not by itself) and :mod:`.crop`
(square face crops for the STN input and their photo <-> crop similarity), and
:mod:`.samples` (the sample photos installed packages ship). Importing it does not import
mediapipe; the detector loads it on first use.

May import: :mod:`stn3dmm.core` only.
"""

from .crop import DEFAULT_MARGIN, CropTransform, crop_face, crop_square, square_transform, warp
from .detect import (MIN_FACE, DetectorUnavailable, Face, FaceDetector, FaceError, NoLandmarksError, TinyFaceError,
                     detect_faces)
from .io import (DEFAULT_MAX_SIDE, IMAGE_EXTENSIONS, NOT_AN_IMAGE, Listed, Photo, PhotoError, iter_photos,
                 photo_from_array, read_photo, walk_photos, write_png_atomic)
from .landmark_map import LandmarkMap, LandmarkTargets, dense_map, face_targets, get_map, ibug68_map

__all__ = [
    "read_photo", "Photo", "PhotoError", "photo_from_array", "iter_photos", "walk_photos", "Listed", "NOT_AN_IMAGE",
    "write_png_atomic", "DEFAULT_MAX_SIDE", "IMAGE_EXTENSIONS",
    "detect_faces", "Face", "FaceDetector", "FaceError", "TinyFaceError", "NoLandmarksError", "DetectorUnavailable",
    "MIN_FACE",
    "LandmarkMap", "LandmarkTargets", "dense_map", "ibug68_map", "get_map", "face_targets",
    "crop_face", "crop_square", "square_transform", "warp", "CropTransform", "DEFAULT_MARGIN",
]
