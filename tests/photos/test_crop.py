"""The photo <-> crop similarity and the crops it makes."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from stn3dmm.core.defaults import IMAGE_SIZE as DEFAULT_SIZE
from stn3dmm.photos.crop import (CropTransform, crop_face, crop_square, face_square, square_transform,
                                 warp)


def blob(h: int, w: int, centre, sigma: float) -> np.ndarray:
    """(h, w, 3) float image of a Gaussian spot at ``centre`` (x, y), ours (pixel centres)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    g = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma ** 2))
    return np.repeat(g[:, :, None], 3, axis=2).astype(np.float32)


def centroid(img: np.ndarray) -> np.ndarray:
    g = img[..., 0].astype(np.float64)
    y, x = np.mgrid[0:g.shape[0], 0:g.shape[1]]
    return np.array([(g * x).sum(), (g * y).sum()]) / g.sum()


def test_transform_round_trip_and_inverse():
    t = square_transform((123.4, 56.7), 80.0, 224, (300, 200), angle=0.4)
    rng = np.random.default_rng(0)
    p = rng.uniform(-50, 350, (100, 2))
    np.testing.assert_allclose(t.to_source(t.apply(p)), p, atol=1e-9)
    np.testing.assert_allclose(t.inverse().inverse().matrix, t.matrix, atol=1e-12)
    ident = t.then(t.inverse())
    np.testing.assert_allclose(ident.matrix, np.eye(2, 3), atol=1e-12)
    assert t.scale == pytest.approx(224 / 80) and t.angle == pytest.approx(0.4)
    assert t.inverse().source_size == (224, 224) and t.inverse().size == (300, 200)


