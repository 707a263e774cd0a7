"""The data-set readers in one place (what ``stn3dmm train`` imports).

This module owns nothing itself: it gathers the readers, each documented in its own module
(including its landmark convention and how to point it at the real data):

* :class:`UMDFaces` (:mod:`.umdfaces`): UMDFaces CSV, 21 AFLW points (0-based assumed),
  subject ids, pose.
* :class:`Mat68` (:mod:`.w300lp`): 300W-LP and AFLW2000-3D ``.mat`` files (1-based MATLAB
  coordinates), iBUG-68 (or AFLW-21 for AFLW2000-3D's ``pt2d``), pose from ``Pose_Para``.
* :class:`LandmarkFolder` and :func:`write_folder_item` (:mod:`.folder`): images with ``.json``
  (0-based) or iBUG ``.pts`` (1-based) files; the synthetic exporter's format.
* :class:`DetectedPhotos` (:mod:`.photos_reader`): photos with detector landmarks mapped onto
  the model.

All return the sample dicts of :mod:`stn3dmm.training.data.sample` (landmarks in crop pixels: ours,
0-based, y down; NaN and visibility 0 when missing), crop faces as the photo pipeline does
(:mod:`.crop`), and have ``landmark_set``, ``identities`` (or None), ``excluded`` and
``item(i) -> (sample, transform)``.
"""

from .crop import FRAMING, Annotation, LabelledFaces, ReaderError, box_square, landmark_square
from .folder import LandmarkFolder, read_folder_json, read_pts, write_folder_item, write_pts
from .photos_reader import DetectedPhotos
from .umdfaces import UMDFaces, read_umdfaces_csv
from .w300lp import Mat68, identity_key, read_pose_mat

__all__ = ["UMDFaces", "Mat68", "LandmarkFolder", "DetectedPhotos", "write_folder_item", "read_folder_json",
           "read_pts", "write_pts", "read_umdfaces_csv", "read_pose_mat", "identity_key", "ReaderError",
           "LabelledFaces", "Annotation", "landmark_square", "box_square", "FRAMING"]
