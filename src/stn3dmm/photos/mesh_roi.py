"""The face mesh in a region we choose: mediapipe's landmark model without its own face detector.

mediapipe's face mesh solution finds the face itself (a short-range detector made for near-
frontal faces) before it places its 468 points, so it finds no mesh on many faces turned to
profile even when it is shown a tight crop. The landmark model itself takes a rotated square
region of interest (ROI). :class:`RoiMesh` runs that model (mediapipe's ``FaceLandmarkCpu``
subgraph, inside the same wheel) on a ROI given by the caller, and :func:`roi_from_box` and
:func:`roi_from_points` make ROIs the way mediapipe's own graphs make them: from a detector box,
1.5 times its longer side, turned so that the eyes lie level; from a previous mesh, the box of
its points in the frame where its eye corners are level, 1.5 times its longer side.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

#: mediapipe's ROI scale, around a detector box or around a previous mesh.
ROI_SCALE = 1.5
#: Outer corners of the subject's right and left eye in the 468-point mesh.
EYE_OUTER = (33, 263)

_GRAPH = """
input_stream: "image"
input_stream: "roi"
output_stream: "face_landmarks"
node {
  calculator: "FaceLandmarkCpu"
  input_stream: "IMAGE:image"
  input_stream: "ROI:roi"
  input_side_packet: "WITH_ATTENTION:with_attention"
  output_stream: "LANDMARKS:face_landmarks"
}
"""


class Roi(NamedTuple):
    """A square region: ``center`` (2,) photo px, ``side`` px, ``angle`` radians (the face's eye
    line from the subject's right eye to the left, measured from the image's +x axis, y down)."""

    center: np.ndarray
    side: float
    angle: float


def roi_from_box(box: np.ndarray, angle: float = 0.0) -> Roi:
    """The ROI of a detector box (x0, y0, x1, y1): its centre, 1.5 times its longer side."""
    box = np.asarray(box, dtype=np.float64)
    return Roi((box[:2] + box[2:]) / 2, ROI_SCALE * float((box[2:] - box[:2]).max()), float(angle))


def roi_from_points(points: np.ndarray) -> Roi:
    """The ROI of a previous mesh's (468, 2) points: levelled by its outer eye corners, centred on
    the box of its points in that levelled frame, 1.5 times the box's longer side."""
    p = np.asarray(points, dtype=np.float64)
    d = p[EYE_OUTER[1]] - p[EYE_OUTER[0]]
    angle = math.atan2(d[1], d[0])
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]])            # image -> levelled frame
    q = p @ rot.T
    lo, hi = q.min(0), q.max(0)
    return Roi(((lo + hi) / 2) @ rot, ROI_SCALE * float((hi - lo).max()), angle)


class RoiMesh:
    """mediapipe's 468-point landmark model on a given ROI (not thread-safe; one per detector)."""

    def __init__(self):
        self._solution = None

    def _graph(self):
        if self._solution is None:
            from google.protobuf import text_format
            from mediapipe.framework import calculator_pb2
            from mediapipe.python.solution_base import SolutionBase

            config = text_format.Parse(_GRAPH, calculator_pb2.CalculatorGraphConfig())
            self._solution = SolutionBase(graph_config=config, side_inputs={"with_attention": False},
                                          outputs=["face_landmarks"])
        return self._solution

    def __call__(self, img: np.ndarray, roi: Roi):
        """(points (468, 2) photo px, depth (468,) px) on ``img`` (H, W, 3) uint8 RGB, or None when
        the model says there is no face in the ROI."""
        from mediapipe.framework.formats import rect_pb2

        h, w = img.shape[:2]
        rect = rect_pb2.NormalizedRect(x_center=(roi.center[0] + 0.5) / w, y_center=(roi.center[1] + 0.5) / h,
                                       width=roi.side / w, height=roi.side / h, rotation=roi.angle)
        res = self._graph().process({"image": np.ascontiguousarray(img), "roi": rect})
        if res.face_landmarks is None:
            return None
        p = np.array([[q.x * w - 0.5, q.y * h - 0.5, q.z * w] for q in res.face_landmarks.landmark])
        return p[:, :2], p[:, 2]

    def close(self) -> None:
        if self._solution is not None:
            self._solution.close()
            self._solution = None


__all__ = ["EYE_OUTER", "ROI_SCALE", "Roi", "RoiMesh", "roi_from_box", "roi_from_points"]
