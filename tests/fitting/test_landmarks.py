"""Tests of fit_landmarks on the synthetic model: accuracy, noise robustness, the three methods, bad input."""

import math

import pytest
import torch
from fit_cases import pose_error_deg, random_theta, shape_rms_mm, start_theta

from stn3dmm.fitting.landmarks import DEFAULT_PRIOR_WEIGHT, ORIGINAL_PRIOR_WEIGHT, fit_landmarks
from stn3dmm.stn import MorphableSTN


def test_lm_noise_free_is_exact(model, stn):
    th = random_theta(stn, 24, seed=2)
    lm = stn.geometry(th).points[:, stn.landmark_index]
    # clean landmarks: the original's small prior weight (MAP for sigma = 0.33 px; the default,
    # 1 = MAP for 1 px noise, pulls the shape towards the mean: up to 1.05 deg pose error here)
    res = fit_landmarks(model, lm, method="lm", prior_weight=ORIGINAL_PRIOR_WEIGHT)
    assert res.theta.shape == (24, stn.n_params) and res.residuals.shape == (24, 68)
    assert res.error.max() < 0.5
    assert pose_error_deg(res.theta, th).max() < 1.0
    assert res.converged.all() and res.iterations.max() < 40
    # the result is a stationary point of the documented energy, computed here independently of
    # the fitter (the STN's layers + the prior): its gradient is ~0 relative to the start's ...
    def energy(t):
        p = stn.geometry(t).points[:, stn.landmark_index]
        return ((p - lm) ** 2).sum((1, 2)) + ORIGINAL_PRIOR_WEIGHT * (t[:, 6:] ** 2).sum(1)

    def grad(t):
        t = t.detach().clone().requires_grad_(True)
        return torch.autograd.grad(energy(t).sum(), t)[0], energy(t).detach()

    g_end, e_end = grad(res.theta)
    g_start, _ = grad(start_theta(model, lm, "lm", prior_weight=ORIGINAL_PRIOR_WEIGHT))
    assert (g_end.norm(dim=1) < 1e-6 * g_start.norm(dim=1)).all()
    # ... and the reported loss and last history entry are that energy
    assert torch.allclose(res.loss, e_end, rtol=1e-9, atol=1e-9)
    last = res.history[res.iterations, torch.arange(24)]
    assert torch.allclose(last, e_end, rtol=1e-9, atol=1e-9)
    # without the prior's pull the solution is the generating theta
    exact = fit_landmarks(model, lm, method="lm", prior_weight=1e-10)
    assert exact.error.max() < 1e-3 and pose_error_deg(exact.theta, th).max() < 1e-3
    assert (exact.theta[:, 6:] - th[:, 6:]).abs().max() < 1e-3


def test_lm_with_one_pixel_noise_beats_the_mean_shape(model, stn):
    th = random_theta(stn, 32, seed=3)
    lm = stn.geometry(th).points[:, stn.landmark_index]
    g = torch.Generator().manual_seed(4)
    noisy = lm + torch.randn(lm.shape, generator=g, dtype=torch.float64)
    res = fit_landmarks(model, noisy, method="lm")
    mean_shape = th.clone()
    mean_shape[:, 6:] = 0
    fitted_mm = shape_rms_mm(stn, res.theta, th)
    baseline_mm = shape_rms_mm(stn, mean_shape, th)
    print(f"\nshape error with 1 px noise: fitted {fitted_mm.mean():.2f} mm (median {fitted_mm.median():.2f}), "
          f"mean-shape baseline {baseline_mm.mean():.2f} mm; pose error {pose_error_deg(res.theta, th).mean():.2f} deg")
    assert fitted_mm.mean() < 0.6 * baseline_mm.mean()
    assert (fitted_mm < baseline_mm).float().mean() >= 0.8
    assert pose_error_deg(res.theta, th).mean() < 2.0
    # the landmark error is at the noise level: fitting more does not help
    assert 0.5 < res.error.mean() < 1.5


def test_missing_landmarks_and_float32(model, stn):
    th = random_theta(stn, 8, seed=5)
    lm = stn.geometry(th).points[:, stn.landmark_index].float()
    vis = torch.ones(8, 68)
    lm[:, :10] = float("nan")  # a missing jaw side
    vis[:, :10] = 0
    res = fit_landmarks(model, lm, vis, method="lm")
    assert res.theta.dtype == torch.float32
    assert torch.isnan(res.residuals[:, :10]).all() and res.error.max() < 0.5
    assert pose_error_deg(res.theta.double(), th).max() < 1.0


