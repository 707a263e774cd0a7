"""The spatial transformer, visibility and fitting on the real default model (prepared once
per run by tests/conftest.py), and the original demo's photos when ../shared/data is present."""

import math

import pytest
import torch

from stn3dmm.stn.flip import flip_images, flip_landmarks, flip_theta
from stn3dmm.fitting.landmarks import ORIGINAL_PRIOR_WEIGHT, fit_landmarks
from stn3dmm.stn import MorphableSTN
from stn3dmm.stn.layers import axis_angle_to_rotation, rotation_to_axis_angle, rotate
from stn3dmm.stn.visibility import visibility_backface, visibility_depth


@pytest.fixture(scope="module")
def model(default_grid):
    return default_grid[0]


def _yaw(deg):
    return axis_angle_to_rotation(torch.tensor([0.0, math.radians(deg), 0.0], dtype=torch.float64))


def _exact_truth(posed, faces, front):
    """Exact ray casting (testkit.synthetic_models, brute force over all triangles) of the
    front-facing vertices; back-facing ones are invisible (an open mesh seen from behind)."""
    import numpy as np
    from testkit.synthetic_models import brute_force_visibility

    truth = np.zeros(len(front), dtype=bool)
    q = np.nonzero(front)[0]
    truth[q] = brute_force_visibility(posed.numpy(), faces.numpy(), query=q)
    return torch.from_numpy(truth)


@pytest.mark.parametrize("yaw", [0, 70])
def test_depth_test_agrees_with_exact_ray_casting_on_the_mean_face(model, yaw):
    """Rule (b) against exact ray casting. At 70 deg the nose hides part of the far cheek, which
    the back-face rule (a) calls visible; frontal, the buffer must not hide visible vertices next
    to the jaw's silhouette. Measured: agreement 99.61 % at 0 deg (24 falsely hidden, was 98.21 %
    and 179 before the exact step), 99.91 % at 70 (308 of the 313 hidden cheek vertices caught)."""
    mean = torch.as_tensor(model.mean, dtype=torch.float64)
    faces = torch.as_tensor(model.faces)
    posed = rotate(mean[None], _yaw(yaw)[None])
    a = visibility_backface(posed, faces)[0]
    b = visibility_depth(posed, faces)[0]
    truth = _exact_truth(posed[0], faces, a.numpy())
    assert not (b & ~a).any()                             # (b) only removes vertices
    agree = float((b == truth).double().mean())
    hidden_front = a & ~truth                             # front-facing but occluded: (a) is wrong there
    falsely_hidden = int((truth & ~b).sum())
    print(f"\nyaw {yaw}: (b) agrees with ray casting on {100 * agree:.2f} % of vertices, (a) on "
          f"{100 * float((a == truth).double().mean()):.2f} %; {falsely_hidden} falsely hidden, "
          f"{int((b & ~truth).sum())} falsely visible, {int(hidden_front.sum())} hidden front-facing")
    if yaw == 70:
        assert agree >= 0.997
        # a positive yaw turns the nose to image +x and the x > 0 cheek away, behind the nose
        x = mean[:, 0]
        cheek = hidden_front & (x > 5) & (x.abs() < 45) & (mean[:, 1].abs() < 40)
        assert int(cheek.sum()) > 150                     # the known answer: the nose hides the cheek ...
        assert float((~b[cheek]).double().mean()) >= 0.98  # ... and (b) hides it too
        assert float((~b[hidden_front]).double().mean()) >= 0.97
    else:
        assert agree >= 0.994 and falsely_hidden < 60


def _random_theta(n_params, b, seed, max_yaw=60.0):
    g = torch.Generator().manual_seed(seed)
    u = lambda: 2 * torch.rand(b, generator=g, dtype=torch.float64) - 1  # noqa: E731
    yaw, pitch, roll = math.radians(max_yaw) * u(), math.radians(20) * u(), math.radians(15) * u()
    R = []
    for y, p, r in zip(yaw, pitch, roll):
        R.append(axis_angle_to_rotation(torch.stack([p, 0 * p, 0 * p])) @ axis_angle_to_rotation(
            torch.stack([0 * y, y, 0 * y])) @ axis_angle_to_rotation(torch.stack([0 * r, 0 * r, r])))
    th = torch.zeros(b, n_params, dtype=torch.float64)
    th[:, :3] = rotation_to_axis_angle(torch.stack(R))
    th[:, 3:5] = 112 + 10 * torch.randn(b, 2, generator=g, dtype=torch.float64)
    th[:, 5] = math.log(0.9) + 0.1 * torch.randn(b, generator=g, dtype=torch.float64)
    th[:, 6:] = torch.randn(b, n_params - 6, generator=g, dtype=torch.float64)
    return th, torch.rad2deg(yaw)


def _pose_error_deg(a, b):
    ra, rb = axis_angle_to_rotation(a[:, :3]), axis_angle_to_rotation(b[:, :3])
    return torch.rad2deg(rotation_to_axis_angle(ra @ rb.transpose(1, 2)).norm(dim=1))


