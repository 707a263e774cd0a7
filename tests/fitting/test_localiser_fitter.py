"""Fitting by the localiser: the cascade's re-cropping, the face-box framing, test-time mirror
averaging, and theta carried from the localiser's crop into the flatten crop of the same square
(known answers with networks whose output is fixed or biased)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from stn3dmm.fitting.localiser import LocaliserFitter, face_turn, shifted_crops, unshift_theta, upright_frame
from stn3dmm.nets.shipped import WEIGHTS, WEIGHTS_DIR
from stn3dmm.photos.crop import crop_square, landmark_square, transform_theta

THETA = torch.tensor([0.05, 0.3, -0.02, 57.0, 54.0, -0.7] + [0.3] * 10 + [-0.2] * 10)


class FixedNet(nn.Module):
    """Answers THETA for every crop, counting its calls."""

    image_size = (112, 112)

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        assert x.shape[1:] == (3, 112, 112)
        self.calls += 1
        return THETA.expand(x.shape[0], -1) + 0 * self.dummy


@pytest.fixture(scope="module")
def model(default_grid):
    return default_grid[0]


def test_second_pass_crops_the_first_pass_landmarks(model):
    image = np.random.default_rng(0).uniform(0, 1, (300, 400, 3)).astype(np.float32)
    square = (np.array([200.0, 150.0]), 180.0)
    one = LocaliserFitter(FixedNet(), model, 10, 10, passes=1, mirror=False).from_squares([image], [square])[0]
    fitter = LocaliserFitter(FixedNet(), model, 10, 10, passes=2, mirror=False, batch=1)
    two = fitter.from_squares([image, image], [square, square])
    assert fitter.net.calls == 4               # 2 passes x 2 faces, batch 1 (the fitter runs its own copy)
    # the second crop is framed and turned upright by the first pass's points (derolling)
    turn = face_turn(torch.as_tensor(one.theta)[None], [0.0])[0]
    c, s = upright_frame(one.points68, turn, lambda p: landmark_square(p, "ibug68"))
    np.testing.assert_allclose(two[0].square[0], c, atol=1e-9)
    assert two[0].square[1] == pytest.approx(s) and two[0].angle == turn != 0.0
    plain = LocaliserFitter(FixedNet(), model, 10, 10, passes=2, mirror=False, deroll=False)
    c, s = landmark_square(one.points68, "ibug68")            # without derolling: the first crop's turn
    kept = plain.from_squares([image], [square])[0]
    np.testing.assert_allclose(kept.square[0], c, atol=1e-9)
    assert kept.square[1] == pytest.approx(s) and kept.angle == 0.0
    # the points are theta's projection, mapped from the crop back to the photo
    pts = LocaliserFitter(FixedNet(), model, 10, 10).landmarks(THETA[None])[0].double().numpy()
    np.testing.assert_allclose(two[1].transform.apply(two[1].points68), pts, atol=1e-3)


class BiasedNet(nn.Module):
    """t_x is the crop's brightness centroid plus 3 px and r_y is 0.2: a network with a left-right
    bias, which a mirrored crop reverses."""

    image_size = (112, 112)

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        w = x.mean(1)                                              # (B, S, S)
        cx = (w.sum(1) * torch.arange(x.shape[-1], dtype=x.dtype)).sum(-1) / w.sum((1, 2))
        th = THETA.expand(x.shape[0], -1).clone()
        th[:, 1], th[:, 2], th[:, 3] = 0.2, 0.0, cx + 3.0
        return th


def test_mirror_averaging_cancels_a_left_right_bias(model):
    image = np.zeros((200, 200, 3), np.float32)
    image[60:140, 70:100] = 1.0                                   # a bright bar left of centre
    square = (np.array([100.0, 100.0]), 112.0)                    # the crop is the photo's 112 px centre
    fitter = LocaliserFitter(BiasedNet(), model, 10, 10, passes=2, batch=64, sweep=1)
    face = fitter.from_squares([image], [square])[0]
    assert fitter.net.calls == 2                                  # two passes, the last with the mirror in its batch
    crop, _ = crop_square(image, *face.square, 112, angle=face.angle)
    w = crop.mean(-1)
    cx = float((w.sum(0) * np.arange(112)).sum() / w.sum())
    assert face.theta[3] == pytest.approx(cx, abs=1e-4)           # +3 px and its mirror's -3 px cancel
    assert face.theta[1] == pytest.approx(0.0, abs=1e-7)          # so do r_y = 0.2 and its mirror's -0.2
    off = LocaliserFitter(BiasedNet(), model, 10, 10, passes=2, mirror=False).from_squares([image], [square])[0]
    assert off.angle == pytest.approx(face.angle, abs=1e-3)
    assert off.theta[3] == pytest.approx(cx + 3.0, abs=0.5) and off.theta[1] == pytest.approx(0.2)


def _centroid(x: torch.Tensor) -> torch.Tensor:
    """(B, 2) brightness centroid (x, y) of (B, C, S, S) crops, in their pixels."""
    w = x.mean(1)
    ar = torch.arange(x.shape[-1], dtype=x.dtype)
    return torch.stack([(w.sum(1) * ar).sum(-1), (w.sum(2) * ar).sum(-1)], 1) / w.sum((1, 2))[:, None]


def test_shifted_copies_map_back_by_their_offsets():
    crops = torch.zeros(2, 3, 112, 112)
    crops[0, :, 30:50, 40:70] = 1.0
    crops[1, :, 60:90, 20:45] = 1.0
    copies, offsets = shifted_crops(crops, 3)
    assert copies.shape == (10, 3, 112, 112) and torch.equal(copies[:2], crops)
    # a shift-equivariant localiser (t = the centroid): every copy's theta, moved back, is the crop's
    theta = THETA.expand(10, -1).clone()
    theta[:, 3:5] = _centroid(copies)
    back = unshift_theta(theta.reshape(5, 2, -1), offsets)
    torch.testing.assert_close(back[..., 3:5], _centroid(crops).expand(5, 2, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(back[..., 5:], theta.reshape(5, 2, -1)[..., 5:])     # scale and shape unmoved
    with pytest.raises(ValueError, match="shift"):
        shifted_crops(crops, 112)


def test_shift_averaging_goes_to_the_faces_marked_only(model):
    """A batch with some faces marked for shift averaging: each face's theta is what it gets in a
    batch of its own kind, and the mirror gaps come back in the batch's order."""
    crops = torch.zeros(3, 3, 112, 112)
    for k, (y, x) in enumerate(((30, 40), (60, 20), (50, 50))):
        crops[k, :, y:y + 25, x:x + 30] = 1.0
    fitter = LocaliserFitter(CentroidNet(), model, 10, 10, passes=1, shift=3)
    which = np.array([True, False, True])
    gaps = []
    theta = fitter._predict_some_shifted(crops, True, 3, which, gaps, False)
    shifted = fitter.predict_crops(crops[[0, 2]], mirror=True, shift=3)
    plain_gaps = []
    plain = fitter.predict_crops(crops, mirror=True, gaps=plain_gaps)
    torch.testing.assert_close(theta[[0, 2]], shifted)
    torch.testing.assert_close(theta[1], plain[1])
    assert not torch.allclose(theta[0], plain[0])
    torch.testing.assert_close(gaps[0], plain_gaps[0])        # the gap is the crop's own, shifted or not


