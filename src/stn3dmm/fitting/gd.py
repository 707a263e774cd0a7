"""The original demo's plain gradient descent on the landmark problem: ``method="gd"``.

The original demo's loop: evaluate the batch's energy and its gradient, step
``theta -= lr * grad`` with the shape coefficients' gradient boosted x ``shape_boost``, and
stop once the batch's total energy has changed by less than ``tol`` since the previous
iteration (the step of that iteration is still taken, as in the original's ``while`` loop).
:func:`~stn3dmm.fitting.landmarks.fit_landmarks` gives it the demo's settings by default (step
1e-6, boost 101, tolerance 1, no prior, ``s = 0.99 ** logs``). ``stop="image"`` stops each image
on the change of its own energy instead. Slow by design; kept to show the layers at work and
to reproduce the original. The step acts on theta in the chosen scale map: with
``scale="original"`` the dynamics are the original's; with ``"exp"`` the logs step is about
100x larger relative to its effect (``d s / d logs = s`` instead of ``0.01 s``).
"""

from __future__ import annotations

import math

import torch

from ..core.conventions import N_POSE
from .problem import LandmarkProblem

STOP_RULES = ("batch", "image")


def gradient_descent(prob: LandmarkProblem, theta, max_iter, tol, lr, shape_boost, stop="batch"):
    """Descend ``prob``'s energy from ``theta`` (B, P), P = 6+K+E, for at most ``max_iter`` steps.

    Each iteration evaluates the energies E_k (B,) at theta_k and their gradient, then steps
    ``theta_{k+1} = theta_k - lr * boost * grad`` (the shape columns' boost ``shape_boost``), and
    stops after that step when ``|sum E_k - sum E_{k-1}| < tol`` (``stop="batch"``, the
    original's rule; images run together) or, per image, ``|E_k - E_{k-1}| < tol``
    (``stop="image"``: a stopped image keeps its theta). ValueError if the energy diverges.

    Returns ``(theta (B, P), iterations (B,) long, converged (B,) bool, history (T + 1, B))``,
    history holding the energy at the start and after each iteration.
    """
    if stop not in STOP_RULES:
        raise ValueError(f"stop must be one of {STOP_RULES}, got {stop!r}")
    b = theta.shape[0]
    boost = torch.ones(prob.n_params, dtype=theta.dtype, device=theta.device)
    boost[N_POSE:] = shape_boost
    active = torch.ones(b, dtype=torch.bool, device=theta.device)
    iters = torch.zeros(b, dtype=torch.long, device=theta.device)
    prev = torch.full((b,), math.inf, dtype=theta.dtype, device=theta.device)
    theta = theta.clone()
    history = []
    for _ in range(max_iter):
        th = theta.detach().requires_grad_(True)
        e = prob.energy(th)
        (g,) = torch.autograd.grad(e.sum(), th)
        with torch.no_grad():
            e = e.detach()
            if not bool(torch.isfinite(e[active]).all()):
                raise ValueError("gradient descent diverged (energy not finite); lower lr")
            history.append(e)
            change = (e.sum() - prev.sum()).abs().expand(b) if stop == "batch" else (e - prev).abs()
            theta = torch.where(active[:, None], theta - lr * boost * g, theta)
            iters = iters + active.long()
            prev = e
            active = active & ~(change < tol)
        if not bool(active.any()):
            break
    with torch.no_grad():
        last = prob.energy(theta)
    if not bool(torch.isfinite(last).all()):
        raise ValueError("gradient descent diverged (energy not finite); lower lr")
    history.append(last)
    return theta, iters, ~active, torch.stack(history)


__all__ = ["gradient_descent", "STOP_RULES"]