def test_lbfgs_reaches_the_same_quality(model, stn):
    th = random_theta(stn, 8, seed=6)
    lm = stn.geometry(th).points[:, stn.landmark_index]
    res = fit_landmarks(model, lm, method="lbfgs")
    assert res.error.max() < 0.5 and pose_error_deg(res.theta, th).max() < 1.0


def _original_demo_loop(stn, theta, lm, max_iter=5000):
    """The original demo's loop written out on the STN's own layers: loss = the batch's summed
    squared landmark error (no prior), gradient by autograd, alpha's gradient x101, step 1e-6;
    ``while ~(diffloss < 1)`` with diffloss the change of the loss since the previous pass,
    checked after the step. Returns (theta, passes, losses)."""
    th, loss, losses = theta.clone(), math.inf, []
    for it in range(1, max_iter + 1):
        x = th.detach().requires_grad_(True)
        total = ((stn.geometry(x, check=False).points[:, stn.landmark_index] - lm) ** 2).sum()
        (g,) = torch.autograd.grad(total, x)
        g[:, 6:] = g[:, 6:] + 100 * g[:, 6:]
        preloss, loss = loss, total.item()
        losses.append(loss)
        th = th - 1e-6 * g
        if abs(loss - preloss) < 1:
            return th, it, losses
    raise AssertionError("the loop did not stop")