class CentroidNet(BiasedNet):
    """t is the crop's brightness centroid plus a bias that grows with its distance from the crop's
    centre (a network that is not shift-equivariant): each shifted copy answers differently."""

    def forward(self, x):
        self.calls += 1
        c = _centroid(x)
        th = THETA.expand(x.shape[0], -1).clone()
        th[:, 3:5] = c + 0.05 * (c - 55.5) ** 2
        return th


def test_shift_averaging_averages_the_copies_mapped_back(model):
    image = np.zeros((200, 200, 3), np.float32)
    image[60:140, 70:100] = 1.0
    square = (np.array([100.0, 100.0]), 112.0)
    fitter = LocaliserFitter(CentroidNet(), model, 10, 10, passes=1, mirror=False, shift=3)
    face = fitter.from_squares([image], [square])[0]
    crop, _ = crop_square(image, *face.square, 112)
    c = _centroid(torch.from_numpy(crop).permute(2, 0, 1)[None].double())[0].numpy()
    d = np.array([[0, 0], [3, 0], [-3, 0], [0, 3], [0, -3]], np.float64)
    want = np.mean([c + 0.05 * (c - o - 55.5) ** 2 for o in d], 0)   # copy k sees the bar at c - d_k
    np.testing.assert_allclose(face.theta[3:5], want, atol=1e-3)
    assert abs(face.theta[3] - (c[0] + 0.05 * (c[0] - 55.5) ** 2)) > 0.1   # not the unshifted answer
    with pytest.raises(ValueError, match="shift"):
        LocaliserFitter(CentroidNet(), model, 10, 10, shift=-1)