@pytest.mark.parametrize("landmarks", ["ibug68", "aflw21"])
def test_fit_noise_free_landmarks(model, landmarks):
    stn = MorphableSTN(model, landmarks=landmarks, visibility="none").double()
    th, yaw = _random_theta(stn.n_params, 32, seed=1)
    assert yaw.abs().max() <= 60
    lm = stn.geometry(th).points[:, stn.landmark_index]
    # clean landmarks: the original's small weight (the default, MAP for 1 px noise, pulls the
    # shape to the mean: iBUG-68 pose error max 1.66 deg, AFLW-21 2.04 deg, landmarks < 0.4 px)
    res = fit_landmarks(model, lm, method="lm", prior_weight=ORIGINAL_PRIOR_WEIGHT)
    pose = _pose_error_deg(res.theta, th)
    print(f"\nreal model, {landmarks}, no noise: landmark error max {res.error.max():.3f} px, "
          f"pose error mean {pose.mean():.2f} max {pose.max():.2f} deg")
    assert res.error.max() < 0.5, res.error
    if landmarks == "ibug68":
        assert pose.max() < 1.0
    else:   # 21 points for 26 unknowns and the prior: shape and pose trade off a little
        assert pose.mean() < 1.0 and pose.max() < 2.0
    default = fit_landmarks(model, lm, method="lm")
    assert default.error.max() < 0.5 and _pose_error_deg(default.theta, th).mean() < 1.0


def _shape_rms_mm(stn, a, b):
    return ((stn.geometry(a).shape - stn.geometry(b).shape) ** 2).sum(-1).mean(1).sqrt()


@pytest.mark.parametrize("landmarks, ratio", [("ibug68", 0.7), ("aflw21", 0.8)])
def test_fit_with_one_pixel_noise_beats_the_mean_shape(model, landmarks, ratio):
    """At the default prior weight (1 = sigma^2, the MAP weight for this noise) the fitted shape
    beats the mean shape with either landmark set. Measured (seed 2, 64 faces): AFLW-21 2.97 mm
    vs 4.20 mm mean shape, iBUG-68 2.53 vs 4.20; at the original's ratio (0.111) AFLW-21 gave
    4.53 mm, worse than the mean shape."""
    stn = MorphableSTN(model, landmarks=landmarks, visibility="none").double()
    th, _ = _random_theta(stn.n_params, 64, seed=2)
    lm = stn.geometry(th).points[:, stn.landmark_index]
    noisy = lm + torch.randn(lm.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    res = fit_landmarks(model, noisy, method="lm")
    base = th.clone()
    base[:, 6:] = 0
    fitted, baseline = _shape_rms_mm(stn, res.theta, th), _shape_rms_mm(stn, base, th)
    orig = _shape_rms_mm(stn, fit_landmarks(model, noisy, method="lm", prior_weight=ORIGINAL_PRIOR_WEIGHT).theta, th)
    print(f"\nreal model, {landmarks}, 1 px noise: shape RMS error {fitted.mean():.2f} mm fitted (original's weight: "
          f"{orig.mean():.2f}) vs {baseline.mean():.2f} mm mean shape; pose error "
          f"{_pose_error_deg(res.theta, th).mean():.2f} deg")
    assert fitted.mean() < ratio * baseline.mean()
    assert fitted.mean() < 0.85 * orig.mean()            # the MAP weight beats the original's ratio
    assert _pose_error_deg(res.theta, th).mean() < 2.0


def test_demo_photos_fit_within_the_original_bar(model, demo_inputs):
    images, labels = demo_inputs
    # the original's layers, run to full convergence, reach 3.1 px with 5 + 5 components
    res = fit_landmarks(model, labels, method="lm", n_id=5, n_exp=5, image_size=(224, 224))
    assert res.error.mean() <= 3.1 and res.error.max() < 4.0, res.error
    full = fit_landmarks(model, labels, method="lm", image_size=(224, 224))
    assert full.error.mean() <= res.error.mean() + 1e-6


def test_flipped_photo_flattens_to_the_mirrored_texture(model, demo_inputs):
    images, labels = demo_inputs
    images, labels = images[:2].double(), labels[:2]
    res = fit_landmarks(model, labels, method="lm", image_size=(224, 224))
    stn = MorphableSTN(model, visibility="depth").double()
    out = stn(images, res.theta.double())
    # fit the mirrored photo from its mirrored, re-ordered landmarks
    fl = flip_landmarks(labels, 224)
    res_f = fit_landmarks(model, fl, method="lm", image_size=(224, 224))

    def mismatch(theta_f):
        out_f = stn(flip_images(images), theta_f)
        both = (out["mask"] * out_f["mask"].flip(-1)) > 0
        assert both.float().mean() > 0.4
        return float((out["flattened"] - out_f["flattened"].flip(-1)).abs().mean(1, keepdim=True)[both].mean())

    diff = mismatch(res_f.theta.double())
    print(f"\nflip consistency on demo photos 1-2: mean |difference| {diff:.4f}")
    # 0..1 scale: resampling + model asymmetry. Measured 0.0164 at the fit; a 1 px error in the
    # mirrored fit's translation gives 0.0245 (x) / 0.0212 (y), 2 px 0.041 / 0.035
    assert diff < 0.02, diff
    shifted = res_f.theta.double().clone()
    shifted[:, 3] += 1.0
    assert mismatch(shifted) > 0.02                    # the tolerance catches a 1 px error
    # and the mirrored theta lands near the refit (labels and model are not exactly symmetric)
    pred = flip_theta(res.theta, 224)
    assert (pred[:, 3:5] - res_f.theta[:, 3:5]).abs().max() < 6.0