def test_square_maps_centre_and_edges():
    t = square_transform((100.0, 50.0), 40.0, 20, (300, 200))
    # the centre goes to the crop centre; the square's outer pixel edges to the crop's
    np.testing.assert_allclose(t.apply([100.0, 50.0]), [9.5, 9.5])
    np.testing.assert_allclose(t.apply([[80.0, 30.0], [120.0, 70.0]]), [[-0.5, -0.5], [19.5, 19.5]])
    # turned by 90 degrees: the crop's x axis is the photo's +y direction
    r = square_transform((100.0, 50.0), 40.0, 20, (300, 200), angle=math.pi / 2)
    np.testing.assert_allclose(r.apply([100.0, 60.0]) - r.apply([100.0, 50.0]), [5.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("side,size,angle", [(60.0, 224, 0.0), (60.0, 224, 0.5), (230.0, 50, 0.0), (230.0, 40, -0.3),
                                             (100.0, 100, 0.0)])
def test_a_photo_point_lands_at_its_crop_pixel(side, size, angle):
    h, w = 240, 320
    spot = np.array([171.3, 122.8])
    sigma = side / 12.0  # a spot a few crop pixels wide at every scale
    img = blob(h, w, spot, sigma)
    crop, t = crop_square(img, (160.2, 118.9), side, size, angle=angle)
    assert crop.shape == (size, size, 3) and crop.dtype == np.float32
    np.testing.assert_allclose(centroid(crop), t.apply(spot), atol=0.05 * max(1.0, size / side) + 0.05)
    # and back: the brightest crop pixel maps to near the spot in the photo (within a pixel of
    # the coarser image: bilinear interpolation peaks at the photo's own pixel centres)
    iy, ix = np.unravel_index(np.argmax(crop[..., 0]), crop.shape[:2])
    assert np.linalg.norm(t.to_source([ix, iy]) - spot) <= 0.75 * max(1.0, 1.0 / t.scale)


def test_values_are_bilinear_samples_of_the_photo():
    rng = np.random.default_rng(1)
    img = rng.random((50, 60, 3)).astype(np.float32)
    crop, t = crop_square(img, (30.3, 20.6), 20.0, 37, angle=0.2)
    for u, v in [(0, 0), (5, 17), (36, 36), (20, 3)]:
        x, y = t.to_source([u, v])
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        want = ((1 - fx) * (1 - fy) * img[y0, x0] + fx * (1 - fy) * img[y0, x0 + 1]
                + (1 - fx) * fy * img[y0 + 1, x0] + fx * fy * img[y0 + 1, x0 + 1])
        np.testing.assert_allclose(crop[v, u], want, atol=1e-5)


def test_shrinking_is_antialiased():
    """A 1-pixel checkerboard shrunk 4x must come out flat grey, not aliased."""
    y, x = np.mgrid[0:400, 0:400]
    img = np.repeat(((x + y) % 2).astype(np.float32)[:, :, None], 3, axis=2)
    crop, _ = crop_square(img, (199.5, 199.5), 400.0, 100)
    assert abs(crop.mean() - 0.5) < 0.01 and crop.std() < 0.02


def test_padding_outside_the_photo():
    img = np.full((40, 40, 3), 0.7, np.float32)
    crop, t = crop_square(img, (0.0, 0.0), 40.0, 40)  # the photo's corner sits at the crop's centre
    mask = t.valid_mask()
    assert mask.shape == (40, 40)
    # crop pixel 19.5 is photo 0: crop pixels 20.. read the photo, 0..19 are padding
    assert mask[20:, 20:].all() and not mask[:20].any() and not mask[:, :20].any()
    np.testing.assert_allclose(crop[mask], 0.7, atol=1e-6)
    np.testing.assert_array_equal(crop[~mask], 0.0)
    border, _ = crop_square(img, (0.0, 0.0), 40.0, 40, padding="border")
    np.testing.assert_allclose(border, 0.7, atol=1e-6)
    far, _ = crop_square(img, (500.0, 500.0), 40.0, 16)  # nothing of the photo
    assert far.shape == (16, 16, 3) and not far.any()


def test_valid_mask_matches_every_pixel_test():
    """The shortcut for crops whose corners all lie in the photo gives what testing each pixel
    gives, for crops inside, across the edge, at the edge exactly, and turned."""
    rng = np.random.default_rng(5)
    cases = [((20.0, 20.0), 30.0, 0.0), ((19.5, 19.5), 39.0, 0.0), ((0.0, 20.0), 30.0, 0.0), ((20.0, 20.0), 30.0, 0.7)]
    cases += [(tuple(rng.uniform(-10, 50, 2)), float(rng.uniform(5, 60)), float(rng.uniform(-3, 3))) for _ in range(40)]
    for centre, side, angle in cases:
        t = square_transform(centre, side, 24, (40, 40), angle)
        u, v = np.meshgrid(np.arange(24.0), np.arange(24.0))
        src = t.to_source(np.stack([u, v], -1))
        every = (src >= -1e-6).all(-1) & (src <= 39 + 1e-6).all(-1)
        np.testing.assert_array_equal(t.valid_mask(), every)
    assert square_transform((19.5, 19.5), 39.0, 24, (40, 40)).valid_mask().all()


def test_torch_uint8_and_numpy_inputs_agree():
    rng = np.random.default_rng(2)
    u8 = (rng.random((30, 50, 3)) * 255).astype(np.uint8)
    a, t = crop_square(u8, (25.0, 15.0), 24.0, 32, angle=0.3)
    b = warp(u8.astype(np.float32) / 255, t)
    c = warp(torch.from_numpy(u8.astype(np.float32) / 255).permute(2, 0, 1), t)
    assert a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert c.shape == (3, 32, 32)
    np.testing.assert_allclose(c.permute(1, 2, 0).numpy(), b, atol=1e-5)     # OpenCV and grid_sample
    with pytest.raises(ValueError, match="transform reads"):
        warp(u8[:10], t)


def test_numpy_crops_by_opencv_match_the_torch_path():
    """A numpy image is resampled by OpenCV (``_warp_opencv``), a tensor by ``grid_sample``: the same
    values to 1e-5 (a few thousandths of a level), for uint8, float and grey images, shrunk (box filter first) or not,
    turned, across the photo's edge, with either padding."""
    rng = np.random.default_rng(7)
    photos = [(rng.random((90, 120, 3)) * 255).astype(np.uint8), rng.random((90, 120, 3)).astype(np.float32),
              rng.random((90, 120)).astype(np.float64)]
    cases = [((60.0, 45.0), 40.0, 0.0), ((60.3, 44.6), 70.0, 0.4), ((5.0, 80.0), 60.0, -1.1),   # the last: over the edge
             ((60.0, 45.0), 150.0, 2.0), ((100.0, 10.0), 90.0, 3.0)]                             # shrunk 3x-4x
    for img in photos:
        as_float = img.astype(np.float32) / (255 if img.dtype == np.uint8 else 1)
        tensor = torch.from_numpy(as_float if img.ndim == 2 else as_float.transpose(2, 0, 1).copy())
        for centre, side, angle in cases:
            for padding in ("zeros", "border"):
                a, t = crop_square(img, centre, side, 32, angle=angle, padding=padding)
                b = warp(tensor, t, padding).numpy()
                assert a.dtype == np.float32 and a.shape == (32, 32) + img.shape[2:]
                np.testing.assert_allclose(a, b if img.ndim == 2 else b.transpose(1, 2, 0), atol=1e-5)


@pytest.mark.parametrize("h, w, k", [(37, 41, 2), (30, 45, 3), (29, 23, 5), (8, 8, 4), (3, 9, 4)])
@pytest.mark.parametrize("channels", [0, 3])
def test_box_reduce_is_ceil_mode_average_pooling(h, w, k, channels):
    from stn3dmm.photos.crop import _box_reduce

    rng = np.random.default_rng(h * w + k)
    u8 = rng.integers(0, 256, (h, w, channels) if channels else (h, w), dtype=np.uint8)
    ref = torch.nn.functional.avg_pool2d(torch.from_numpy(u8 / 255.0).reshape(h, w, -1).permute(2, 0, 1)[None],
                                         k, stride=k, ceil_mode=True)[0]
    big = np.zeros((h + 7, w + 9) + u8.shape[2:], np.float32)
    big[3:3 + h, 5:5 + w] = u8 / np.float32(255)
    for region in (u8, u8.astype(np.float32) / 255, big[3:3 + h, 5:5 + w]):     # the last: a view, rows strided
        got = _box_reduce(region, k)
        assert got.dtype == torch.float32 and got.shape == ref.shape and got.is_contiguous()
        np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=2e-7)


def _face(points, bbox=None):
    points = np.asarray(points, float)
    bbox = np.concatenate([points.min(0), points.max(0)]) if bbox is None else np.asarray(bbox, float)
    return SimpleNamespace(points=points, bbox=bbox, keypoints=None)


def test_crop_face_centres_and_scales_the_face():
    rng = np.random.default_rng(3)
    pts = rng.uniform([200, 100], [300, 220], (468, 2))  # a 100 x 120 px face
    pts[:2] = [[200, 100], [300, 220]]
    face = _face(pts)
    img = rng.random((400, 500, 3)).astype(np.float32)
    crop, t = crop_face(img, face)
    assert crop.shape == (DEFAULT_SIZE, DEFAULT_SIZE, 3)
    q = t.apply(pts)
    lo, hi = q.min(0), q.max(0)
    np.testing.assert_allclose((lo + hi) / 2, [(DEFAULT_SIZE - 1) / 2] * 2, atol=1e-6)
    # the longer side (120 px) plus 20 % margin each side fills the crop
    assert (hi - lo).max() == pytest.approx(DEFAULT_SIZE / 1.4, rel=1e-6)
    crop2, t2 = crop_face(img, face, size=112, margin=0.5)
    assert crop2.shape == (112, 112, 3) and t2.scale == pytest.approx(112 / 240)
    # no landmarks: the detector box
    c3, t3 = crop_face(img, SimpleNamespace(points=None, bbox=np.array([10.0, 20.0, 60.0, 80.0])), size=64, margin=0)
    np.testing.assert_allclose(t3.apply([[10.0, 20.0], [60.0, 80.0]])[:, 1], [-0.5, 63.5], atol=1e-9)


def test_crop_face_align_levels_the_eyes():
    eyes = np.array([[100.0, 120.0], [160.0, 140.0]])
    face = SimpleNamespace(points=None, bbox=np.array([80.0, 90.0, 180.0, 200.0]), keypoints=None,
                           eye_centers=lambda: eyes)
    _, _, angle = face_square(face, align=True)
    assert angle == pytest.approx(math.atan2(20, 60))
    img = np.zeros((300, 300, 3), np.float32)
    _, t = crop_face(img, face, align=True)
    e = t.apply(eyes)
    assert abs(e[0, 1] - e[1, 1]) < 1e-9 and e[1, 0] > e[0, 0]


def test_crop_transform_is_plain_data():
    t = CropTransform(np.array([[2.0, 0.0, 1.0], [0.0, 2.0, -3.0]]), (10, 10), (20, 20))
    np.testing.assert_allclose(t.apply([1.0, 2.0]), [3.0, 1.0])
    np.testing.assert_allclose(t.to_source([3.0, 1.0]), [1.0, 2.0])


@pytest.mark.parametrize("angle_deg", [0.0, 30.0, 90.0, -120.0, 179.0])
def test_landmark_turn_is_the_crop_turn_that_shows_the_face_upright(angle_deg):
    """68 points of an upright face in a crop turned by ``angle``, mapped back to the photo: their
    turn is that angle (the crop's ``angle`` that shows them upright again)."""
    from stn3dmm.photos.crop import landmark_turn

    rng = np.random.default_rng(1)
    upright = rng.normal(0.0, 3.0, (68, 2)) + [100.0, 100.0]
    upright[36:48] += [0.0, -25.0]                      # eyes above the mouth in the crop
    upright[48:68] += [0.0, 30.0]
    t = square_transform((320.0, 240.0), 300.0, 200, (640, 480), math.radians(angle_deg))
    photo = t.to_source(upright)
    want = math.radians(angle_deg) + landmark_turn(upright)        # the crop's own points are nearly upright
    got = landmark_turn(photo)
    assert abs(math.remainder(got - want, 2 * math.pi)) < 1e-9
    assert abs(landmark_turn(t.apply(photo)) - landmark_turn(upright)) < 1e-9