@pytest.mark.parametrize("passes", [1, 2])
def test_a_face_turned_upside_down_is_cropped_upright(model, passes):
    """The same photo turned by 180 degrees, its box and the turn pi: each crop is the first's
    turned, so a network answering one theta puts the 68 points on the first's points turned by
    180 degrees; the cascade's second square is framed in the face's upright frame as well."""
    h, w = 300, 400
    image = np.random.default_rng(1).uniform(0, 1, (h, w, 3)).astype(np.float32)
    box = np.array([150.0, 90.0, 250.0, 210.0])
    fitter = LocaliserFitter(FixedNet(), model, 10, 10, passes=passes, mirror=False, box_framing=(0.9, 0.0, 0.05))
    up = fitter.from_boxes([image], [box])[0]
    turned_box = np.array([w - 1 - box[2], h - 1 - box[3], w - 1 - box[0], h - 1 - box[1]])
    down = fitter.from_boxes([image[::-1, ::-1]], [turned_box], [np.pi])[0]
    want = np.stack([w - 1 - up.points68[:, 0], h - 1 - up.points68[:, 1]], 1)
    np.testing.assert_allclose(down.points68, want, atol=1e-3)
    np.testing.assert_allclose(down.square[0], [w - 1 - up.square[0][0], h - 1 - up.square[0][1]], atol=1e-6)
    assert down.square[1] == pytest.approx(up.square[1])
    assert math.remainder(down.angle - up.angle - np.pi, 2 * np.pi) == pytest.approx(0.0, abs=1e-9)


def test_box_framing_gives_the_68_point_square(model):
    fitter = LocaliserFitter(FixedNet(), model, 10, 10, box_framing=(0.8, 0.05, 0.1))
    box = np.array([100.0, 50.0, 200.0, 170.0])          # 100 x 120: d = 120
    c, s = fitter.box_square(box)
    lm_centre = np.array([150.0, 110.0]) + np.array([0.05, 0.1]) * 120
    half = 0.5 * 0.8 * 120
    want_c, want_s = landmark_square(np.array([lm_centre - half, lm_centre + half, lm_centre]), "ibug68")
    np.testing.assert_allclose(c, want_c)
    assert s == pytest.approx(want_s)


def test_theta_follows_the_square_into_a_larger_crop(model):
    """theta in the 112 crop and its transform_theta into the 224 crop of the same square put the
    model's vertices on the same photo points (flatten's --method localiser)."""
    from stn3dmm.stn import MorphableSTN

    stn = MorphableSTN(model, landmarks=None, n_id=10, n_exp=10, max_outside=None)
    image = np.zeros((300, 300, 3), np.float32)
    _, t112 = crop_square(image, (140.0, 160.0), 170.0, 112)
    _, t224 = crop_square(image, (140.0, 160.0), 170.0, 224)
    k = 2.0
    th224 = transform_theta(THETA.double().numpy(), np.array([[k, 0, 0.5 * (k - 1)], [0, k, 0.5 * (k - 1)]]))
    p112 = stn.geometry(THETA[None].double().float()).points[0].double().numpy()
    p224 = stn.geometry(torch.as_tensor(th224, dtype=torch.float32)[None]).points[0].double().numpy()
    np.testing.assert_allclose(t112.to_source(p112), t224.to_source(p224), atol=2e-3)


def test_the_mirror_gap_is_the_distance_of_the_two_predictions_and_ignores_shifts(model):
    """The biased network's t_x is 3 px right of the centroid on a crop and on its mirror, so the
    mirror's theta mapped back lies 6 px from the crop's (plus its r_y of 0.2 against -0.2): the gap
    is at least 6 px over the side. Shift averaging does not change the gap of the crop itself;
    without mirror averaging there is none (NaN)."""
    image = np.zeros((200, 200, 3), np.float32)
    image[60:140, 70:100] = 1.0
    square = (np.array([100.0, 100.0]), 112.0)
    face = LocaliserFitter(BiasedNet(), model, 10, 10, passes=1, sweep=1).from_squares([image], [square])[0]
    assert 6.0 / 112 < face.mirror_gap < 0.5
    shifted = LocaliserFitter(BiasedNet(), model, 10, 10, passes=1, shift=3, sweep=1).from_squares([image], [square])[0]
    assert shifted.mirror_gap == pytest.approx(face.mirror_gap, rel=1e-6)
    off = LocaliserFitter(BiasedNet(), model, 10, 10, passes=1, mirror=False).from_squares([image], [square])[0]
    assert np.isnan(off.mirror_gap)


