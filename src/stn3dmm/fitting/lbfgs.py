"""L-BFGS on the landmark problem: ``method="lbfgs"``.

``torch.optim.LBFGS`` (strong-Wolfe line search) on the energy summed over the images, in
variables preconditioned by the Cholesky factor of each image's Gauss-Newton matrix at the start
(``z = L^T theta``, ``L L^T = J^T J``), so the problem is nearly isotropic. The images share the
optimiser, hence one iteration count and one stopping decision for the batch.
"""

from __future__ import annotations

import torch

from .problem import LandmarkProblem


def lbfgs(prob: LandmarkProblem, theta, max_iter, tol):
    """Minimise ``prob``'s summed energy from ``theta`` (B, P), P = 6+K+E, for at most
    ``max_iter`` iterations, stopping when the summed energy changes by at most ``tol`` (relative).

    Returns ``(theta (B, P), iterations (B,) long, converged (B,) bool, history (T + 1, B))``,
    history holding the energy at the start and after each iteration.
    """
    # Precondition with the Gauss-Newton matrix at the start: optimise z = L^T theta where
    # L L^T = J^T J + ridge (per image), so the energy is close to isotropic in z.
    with torch.no_grad():
        jac = prob.jacobian(theta)
        h = jac.transpose(1, 2) @ jac
        d = h.diagonal(dim1=1, dim2=2)
        h = h + torch.diag_embed(1e-6 * d + 1e-9 * d.amax(1, keepdim=True).clamp_min(1e-12))
        chol_t = torch.linalg.cholesky(h).transpose(1, 2)  # upper triangular L^T
        z0 = (chol_t @ theta[..., None])[..., 0]

    def to_theta(z):
        return torch.linalg.solve_triangular(chol_t, z[..., None], upper=True)[..., 0]

    z = z0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=1.0, max_iter=1, max_eval=30, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-14, tolerance_change=1e-16)

    def closure():
        opt.zero_grad()
        e = prob.energy(to_theta(z)).sum()
        e.backward()
        return e

    with torch.no_grad():
        history = [prob.energy(to_theta(z))]
    prev = history[0].sum()
    iters = 0
    converged = False
    for _ in range(max_iter):
        opt.step(closure)
        iters += 1
        with torch.no_grad():
            e = prob.energy(to_theta(z))
        history.append(e)
        tot = e.sum()
        if not bool(torch.isfinite(tot)):
            break
        if abs(float(prev - tot)) <= tol * (float(tot) + 1e-12):
            converged = True
            break
        prev = tot
    b = theta.shape[0]
    with torch.no_grad():
        out = to_theta(z)
    return (out, torch.full((b,), iters, dtype=torch.long, device=theta.device),
            torch.full((b,), converged, dtype=torch.bool, device=theta.device), torch.stack(history))


__all__ = ["lbfgs"]