def test_gradient_descent_defaults_run_the_original_demo_loop(model, stn):
    """method="gd" by default: start r = 0, t = (112, 112) y-up 1-based, logs = 1 with
    s = 0.99^logs, alpha ~ N(0, 1), step 1e-6, shape gradient x101, no prior, and the batch-total
    stopping rule. Same theta and pass count as the loop written out above."""
    stn_o = MorphableSTN(model, landmarks="ibug68", visibility="none", scale="original").double()
    th = random_theta(stn, 4, seed=7, max_yaw=15.0)
    th[:, 3:5] = 112.0
    lm = stn.geometry(th).points[:, stn.landmark_index]
    res = fit_landmarks(model, lm, method="gd", image_size=(224, 224), generator=torch.Generator().manual_seed(0))
    assert res.scale == "original" and res.method == "gd"
    start = start_theta(model, lm, "gd", init_alpha="random", image_size=(224, 224),
                        generator=torch.Generator().manual_seed(0), scale="original", prior_weight=0.0)
    want = torch.zeros(4, stn.n_params, dtype=torch.float64)
    want[:, 3:6] = torch.tensor([111.0, 112.0, 1.0])        # (112, 112) y-up 1-based; logs = 1 (s = 0.99)
    want[:, 6:] = torch.randn(4, stn.n_params - 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(start, want)
    ref, passes, losses = _original_demo_loop(stn_o, start, lm)
    assert (res.iterations == passes).all() and res.converged.all()
    assert torch.allclose(res.theta, ref, rtol=0, atol=1e-9)
    # history: the energies of each pass, then of the final theta; the rule fired on the last pass
    tot = res.history.sum(1)
    assert res.history.shape == (passes + 1, 4) and torch.allclose(tot[:-1], torch.tensor(losses, dtype=tot.dtype))
    change = (tot[1:passes] - tot[:passes - 1]).abs()
    assert change[-1] < 1 and (change[:-1] >= 1).all()
    assert (tot[1:] <= tot[:-1] + 1e-9).all() and tot[-1] < 0.1 * tot[0]   # monotone descent


def test_gradient_descent_per_image_rule(model, stn):
    """stop="image": each image stops after the step of its first pass whose own energy changed by
    < 1 and keeps its theta from then on."""
    th = random_theta(stn, 3, seed=11, max_yaw=15.0)
    th[:, 3:5] = 112.0
    th[2, 5] = 0.3                                      # a smaller face: a different convergence time
    lm = stn.geometry(th).points[:, stn.landmark_index]
    res = fit_landmarks(model, lm, method="gd", stop="image", generator=torch.Generator().manual_seed(1))
    h, it = res.history, res.iterations
    assert res.converged.all() and len(set(it.tolist())) > 1
    for k in range(3):
        n = int(it[k])
        change = (h[1:n, k] - h[:n - 1, k]).abs()
        assert change[-1] < 1 and (change[:-1] >= 1).all()
        assert (h[n:, k] == h[n, k]).all()
    with pytest.raises(ValueError, match="stop"):
        fit_landmarks(model, lm, method="gd", stop="never")


def test_gd_random_alpha_init_is_reproducible(model, stn):
    th = random_theta(stn, 2, seed=8, max_yaw=10.0)
    lm = stn.geometry(th).points[:, stn.landmark_index]
    kw = dict(method="gd", max_iter=1, init_alpha="random")
    a = fit_landmarks(model, lm, generator=torch.Generator().manual_seed(0), **kw).theta
    b = fit_landmarks(model, lm, generator=torch.Generator().manual_seed(0), **kw).theta
    assert torch.equal(a, b) and a[:, 6:].abs().sum() > 0
    s0 = start_theta(model, lm, "gd", init_alpha="random", generator=torch.Generator().manual_seed(0))
    assert torch.equal(s0, start_theta(model, lm, "gd", init_alpha="random",
                                       generator=torch.Generator().manual_seed(0))) and s0[:, 6:].abs().sum() > 0


def test_fit_accepts_an_stn_and_fewer_coefficients(model, stn):
    th = random_theta(stn, 4, seed=9)
    th[:, 6 + 2:6 + model.n_id] = 0
    th[:, 6 + model.n_id + 1:] = 0
    lm = stn.geometry(th).points[:, stn.landmark_index]
    res = fit_landmarks(stn, lm, n_id=2, n_exp=1, prior_weight=1e-10)
    assert res.theta.shape == (4, 9) and res.error.max() < 1e-3


def test_aflw21_and_bad_input(model, stn):
    s21 = MorphableSTN(model, landmarks="aflw21", visibility="none").double()
    th = random_theta(s21, 4, seed=10, max_yaw=30.0)
    lm = s21.geometry(th).points[:, s21.landmark_index]
    res = fit_landmarks(model, lm)  # 21 points -> aflw21
    assert res.error.max() < 0.5 and pose_error_deg(res.theta, th).max() < 2.0
    with pytest.raises(ValueError, match="far outside"):
        fit_landmarks(model, lm + 1000, image_size=(224, 224))
    bad = lm.clone()
    bad[0, 3, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinity"):
        fit_landmarks(model, bad, torch.ones(4, 21))
    with pytest.raises(ValueError, match="landmark set"):
        fit_landmarks(model, lm[:, :20])
    with pytest.raises(ValueError, match="method"):
        fit_landmarks(model, lm, method="adam")
    with pytest.raises(ValueError, match="init"):
        fit_landmarks(model, lm, init=torch.zeros(3))


def test_out_of_range_landmark_indices_and_no_iterations_are_refused(model):
    """Issue 11, item 17: an IndexError from deep inside, and max_iter <= 0 accepted silently."""
    lm = torch.full((1, 21, 2), 100.0) + torch.randn(1, 21, 2, generator=torch.Generator().manual_seed(0)) * 30
    n = model.n_vertices
    for bad in ([n] * 21, [-1] + list(range(20)), list(range(20)) + [10 ** 9]):
        with pytest.raises(ValueError, match=rf"landmark_set: vertex indices must lie in \[0, {n}\)"):
            fit_landmarks(model, lm, landmark_set=bad)
    for bad in (0, -5, 2.5, True, "10"):
        with pytest.raises(ValueError, match="max_iter must be an integer of at least 1"):
            fit_landmarks(model, lm, max_iter=bad)
    assert fit_landmarks(model, lm, max_iter=1).iterations.max() <= 1


def test_default_prior_weight_is_the_map_weight_for_one_pixel_noise(model, stn):
    """E = sum |P - y|^2 + w sum alpha^2 is 2 sigma^2 x the negative log posterior: w = sigma^2."""
    assert DEFAULT_PRIOR_WEIGHT == 1.0 and ORIGINAL_PRIOR_WEIGHT == pytest.approx(0.1 / 0.8998)
    th = random_theta(stn, 4, seed=12, max_yaw=20.0)
    lm = stn.geometry(th).points[:, stn.landmark_index]
    default = fit_landmarks(model, lm, method="lm")
    assert torch.allclose(default.theta, fit_landmarks(model, lm, method="lm", prior_weight=1.0).theta)
    kw = dict(method="gd", max_iter=3, init_alpha="zeros")
    gd = fit_landmarks(model, lm, **kw)                           # gd: the original demo had no prior
    assert torch.equal(gd.theta, fit_landmarks(model, lm, prior_weight=0.0, **kw).theta)
    assert not torch.equal(gd.theta, fit_landmarks(model, lm, prior_weight=ORIGINAL_PRIOR_WEIGHT, **kw).theta)