ROLLED = THETA.clone()
ROLLED[2] = 0.5                 # a face rolled by about 29 degrees in every crop


class RolledNet(FixedNet):
    def forward(self, x):
        return super().forward(x) - THETA + ROLLED


def test_derolling_turns_each_crop_by_the_roll_the_pass_before_read(model):
    """A network that sees every face rolled by the same angle (r_z = 0.5): the first pass reads its
    roll, the second crop is turned by it so the face would stand unrolled, and the third by twice
    that (the network reads the same roll again in the turned crop). The pose in the photo carries
    the crops' turns."""
    from stn3dmm.stn.pose import pose_from_theta, pose_in_photo

    image = np.random.default_rng(2).uniform(0, 1, (300, 400, 3)).astype(np.float32)
    square = (np.array([200.0, 150.0]), 180.0)
    faces = [LocaliserFitter(RolledNet(), model, 10, 10, passes=n, mirror=False).from_squares([image], [square])[0]
             for n in (1, 2, 3)]
    roll = float(pose_from_theta(ROLLED[None].double())[0, 2])
    assert 25 < abs(roll) < 32                                     # about 0.5 rad about the camera axis
    assert faces[1].angle == pytest.approx(math.radians(-roll))
    assert faces[2].angle == pytest.approx(math.radians(-2 * roll))
    pose = pose_in_photo(torch.as_tensor(faces[2].theta, dtype=torch.float64)[None], faces[2].angle)[0]
    assert float(pose[2]) == pytest.approx(3 * roll, abs=1e-3)    # rolled three times in the photo


SURE = torch.tensor([0.0, 0.0, 0.0, 55.5, 55.5, -0.7] + [0.0] * 20)


class SureOfDarkNet(FixedNet):
    """A mirror-symmetric face, with t_x moved by 20 px times the brightness of the crop's bottom
    half: mirroring the crop does not move that half, so the network disagrees with itself (the
    mirror gap) where the bottom half is bright, and agrees where it is dark."""

    def forward(self, x):
        out = super().forward(x) - THETA + SURE
        return out + torch.nn.functional.pad(20 * x[:, :, 56:].mean((1, 2, 3))[:, None], (3, 22))


def test_the_sweep_keeps_the_turn_the_network_is_surest_of(model):
    """A bright patch below the face: upright, the crop's bottom half is bright and the network unsure
    (gap above SWEEP_GAP); turned upside down the bottom half is dark and the network sure, and the
    tries at 135 and 225 degrees nearly so. This network reads no roll, so each try ends at its own
    turn: within ``sweep_agree`` = 45 degrees the neighbours agree with the half turn, and the sweep
    keeps it; so does the surest alone (``sweep_agree=None``). Within the default 20 degrees no try
    agrees, and the first turn stays; so it does below the gap, with no turn sure enough
    (``sweep_sure``), or without mirror averaging."""
    image = np.zeros((300, 300, 3), np.float32)
    image[200:240, 55:245] = 1.0
    square = (np.array([150.0, 150.0]), 200.0)
    first = LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=1).from_squares([image], [square])[0]
    assert first.mirror_gap > 0.03 and abs(first.angle) < 0.05
    for agree in (45.0, None):
        swept = LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=8, sweep_agree=agree).from_squares([image], [square])[0]
        assert abs(math.remainder(swept.angle - math.pi, 2 * math.pi)) < 0.05
        assert swept.mirror_gap < 0.012 < first.mirror_gap
    for fitter in (LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=8),
                   LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=8, sweep_agree=45.0, sweep_gap=1.0),
                   LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=8, sweep_agree=45.0, sweep_sure=0.0),
                   LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=8, sweep_agree=45.0, mirror=False)):
        assert abs(fitter.from_squares([image], [square])[0].angle) < 0.05
    with pytest.raises(ValueError, match="sweep"):
        LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=0)


