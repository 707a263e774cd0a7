"""Batched Levenberg-Marquardt on the landmark problem: ``method="lm"``, the default.

Each image's stacked residuals ``[sqrt(v) (P - y); sqrt(prior_weight) alpha]``
(:class:`~stn3dmm.fitting.problem.LandmarkProblem`) are minimised with their closed-form
Jacobian; the small ``(6+K+E)^2`` damped normal equations are solved batched with
``torch.linalg.solve``. Every image keeps its own damping and stops on its own.
"""

from __future__ import annotations

import torch

from .problem import LandmarkProblem


def levenberg_marquardt(prob: LandmarkProblem, theta, max_iter, tol):
    """Minimise ``prob``'s energy from ``theta`` (B, P), P = 6+K+E, for at most ``max_iter``
    iterations; an image stops when an accepted step lowers its energy by less than ``tol``
    (relative), its step vanishes, its damping saturates or its energy reaches zero.

    Returns ``(theta (B, P), iterations (B,) long, converged (B,) bool, history (T + 1, B))``,
    history holding the energy at the start and after each iteration.
    """
    b = theta.shape[0]
    mu = torch.full((b,), 1e-3, dtype=theta.dtype, device=theta.device)
    active = torch.ones(b, dtype=torch.bool, device=theta.device)
    converged = torch.zeros_like(active)
    iters = torch.zeros(b, dtype=torch.long, device=theta.device)
    cost = prob.energy(theta)
    history = [cost]
    eye = torch.eye(prob.n_params, dtype=theta.dtype, device=theta.device)
    for _ in range(max_iter):
        r = prob.residuals(theta)
        jac = prob.jacobian(theta)
        jtj = jac.transpose(1, 2) @ jac
        g = (jac.transpose(1, 2) @ r[..., None])[..., 0]
        diag = jtj.diagonal(dim1=1, dim2=2)
        diag = torch.maximum(diag, 1e-9 * diag.amax(1, keepdim=True).clamp_min(1e-30))
        a = jtj + mu[:, None, None] * torch.diag_embed(diag) + 1e-30 * eye
        delta = -torch.linalg.solve(a, g[..., None])[..., 0]
        new = theta + delta
        cost_new = prob.energy(new)
        accept = active & torch.isfinite(cost_new) & (cost_new < cost)
        decrease = (cost - cost_new) / cost.clamp_min(1e-300)
        theta = torch.where(accept[:, None], new, theta)
        small_step = delta.norm(dim=1) <= 1e-12 * (theta.norm(dim=1) + 1e-12)
        done = active & ((accept & (decrease < tol)) | small_step | (mu >= 1e12) | (cost_new <= 1e-24))
        cost = torch.where(accept, cost_new, cost)
        mu = torch.where(accept, mu * 0.3, mu * 5.0).clamp(1e-12, 1e12)
        iters = iters + active.long()
        converged = converged | done
        active = active & ~done
        history.append(cost)
        if not bool(active.any()):
            break
    return theta, iters, converged, torch.stack(history)


__all__ = ["levenberg_marquardt"]
