"""Tests of the landmark problem: the closed-form pose, the closed-form Jacobian, degenerate input."""

import math

import pytest
import torch
from fit_cases import pose_error_deg, random_theta

from stn3dmm.fitting.landmarks import ORIGINAL_PRIOR_WEIGHT, fit_landmarks
from stn3dmm.fitting.problem import LandmarkProblem, closed_form_pose


def test_closed_form_pose_recovers_an_exact_scaled_orthographic_camera(model, stn):
    th = random_theta(stn, 16, seed=1)
    th[:, 6:] = 0  # mean shape: the closed form is exact
    lm = stn.geometry(th).points[:, stn.landmark_index]
    pose = closed_form_pose(stn.mean[stn.landmark_index], lm, torch.ones(16, 68, dtype=torch.float64))
    assert pose_error_deg(pose, th).max() < 1e-6
    assert (pose[:, 3:6] - th[:, 3:6]).abs().max() < 1e-5


@pytest.mark.parametrize("scale", ["exp", "original"])
def test_closed_form_jacobian_matches_autograd(scale):
    g = torch.Generator().manual_seed(7)
    n_l, k, e, b = 12, 4, 3, 6
    mean = 50 * torch.randn(n_l, 3, generator=g, dtype=torch.float64)
    prob = LandmarkProblem(mean, torch.randn(k, n_l, 3, generator=g, dtype=torch.float64),
                    torch.randn(e, n_l, 3, generator=g, dtype=torch.float64),
                    k, e, 100 + 30 * torch.randn(b, n_l, 2, generator=g, dtype=torch.float64),
                    torch.rand(b, n_l, generator=g, dtype=torch.float64), 0.3, scale)
    th = torch.randn(b, 6 + k + e, generator=g, dtype=torch.float64)
    th[:, 3:5] += 100
    th[0, :3] = 0                                   # the rotation's special points
    th[1, :3] = torch.tensor([1e-8, 0, 0])
    th[2, :3] = torch.tensor([0, math.pi - 1e-4, 0])
    a, ref = prob.jacobian(th), prob.jacobian_autograd(th)
    assert (a - ref).abs().max() < 1e-9 * ref.abs().max()


def test_degenerate_input_raises_naming_the_images(model, stn):
    """No silent garbage: images a pose cannot be fitted to raise, each named by batch index."""
    th = random_theta(stn, 6, seed=11, max_yaw=30.0)
    lm = stn.geometry(th).points[:, stn.landmark_index]
    ones = torch.ones(6, 68, dtype=torch.float64)

    def raises(pattern, landmarks, vis=None, **kw):
        with pytest.raises(ValueError, match=pattern):
            fit_landmarks(model, landmarks, vis, **kw)

    bad = lm.clone()
    bad[1] = float("nan")                                         # all missing (visibility from NaN)
    raises(r"image\(s\) \[1\] have fewer than 4 visible landmarks \(\[0\]\)", bad)
    vis = ones.clone()
    vis[[2, 4]] = 0                                               # all visibility 0, two images
    raises(r"image\(s\) \[2, 4\] have fewer than 4", lm, vis)
    vis = torch.zeros(6, 68, dtype=torch.float64)
    vis[:, [36, 45, 30]] = 1                                      # 3 points: an exact, ambiguous "fit"
    raises(r"image\(s\) \[0, 1, 2, 3, 4, 5\] have fewer than 4 visible landmarks \(\[3, 3, 3, 3, 3, 3\]\)", lm, vis)
    bad = lm.clone()
    bad[3] = bad[3, :1]                                           # identical landmarks
    raises(r"image\(s\) \[3\] have visible landmarks spread over less than 1 px \(RMS \[0.0\]\)", bad)
    raises(r"image\(s\) \[0, 1, 2, 3, 4, 5\] have visible landmarks spread", lm / 1000)   # normalised coordinates
    vis = torch.zeros(6, 68, dtype=torch.float64)
    vis[:, 27:31] = 1                                             # the nose bridge: collinear in 3-D
    vis[5] = 1
    raises(r"image\(s\) \[0, 1, 2, 3, 4\]: the visible landmarks' model vertices are \(nearly\) coplanar", lm, vis)
    raises(r"image\(s\) \[0, 1, 2, 3, 4, 5\] have landmarks beyond \+-65536 px", lm * 1e4)
    # documented escape hatches: the bound is off with max_coordinate=None or replaced by image_size
    big = fit_landmarks(model, lm[:2] * 1e3, max_coordinate=None)
    assert big.error.max() < 1.0 * 1e3 and torch.isfinite(big.theta).all()
    raises(r"image\(s\) \[0, 1\] have landmarks far outside the 224 x 224 image", lm[:2] * 1e3, image_size=(224, 224))
    # the minimum is usable: 4 non-coplanar points give a finite fit and the right pose
    vis = torch.zeros(6, 68, dtype=torch.float64)
    vis[:, [36, 45, 30, 8]] = 1
    four = fit_landmarks(model, lm, vis, prior_weight=ORIGINAL_PRIOR_WEIGHT)
    assert torch.isfinite(four.theta).all() and pose_error_deg(four.theta, th).max() < 5.0