def test_a_far_turn_must_also_beat_the_cascades_gap_by_sweep_far(model):
    """The half turn of the test above is taken where its gap is below ``sweep_far`` times the
    upright cascade's gap, and left where it is not; a try a quarter turn or less away is never
    held to that bar."""
    image = np.zeros((300, 300, 3), np.float32)
    image[200:240, 55:245] = 1.0
    square = (np.array([150.0, 150.0]), 200.0)
    first = LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=1).from_squares([image], [square])[0]
    swept = LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=8, sweep_agree=45.0).from_squares([image], [square])[0]
    assert swept.mirror_gap == 0 < first.mirror_gap            # upside down this face is symmetric
    for far, turned in ((0.01, True), (0.0, False)):
        found = LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=8, sweep_agree=45.0,
                                sweep_far=far).from_squares([image], [square])[0]
        assert (abs(math.remainder(found.angle - math.pi, 2 * math.pi)) < 0.05) == turned
        assert turned or abs(found.angle) < 0.05
    near = LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep=8, sweep_agree=45.0, sweep_far=0.0)
    tries = [replace(first, angle=a, mirror_gap=g) for a, g in ((0.3, 0.001), (0.5, 0.002), (math.pi, 0.5))]
    assert near._surest_agreed(tries, first) is tries[0]                # 17 degrees from the first: no bar


class CountingSureOfDarkNet(SureOfDarkNet):
    """SureOfDarkNet, counting the crops it sees."""

    def forward(self, x):
        self.crops = getattr(self, "crops", 0) + x.shape[0]
        return super().forward(x)


def test_each_turned_try_of_the_sweep_takes_sweep_passes_passes(model):
    """The upside-down face of the test above: the first cascade sees 1 + 2 crops (a plain pass and
    the final one with its mirror); each of the 7 turned tries sees ``sweep_passes - 1`` plain
    crops and a final pair. The half turn still wins."""
    image = np.zeros((300, 300, 3), np.float32)
    image[200:240, 55:245] = 1.0
    square = (np.array([150.0, 150.0]), 200.0)
    for n in (1, 2, 3):
        fitter = LocaliserFitter(CountingSureOfDarkNet(), model, 10, 10, sweep=8, sweep_passes=n, sweep_agree=45.0)
        face = fitter.from_squares([image], [square])[0]
        assert fitter.net.crops == 3 + 7 * (n + 1)      # the fitter's own copy of the network counted
        assert abs(math.remainder(face.angle - math.pi, 2 * math.pi)) < 0.05
    with pytest.raises(ValueError, match="sweep_passes"):
        LocaliserFitter(SureOfDarkNet(), model, 10, 10, sweep_passes=0)


class BoxesAtTurns:
    """A stand-in detector: ``boxes_turned`` answers the box given for each quarter turn, and logs the asks."""

    def __init__(self, boxes: dict):
        self.boxes, self.asked = boxes, []

    def boxes_turned(self, image, quarter_turns):
        self.asked.append(quarter_turns)
        return [(np.asarray(b, np.float64), 0.9) for b in self.boxes.get(quarter_turns, [])]


def test_the_sweep_reframes_quarter_turns_from_the_box_found_in_the_turned_photo(model):
    """A try at a quarter turn starts from the detector's box in the photo turned so that the try's
    crop stands upright there (crop turn a = q quarter turns <-> ``np.rot90(photo, q)``), framed in
    the face's frame; the box most overlapping the first one is taken, none if none overlaps; a try
    at an eighth turn keeps the first square; each turn is detected once per face."""
    fitter = LocaliserFitter(FixedNet(), model, 10, 10, box_framing=(0.9, 0.0, 0.05))
    first = np.array([100.0, 100.0, 200.0, 200.0])
    near, other = [90.0, 120.0, 190.0, 220.0], [400.0, 400.0, 450.0, 450.0]
    fitter._detector = det = BoxesAtTurns({2: [other, near], 3: [other]})
    seen, image = {}, np.zeros((500, 500, 3), np.float32)
    square = fitter._redetected_square([image], [first], seen, 0, math.pi)
    want = fitter.box_square(np.array(near), math.pi)
    assert np.allclose(square[0], want[0]) and square[1] == pytest.approx(want[1])
    upright = fitter.box_square(np.array(near), 0.0)     # framed in the upside-down face's frame: the
    assert np.allclose(square[0], 2 * np.array([140.0, 170.0]) - upright[0])   # upright framing's shift, reversed
    assert abs(upright[0][1] - 170.0) > 3
    assert fitter._redetected_square([image], [first], seen, 0, -math.pi / 2) is None     # q = 3: no overlap
    assert fitter._redetected_square([image], [first], seen, 0, math.pi / 4) is None      # not a quarter turn
    assert fitter._redetected_square([image], [first], seen, 0, 2 * math.pi) is None      # upright: as first
    fitter._redetected_square([image], [first], seen, 0, -math.pi)
    assert det.asked == [2, 3]


