"""Fitting theta to 2-D landmarks through the STN's own layers, batched over images.

The paper's fitting demo and how ours differs from the original's: docs/paper.md, "The fitting demo".

This module owns :func:`fit_landmarks`, its result type :class:`FitResult` and the prior
weights. The energy, its residuals, the closed-form start and the checks of degenerate input
are :mod:`stn3dmm.fitting.problem`'s; each method is a module of its own.

Prior weight: for Gaussian label noise of sigma px per coordinate the energy
``sum_l v_l |P_l - y_l|^2 + prior_weight * sum alpha^2`` is 2 sigma^2 times the negative log
posterior, so the MAP weight is ``sigma^2`` (px^2). The default for ``"lm"`` and ``"lbfgs"`` is
:data:`DEFAULT_PRIOR_WEIGHT` = 1 (1 px noise): on random faces of the default model with 1 px
noise it gives the smallest shape error of the weights tried, with AFLW-21 and with iBUG-68, and
the original's ratio does worse there than the mean shape. The original's ratio of training loss
weights, 0.1 / 0.8998 (:data:`ORIGINAL_PRIOR_WEIGHT`, sigma = 0.33 px), suits nearly clean
landmarks; pass ``prior_weight=sigma**2`` for your labels. ``"gd"`` reproduces the original
demo, which had no prior: its default weight is 0.

Methods:

* ``"lm"`` (default, fast): batched Levenberg-Marquardt (:mod:`stn3dmm.fitting.lm`).
* ``"lbfgs"``: ``torch.optim.LBFGS`` in Gauss-Newton preconditioned variables (:mod:`stn3dmm.fitting.lbfgs`).
* ``"gd"``: the original demo's plain gradient descent, slow by design, kept for reference
  (:mod:`stn3dmm.fitting.gd`). Its defaults are the demo's: start r = 0, t = (112, 112) in the
  original's frame, logs = 1 with ``s = 0.99 ** logs`` (``scale="original"``), alpha drawn from
  N(0, 1), step 1e-6 with the shape gradient x101, no prior, and stop once the batch's total
  energy changes by less than 1.

The start (``init``) is ``"closed_form"`` for lm and lbfgs and ``"original"`` for gd (see
:mod:`stn3dmm.fitting.problem`). All computation runs in float64; results come back in the
landmarks' dtype.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch

from ..core.conventions import DEFAULT_SCALE, SCALE_MAPS
from ..core.threads import cpu_threads
from ..stn.layers import check_landmarks
from .gd import STOP_RULES, gradient_descent
from .lbfgs import lbfgs
from .lm import levenberg_marquardt
from .problem import (MIN_DEPTH_RATIO, MIN_SPREAD_PX, MIN_VISIBLE, LandmarkProblem, check_fit_input, closed_form_pose,
                      initial_theta, landmark_rows)

METHODS = ("lm", "gd", "lbfgs")
#: The original's training prior weight relative to its landmark weight (0.1 / 0.8998).
ORIGINAL_PRIOR_WEIGHT = 0.1 / 0.8998
#: The default prior weight of "lm" and "lbfgs": sigma^2 for 1 px label noise (module docstring).
DEFAULT_PRIOR_WEIGHT = 1.0


@dataclass
class FitResult:
    """What :func:`fit_landmarks` returns (all tensors on the landmarks' device)."""

    theta: torch.Tensor        #: (B, 6 + n_id + n_exp) fitted parameters (scale map ``scale``)
    residuals: torch.Tensor    #: (B, L) distance |P_l - y_l| in px (NaN where the label is missing)
    error: torch.Tensor        #: (B,) mean distance over landmarks with visibility > 0, px
    loss: torch.Tensor         #: (B,) final energy E(theta)
    iterations: torch.Tensor   #: (B,) long, iterations each image ran
    converged: torch.Tensor    #: (B,) bool, stopped by the tolerance rather than max_iter
    history: torch.Tensor      #: (T + 1, B) energy after each iteration (row 0: the start)
    method: str
    scale: str
    n_id: int
    n_exp: int


def fit_landmarks(model, landmarks: torch.Tensor, visibility: torch.Tensor | None = None, *, method: str = "lm",
                  prior_weight: float | None = None, n_id: int | None = None, n_exp: int | None = None,
                  init=None, max_iter: int | None = None, tol: float | None = None, landmark_set=None,
                  scale: str | None = None, image_size: tuple | None = None, init_alpha: str | None = None,
                  lr: float = 1e-6, shape_boost: float = 101.0, generator: torch.Generator | None = None,
                  threads: int | None = 1, max_coordinate: float | None = 65536.0, stop: str = "batch") -> FitResult:
    """Fit theta to 2-D landmarks, batched over images (the energy: :mod:`stn3dmm.fitting.problem`).

    Args:
        model: a :class:`~stn3dmm.model.MorphableModel` or a :class:`~stn3dmm.stn.MorphableSTN`.
        landmarks: (B, L, 2) labelled landmarks, ours (0-based px, y down); NaN where missing.
        visibility: (B, L) weights, 0 = missing (default: 1 where finite).
        method: ``"lm"`` (default), ``"lbfgs"`` or ``"gd"``.
        prior_weight: weight of ``sum alpha^2`` relative to the landmark term, px^2 (MAP: the
            squared label noise sigma^2). Default: :data:`DEFAULT_PRIOR_WEIGHT` (1) for lm and
            lbfgs, 0 for gd (the original demo had no prior).
        n_id, n_exp: number of identity / expression coefficients to fit (leading components;
            default: all). theta has ``6 + n_id + n_exp`` columns.
        init: ``"closed_form"``, ``"original"`` or a theta tensor (default per method).
        max_iter: iteration cap, at least 1 (default: lm 100, lbfgs 300, gd 20000).
        tol: stopping threshold (default: lm 1e-10 relative energy decrease of an accepted step;
            lbfgs 1e-12 relative change of the summed energy; gd 1.0 absolute change of the
            batch's total energy, the original's).
        landmark_set: which of the model's landmark sets (name or vertex indices, each in
            [0, N)); default from L (21 -> aflw21, 68 -> ibug68), or the MorphableSTN's own.
        scale: scale map of the returned (and optimised) ``logs``: ``"exp"`` (default for lm and
            lbfgs) or ``"original"`` (``s = 0.99 ** logs``, default for gd).
        image_size: (H, W); when given, visible landmarks far outside the image raise ValueError;
            also sets H for the ``"original"`` start (default 224).
        init_alpha: ``"zeros"`` (default for lm and lbfgs) or ``"random"`` (N(0, 1), as the
            original demo; default for gd).
        lr, shape_boost: gradient-descent step and shape-gradient multiplier (the original's 1e-6, 101).
        generator: random generator for ``init_alpha="random"`` (default: torch's global one).
        threads: torch CPU threads while fitting (default 1: many tiny operations, where more
            threads only add overhead, and slow down badly on a busy machine; see
            :mod:`stn3dmm.core.threads`); None keeps the process's setting. No effect on CUDA.
        max_coordinate: without ``image_size``, visible landmarks beyond +-this many px raise
            ValueError (None: no bound).
        stop: gd's stopping rule: ``"batch"`` (default, the original's: the change of the
            batch's total energy) or ``"image"`` (each image on the change of its own).

    Raises:
        ValueError: bad arguments, or images a pose cannot be fitted to (see :func:`check_fit_input`),
            all such images named by batch index.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if scale is None:
        scale = "original" if method == "gd" else DEFAULT_SCALE
    if init_alpha is None:
        init_alpha = "random" if method == "gd" else "zeros"
    if stop not in STOP_RULES:
        raise ValueError(f"stop must be one of {STOP_RULES}, got {stop!r}")
    if scale not in SCALE_MAPS:
        raise ValueError(f"scale must be one of {SCALE_MAPS}, got {scale!r}")
    if prior_weight is None:
        prior_weight = 0.0 if method == "gd" else DEFAULT_PRIOR_WEIGHT
    if not (prior_weight >= 0 and math.isfinite(prior_weight)):
        raise ValueError(f"prior_weight must be a finite non-negative number, got {prior_weight}")
    if max_iter is not None and not _is_count(max_iter):
        raise ValueError(f"max_iter must be an integer of at least 1, got {max_iter!r}")
    landmarks, visibility = check_landmarks(landmarks, visibility, image_size=image_size)
    with cpu_threads(threads, landmarks.device):
        return _fit(model, landmarks, visibility, method, prior_weight, n_id, n_exp, init, max_iter, tol,
                    landmark_set, scale, image_size, init_alpha, lr, shape_boost, generator,
                    None if image_size is not None else max_coordinate, stop)


def _is_count(n) -> bool:
    """An integer (Python or NumPy, not a bool) of at least 1."""
    try:
        return not isinstance(n, bool) and operator.index(n) >= 1
    except TypeError:
        return False


def _fit(model, landmarks, visibility, method, prior_weight, n_id, n_exp, init, max_iter, tol, landmark_set,
         scale, image_size, init_alpha, lr, shape_boost, generator, max_coordinate, stop) -> FitResult:
    out_dtype, device = landmarks.dtype, landmarks.device
    b, n_l, _ = landmarks.shape
    mean_l, bid_l, bexp_l, n_id, n_exp = landmark_rows(model, landmark_set, n_l, n_id, n_exp, torch.float64, device)
    check_fit_input(landmarks, visibility, mean_l, max_coordinate)
    y = landmarks.to(torch.float64)
    v = visibility.to(torch.float64)
    prob = LandmarkProblem(mean_l, bid_l, bexp_l, n_id, n_exp, y, v, prior_weight, scale)
    if init is None:
        init = "original" if method == "gd" else "closed_form"
    theta = initial_theta(init, init_alpha, prob, prob.y, v, b, image_size, scale, generator)
    defaults = {"lm": (100, 1e-10), "lbfgs": (300, 1e-12), "gd": (20000, 1.0)}[method]
    max_iter = defaults[0] if max_iter is None else int(max_iter)
    tol = defaults[1] if tol is None else float(tol)
    if method == "lm":
        theta, iters, conv, hist = levenberg_marquardt(prob, theta, max_iter, tol)
    elif method == "lbfgs":
        theta, iters, conv, hist = lbfgs(prob, theta, max_iter, tol)
    else:
        theta, iters, conv, hist = gradient_descent(prob, theta, max_iter, tol, lr, shape_boost, stop)
    with torch.no_grad():
        p = prob.project(theta)
        dist = (p - y).norm(dim=-1)
        dist = torch.where(torch.isfinite(y).all(-1), dist, torch.full_like(dist, float("nan")))
        used = v > 0
        err = torch.where(used, dist, torch.zeros_like(dist)).sum(1) / used.sum(1).clamp_min(1)
        loss = prob.energy(theta)
    return FitResult(theta=theta.to(out_dtype), residuals=dist.to(out_dtype), error=err.to(out_dtype),
                     loss=loss.to(out_dtype), iterations=iters, converged=conv, history=hist.to(out_dtype),
                     method=method, scale=scale, n_id=n_id, n_exp=n_exp)


__all__ = ["FitResult", "fit_landmarks", "closed_form_pose", "check_fit_input", "METHODS", "DEFAULT_PRIOR_WEIGHT",
           "ORIGINAL_PRIOR_WEIGHT", "MIN_VISIBLE", "MIN_SPREAD_PX", "MIN_DEPTH_RATIO"]
