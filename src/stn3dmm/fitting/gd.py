"""The original demo's plain gradient descent on the landmark problem: ``method="gd"``.

Steps ``lr`` on the summed energy, the shape coefficients' gradient boosted x ``shape_boost``,
stopping when an image's energy changes by less than ``tol`` (the original's 1e-6, 101 and 1 are
:func:`~stn3dmm.fitting.landmarks.fit_landmarks`'s defaults). Slow by design; kept for
reference. The step acts on theta in the chosen scale map: with ``scale="original"``
(``s = 0.99 ** logs``) the dynamics are exactly the original's; with ``"exp"`` the logs step is
~100x larger relative to its effect (d s / d logs = s instead of 0.01 s), which converges faster.
"""

from __future__ import annotations

import torch

from ..core.conventions import N_POSE
from .problem import LandmarkProblem


def gradient_descent(prob: LandmarkProblem, theta, max_iter, tol, lr, shape_boost):
    """Descend ``prob``'s energy from ``theta`` (B, P), P = 6+K+E: ``theta -= lr * boost * grad``
    with the shape columns' boost ``shape_boost``, for at most ``max_iter`` steps; an image stops
    when its energy changes by less than ``tol`` (absolute). ValueError if the energy diverges.

    Returns ``(theta (B, P), iterations (B,) long, converged (B,) bool, history (T + 1, B))``,
    history holding the energy at the start and after each iteration.
    """
    b = theta.shape[0]
    boost = torch.ones(prob.n_params, dtype=theta.dtype, device=theta.device)
    boost[N_POSE:] = shape_boost
    active = torch.ones(b, dtype=torch.bool, device=theta.device)
    iters = torch.zeros(b, dtype=torch.long, device=theta.device)
    theta = theta.clone()
    with torch.no_grad():
        cost = prob.energy(theta)
    history = [cost]
    for _ in range(max_iter):
        th = theta.detach().requires_grad_(True)
        e = prob.energy(th)
        (g,) = torch.autograd.grad(e.sum(), th)
        with torch.no_grad():
            theta = torch.where(active[:, None], theta - lr * boost * g, theta)
            new = prob.energy(theta)
            if not bool(torch.isfinite(new[active]).all()):
                raise ValueError("gradient descent diverged (energy not finite); lower lr")
            iters = iters + active.long()
            done = active & ((cost - new).abs() < tol)
            cost = torch.where(active, new, cost)
            active = active & ~done
            history.append(cost)
        if not bool(active.any()):
            break
    return theta, iters, ~active, torch.stack(history)


__all__ = ["gradient_descent"]