class OtherFixedNet(FixedNet):
    """Answers THETA with its translation moved by (3, -2) px, counting its calls."""

    def forward(self, x):
        out = super().forward(x).clone()
        out[:, 3:5] += torch.tensor([3.0, -2.0])
        return out


def test_the_refiner_takes_the_final_pass_of_each_cascade(model):
    """With a refiner, a cascade of two or more passes of the localiser ends with one more pass,
    the refiner's (its theta is the result, the mirror gap stays the localiser's); a single pass is
    the localiser's; the sweep's turned tries are the localiser's alone, and the try taken gets the
    refiner's pass. A face re-framed further than the refiner learned takes one more pass of the
    localiser first."""
    image = np.random.default_rng(1).uniform(0, 1, (300, 400, 3)).astype(np.float32)
    square = (np.array([200.0, 150.0]), 180.0)
    anywhere = (1.0, 1.0, 180.0)            # the refiner takes any framing: no extra pass
    for passes in (1, 2, 3):
        fitter = LocaliserFitter(FixedNet(), model, 10, 10, passes=passes, mirror=False, refiner=OtherFixedNet(),
                                 refiner_framing=anywhere)
        face = fitter.from_squares([image], [square])[0]
        assert (fitter.net.calls, fitter.refiner.calls) == ((1, 0) if passes == 1 else (passes, 1))
        far = LocaliserFitter(FixedNet(), model, 10, 10, passes=passes, mirror=False, refiner=OtherFixedNet())
        far.from_squares([image], [square])
        assert (far.net.calls, far.refiner.calls) == ((1, 0) if passes == 1 else (passes + 1, 1))
        want = THETA.clone()
        want[3:5] += torch.tensor([3.0, -2.0]) if passes > 1 else 0.0
        np.testing.assert_allclose(face.theta, want.numpy(), atol=1e-5)
    dark = np.zeros((300, 300, 3), np.float32)
    dark[200:240, 55:245] = 1.0
    fitter = LocaliserFitter(CountingSureOfDarkNet(), model, 10, 10, sweep=8, sweep_passes=3, sweep_agree=45.0,
                             refiner=CountingSureOfDarkNet(), refiner_framing=anywhere)
    face = fitter.from_squares([dark], [(np.array([150.0, 150.0]), 200.0)])[0]
    # the refiner: a pair after the first cascade and after the taken try; the localiser: the rest
    assert (fitter.net.crops, fitter.refiner.crops) == (1 + 2 + 7 * 4, 2 + 2)
    plain = LocaliserFitter(CountingSureOfDarkNet(), model, 10, 10, sweep=8, sweep_passes=3, sweep_agree=45.0)
    alone = plain.from_squares([dark], [(np.array([150.0, 150.0]), 200.0)])[0]
    assert face.mirror_gap == pytest.approx(alone.mirror_gap)        # the localiser's gap, as without
    assert abs(math.remainder(face.angle - math.pi, 2 * math.pi)) < 0.05
    # shift averaging goes to the last pass: the refiner's five copies and their mirrors, not the localiser's
    image = np.zeros((300, 300, 3), np.float32)
    image[60:100, 55:245] = 1.0
    for shift_yaw, copies in ((0.0, 5), (30.0, 1)):     # the face is read at |yaw| 17: shifted only from 0
        shifting = LocaliserFitter(CountingSureOfDarkNet(), model, 10, 10, shift=3, shift_yaw=shift_yaw, sweep=1,
                                   refiner=CountingSureOfDarkNet(), refiner_framing=anywhere)
        shifting.from_squares([image], [(np.array([150.0, 150.0]), 200.0)])
        assert (shifting.net.crops, shifting.refiner.crops) == (1 + 2, copies * 2)
    small = FixedNet()
    small.image_size = (96, 96)
    with pytest.raises(ValueError, match="refiner's input is 96 px"):
        LocaliserFitter(FixedNet(), model, 10, 10, refiner=small)


