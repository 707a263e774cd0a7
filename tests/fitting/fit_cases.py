"""Known answers for the fitting tests: random thetas of a synthetic STN and the errors of a fit."""

import numpy as np
import torch

from stn3dmm.stn.layers import axis_angle_to_rotation, rotation_to_axis_angle
from testkit import synthetic_models as syn


def random_theta(stn, b, seed, max_yaw=60.0):
    g = torch.Generator().manual_seed(seed)
    u = lambda: 2 * torch.rand(b, generator=g, dtype=torch.float64) - 1  # noqa: E731
    th = torch.zeros(b, stn.n_params, dtype=torch.float64)
    th[:, :3] = syn.euler_to_axis_angle(np.radians(max_yaw) * u().numpy(), np.radians(20) * u().numpy(),
                                        np.radians(20) * u().numpy())
    th[:, 3:5] = 112 + 15 * torch.randn(b, 2, generator=g, dtype=torch.float64)
    th[:, 5] = 0.15 * torch.randn(b, generator=g, dtype=torch.float64)
    th[:, 6:] = torch.randn(b, stn.n_params - 6, generator=g, dtype=torch.float64)
    return th


def pose_error_deg(a, b):
    ra, rb = axis_angle_to_rotation(a[:, :3]), axis_angle_to_rotation(b[:, :3])
    return torch.rad2deg(rotation_to_axis_angle(ra @ rb.transpose(1, 2)).norm(dim=1))


def shape_rms_mm(stn, th_a, th_b):
    """RMS vertex distance (mm) between the model instances (pose-free) of two thetas."""
    return ((stn.geometry(th_a).shape - stn.geometry(th_b).shape) ** 2).sum(-1).mean(1).sqrt()


def start_theta(model, landmarks, method="lm", init=None, init_alpha="zeros", image_size=None, generator=None,
                prior_weight=1.0, scale=None):
    """The theta :func:`~stn3dmm.fitting.fit_landmarks` starts from (its ``init`` and ``init_alpha``),
    built as it builds it: fit_landmarks runs at least one iteration (max_iter >= 1)."""
    from stn3dmm.core.conventions import DEFAULT_SCALE
    from stn3dmm.fitting.problem import LandmarkProblem, initial_theta, landmark_rows

    y = landmarks.to(torch.float64)
    v = torch.isfinite(y).all(-1).to(torch.float64)
    b, n_l, _ = y.shape
    mean_l, bid_l, bexp_l, n_id, n_exp = landmark_rows(model, None, n_l, None, None, torch.float64, y.device)
    scale = scale or DEFAULT_SCALE
    prob = LandmarkProblem(mean_l, bid_l, bexp_l, n_id, n_exp, y, v, prior_weight, scale)
    init = init or ("original" if method == "gd" else "closed_form")
    return initial_theta(init, init_alpha, prob, prob.y, v, b, image_size, scale, generator)