@pytest.mark.skipif(not (WEIGHTS_DIR / WEIGHTS).is_file(), reason="the package holds no trained localiser yet")
def test_the_shipped_localiser_finds_the_same_face_by_either_engine(model):
    """load_localiser runs the package's ONNX graphs on the CPU by default (engine 'auto'), and they
    place a real photo's 68 points where the torch networks do; the engine is checked."""
    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.nets.runtime import OnnxNetwork
    from stn3dmm.photos import FaceDetector, read_photo
    from stn3dmm.photos.samples import sample_photo_paths

    image = read_photo(sample_photo_paths()[0]).image
    box = FaceDetector(landmarks=False)(image)[0].bbox
    by_onnx, by_torch = load_localiser(model=model), load_localiser(model=model, engine="torch")
    assert isinstance(by_onnx.net, OnnxNetwork) and isinstance(by_onnx.refiner, OnnxNetwork)
    assert isinstance(by_torch.net, nn.Module) and isinstance(by_torch.refiner, nn.Module)
    a, b = by_onnx.from_boxes([image], [box])[0], by_torch.from_boxes([image], [box])[0]
    assert np.abs(a.points68 - b.points68).max() < 0.01             # photo pixels
    assert a.mirror_gap == pytest.approx(b.mirror_gap, abs=1e-5)
    with pytest.raises(ValueError, match="engine must be one of"):
        load_localiser(model=model, engine="tensorrt")
    with pytest.raises(ValueError, match="the device is cuda"):
        load_localiser("cuda", model=model, engine="onnx")


@pytest.mark.skipif(not (WEIGHTS_DIR / WEIGHTS).is_file(), reason="the package holds no trained localiser yet")
def test_without_onnxruntime_auto_falls_back_to_torch(model, monkeypatch):
    import importlib.util

    from stn3dmm.fitting.localiser import load_localiser

    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else find(name, *a))
    assert isinstance(load_localiser(model=model).net, nn.Module)
    with pytest.raises(ValueError, match="onnxruntime is not installed"):
        load_localiser(model=model, engine="onnx")


class TopBrightIsDownNet(nn.Module):
    """An up-direction network that reads a crop whose top half is brighter than its bottom half as
    upside down (every logit on the half-turn bin), any other crop as upright."""

    def __init__(self):
        super().__init__()
        self.crops = []

    def forward(self, x):
        from stn3dmm.nets.upright import BINS

        self.crops.append(x.shape)
        half = x.shape[-2] // 2
        down = x[..., :half, :].mean((1, 2, 3)) > x[..., half:, :].mean((1, 2, 3))
        logits = torch.zeros(len(x), BINS)
        logits[:, -1] = torch.where(down, 20.0, -20.0)      # the last bin is the half turn
        logits[:, BINS // 2 - 1] = torch.where(down, -20.0, 20.0)   # the upright bin
        return logits


def test_the_up_direction_check_turns_a_face_it_reads_as_upside_down(model):
    """A bright patch above the face: the up-direction network reads the fit (upright, as FixedNet
    always answers) as upside down, so the face is localised again from its square turned by the
    half turn the network reads as up; that crop has the patch below, which the network reads as
    upright, and it is taken. With the patch below, nothing changes; above a take bar the network
    cannot meet, or an act bar it cannot pass, the first result stays."""
    from stn3dmm.nets.upright import CONTEXT, SIZE

    image = np.zeros((400, 400, 3), np.float32)
    image[40:120, 60:340] = 1.0
    square = (np.array([200.0, 200.0]), 150.0)
    plain = LocaliserFitter(FixedNet(), model, 10, 10, sweep=1).from_squares([image], [square])[0]
    up = TopBrightIsDownNet()
    fitter = LocaliserFitter(FixedNet(), model, 10, 10, sweep=1, upright=up, upright_gap=None)
    p, turn = fitter.up_direction([image], [plain])
    assert p[0] > 0.99 and abs(math.remainder(turn[0] - plain.angle - math.pi, 2 * math.pi)) < 0.15
    assert fitter.upright.crops[-1] == (1, 3, SIZE, SIZE) and CONTEXT > 1
    checked = fitter.from_squares([image], [square])[0]
    assert abs(math.remainder(checked.angle - math.pi, 2 * math.pi)) < 0.15 and abs(plain.angle) < 0.15
    assert np.allclose(checked.theta, plain.theta, atol=1e-5)                   # the same face, turned
    # FixedNet's mirror gap is the same on either crop: not below 1 x the first's, so the default gap bar keeps it
    for bars in (dict(upright_take=0.0, upright_gap=None), dict(upright_act=1.0, upright_gap=None), {}):
        kept = LocaliserFitter(FixedNet(), model, 10, 10, sweep=1, upright=TopBrightIsDownNet(), **bars)
        assert abs(kept.from_squares([image], [square])[0].angle) < 0.15
    assert plain.mirror_gap > 0
    loose = LocaliserFitter(FixedNet(), model, 10, 10, sweep=1, upright=TopBrightIsDownNet(), upright_gap=1.01)
    assert abs(math.remainder(loose.from_squares([image], [square])[0].angle - math.pi, 2 * math.pi)) < 0.15
    below = np.ascontiguousarray(image[::-1])
    assert abs(fitter.from_squares([below], [square])[0].angle) < 0.15


def test_the_up_direction_network_turns_the_first_crop_of_a_box(model):
    """From a face box, a bright patch above the face: the up-direction network reads the box's
    crop as upside down (p above the ``upright_first`` bar), so the cascade starts from the half turn
    (the check after it is off: act bar 1). The patch below, the bar off (None) or a bar the network
    cannot pass: the first crop stays as given."""
    image = np.zeros((400, 400, 3), np.float32)
    image[40:120, 60:340] = 1.0
    box = np.array([130.0, 130.0, 270.0, 270.0])

    def fitter(**kw):
        return LocaliserFitter(FixedNet(), model, 10, 10, sweep=1, upright=TopBrightIsDownNet(), upright_act=1.0, **kw)

    p, turn = fitter().first_reading([image], [box], [0.0])
    assert p[0] > 0.99 and abs(math.remainder(turn[0] - math.pi, 2 * math.pi)) < 0.15
    assert fitter().first_turns([image], [box], [0.3]) == [pytest.approx(turn[0] + 0.3, abs=0.15)]
    turned = fitter(upright_first=0.97).from_boxes([image], [box])[0]
    assert abs(math.remainder(turned.angle - math.pi, 2 * math.pi)) < 0.15
    for kw in (dict(upright_first=None), dict(upright_first=1.0)):
        assert abs(fitter(**kw).from_boxes([image], [box])[0].angle) < 0.15
    below = np.ascontiguousarray(image[::-1])
    assert abs(fitter(upright_first=0.97).from_boxes([below], [box])[0].angle) < 0.15


def test_the_lean_tries_a_face_fitted_upside_down_in_its_photo_the_other_way_up(model):
    """A bright patch below the face (upright by TopBrightIsDownNet's reading) and a first crop
    turned by a half turn: FixedNet fits the face upside down in the photo, the network reads that
    as off, and the check's own try is refused by its gap bar (FixedNet is as sure of either), so it
    is the lean that turns the face upright. With the patch above (a photo taken upside down), the
    network reads the upside-down fit as right and the lean leaves it; with the lean off, or a bar
    the network cannot pass, the fit stays upside down."""
    image = np.zeros((400, 400, 3), np.float32)
    image[280:360, 60:340] = 1.0
    square = (np.array([200.0, 200.0]), 150.0)

    def angle(img, **kw):
        fitter = LocaliserFitter(FixedNet(), model, 10, 10, sweep=1, upright=TopBrightIsDownNet(), **kw)
        r = fitter.from_squares([img], [square], [math.pi])[0]
        return abs(math.remainder(r.angle, 2 * math.pi))

    assert angle(image) < 0.15
    assert angle(image, lean_beyond=None) > math.pi - 0.15
    assert angle(image, lean_least=1.01) > math.pi - 0.15
    assert angle(image, lean_beyond=179.0) > math.pi - 0.15     # the fit stands the face 180 +- 0.x degrees
    assert angle(np.ascontiguousarray(image[::-1])) > math.pi - 0.15
