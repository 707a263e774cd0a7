"""Fitting theta to 2-D landmarks through the STN's own layers (SPEC section 7), batched over images.

This module owns :func:`fit_landmarks` and its result type :class:`FitResult`. It minimises,
for every image independently (all images in one batched computation),

    E(theta) = sum_l v_l |P_l(theta) - y_l|^2  +  prior_weight * sum alpha^2

where ``P_l`` are the model's landmark vertices projected by :func:`~stn3dmm.stn.layers.grid_generator`
(the same layers the STN uses), ``y`` the labelled landmarks (ours: 0-based px, y down),
``v`` their visibility (0 = missing) and ``alpha`` the shape coefficients (N(0, 1) a priori).

Prior weight: for Gaussian label noise of sigma px per coordinate this E is 2 sigma^2 times the
negative log posterior, so the MAP weight is ``sigma^2`` (px^2). The default for ``"lm"`` and
``"lbfgs"`` is :data:`DEFAULT_PRIOR_WEIGHT` = 1 (1 px noise): on random faces of the default
model with 1 px noise it gives the smallest shape error of the weights tried, with AFLW-21 (2.97
mm RMS, against 4.53 mm at the original's ratio, worse than the mean shape's 4.20 mm) and iBUG-68
(2.53 vs 3.64 mm). The original's ratio of loss weights, 0.1 / 0.8998
(:data:`ORIGINAL_PRIOR_WEIGHT`, sigma = 0.33 px), stays the default for ``"gd"`` (the original's
dynamics) and suits nearly clean landmarks; pass ``prior_weight=sigma**2`` for your labels.

Methods:

* ``"lm"`` (default, fast): batched Levenberg-Marquardt on the stacked residuals
  ``[sqrt(v) (P - y); sqrt(prior_weight) alpha]``; Jacobians in closed form (batched einsums);
  the small ``(6+K+E)^2`` damped normal equations are solved batched with ``torch.linalg.solve``.
* ``"lbfgs"``: ``torch.optim.LBFGS`` (strong-Wolfe line search) on the summed energy, in
  variables preconditioned by the Cholesky factor of each image's Gauss-Newton matrix at the
  start (``z = L^T theta``, ``L L^T = J^T J``), so the problem is nearly isotropic.
* ``"gd"``: the original demo's plain gradient descent: step ``lr`` (1e-6) on the summed
  energy, the shape coefficients' gradient boosted x ``shape_boost`` (101), stopping when an
  image's energy changes by less than ``tol`` (1). Slow by design; kept for reference. The
  step acts on theta in the chosen scale map: with ``scale="original"`` (``s = 0.99 ** logs``)
  the dynamics are exactly the original's; with ``"exp"`` the logs step is ~100x larger
  relative to its effect (d s / d logs = s instead of 0.01 s), which converges faster.

Initialisation (``init``): ``"closed_form"`` (default for lm and lbfgs) aligns the mean
shape's landmarks to the 2-D landmarks by a weighted affine camera fit, projected to the
nearest scaled orthographic camera (SVD), giving r, t and s; ``"original"`` (default for gd)
is the original's start: r = 0, t = (112, 112) in its y-up 1-based frame converted to ours
(``stn3dmm.core.conventions.original_start_theta``; ``image_size`` sets H, default 224), logs for
s = 0.99; or a tensor ``(B, 6+K+E)`` / ``(6+K+E,)``. Shape coefficients start at zero
(``init_alpha="zeros"``, the prior's mode, deterministic) or N(0, 1) (``"random"``, as the
original demo did). All computation runs in float64; results come back in the landmarks' dtype.

Degenerate input raises :class:`ValueError` naming the images (batch indices) and the reason,
rather than returning a meaningless fit (:func:`check_fit_input`): fewer than
:data:`MIN_VISIBLE` (4) visible landmarks (a scaled-orthographic pose has 6 unknowns; 3 points
give 6 equations but a two-fold mirror ambiguity and an exact, uninformative fit; 4 non-coplanar
points determine it, as the closed-form start needs), visible landmarks spanning less than
:data:`MIN_SPREAD_PX` (1 px RMS about their centroid: identical points, or normalised
coordinates), visible landmarks whose model vertices are (nearly) coplanar (thinnest extent
under :data:`MIN_DEPTH_RATIO` of the widest: the pose's depth axis is then undetermined), and,
when no ``image_size`` is given, coordinates beyond ``max_coordinate`` (65536 px, the largest
photo side a PNG/JPEG decoder commonly accepts: another unit or convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..core.conventions import (_LN_099, DEFAULT_SCALE, N_POSE, ORIGINAL_IMAGE_SIZE, SCALE_MAPS, log_from_scale,
                          original_start_theta, scale_from_log)
from ..core.threads import cpu_threads
from ..model.morphable import SETS_BY_COUNT, landmark_indices
from ..stn.layers import (axis_angle_to_rotation, check_landmarks, grid_generator, morphable_model, rotate,
                         rotation_to_axis_angle, skew, split_theta)

METHODS = ("lm", "gd", "lbfgs")
#: The original's prior weight relative to its landmark weight (0.1 / 0.8998); the default of "gd".
ORIGINAL_PRIOR_WEIGHT = 0.1 / 0.8998
#: The default prior weight of "lm" and "lbfgs": sigma^2 for 1 px label noise (module docstring).
DEFAULT_PRIOR_WEIGHT = 1.0
#: Fewest visible landmarks per image (see the module docstring).
MIN_VISIBLE = 4
#: Smallest RMS distance (px) of an image's visible landmarks from their centroid.
MIN_SPREAD_PX = 1.0
#: Smallest ratio of the thinnest to the widest extent (singular values) of the visible landmarks' model vertices.
MIN_DEPTH_RATIO = 0.01


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


class _Problem:
    """The landmark rows of the model and the residual function (float64)."""

    def __init__(self, mean_l, bid_l, bexp_l, n_id, n_exp, y, v, prior_weight, scale):
        self.mean, self.bid, self.bexp = mean_l, bid_l, bexp_l
        self.n_id, self.n_exp, self.scale = n_id, n_exp, scale
        self.used = v > 0
        self.y = torch.where(self.used[..., None], y, torch.zeros_like(y))
        self.w = torch.where(self.used, v, torch.zeros_like(v)).sqrt()
        self.sqrt_prior = math.sqrt(prior_weight)
        self.n_params = N_POSE + n_id + n_exp

    def project(self, theta):
        return grid_generator(theta, self.mean, self.bid, self.bexp, self.n_id, self.n_exp, self.scale).points

    def residuals(self, theta, y=None, w=None):
        y = self.y if y is None else y
        w = self.w if w is None else w
        p = self.project(theta)
        rd = (w[..., None] * (p - y)).flatten(1)
        return torch.cat((rd, self.sqrt_prior * theta[:, N_POSE:]), 1)

    def energy(self, theta):
        r = self.residuals(theta)
        return (r * r).sum(1)

    def jacobian(self, theta):
        """(B, M, P) Jacobian of :meth:`residuals`, in closed form (batched einsums).

        With p = s D R X + t (D keeps x and -y) and X = mean + B_id a + B_exp b:
        dp/dt = I, dp/dlogs = s' D R X, dp/da_k = s D R B_k, and for the axis-angle r,
        d(R X)/dr = -[R X]_x J_l(r), J_l the left Jacobian of SO(3)
        (I + (1 - cos a)/a^2 K + (a - sin a)/a^3 K^2, K = [r]_x; Taylor series near 0)."""
        r, t, logs, a_id, a_exp = split_theta(theta, self.n_id, self.n_exp)
        x = morphable_model(self.mean, self.bid, self.bexp, a_id, a_exp)          # (B, L, 3)
        rot = axis_angle_to_rotation(r)
        rx = rotate(x, rot)                                                     # (B, L, 3)
        s = scale_from_log(logs, self.scale)                                    # (B,)
        ds = s * (1.0 if self.scale == "exp" else _LN_099)
        flip = torch.tensor([1.0, -1.0], dtype=theta.dtype, device=theta.device)
        b, n_l = x.shape[:2]
        # rotation: columns -[R X]_x J_l
        a2 = (r * r).sum(-1)
        a = a2.sqrt()
        small = a2 < 1e-4
        safe = torch.where(small, torch.ones_like(a), a)
        c1 = torch.where(small, 0.5 - a2 / 24, (1 - torch.cos(safe)) / safe ** 2)
        c2 = torch.where(small, 1.0 / 6 - a2 / 120, (safe - torch.sin(safe)) / safe ** 3)
        K = skew(r)
        jl = torch.eye(3, dtype=theta.dtype, device=theta.device) + c1[:, None, None] * K + c2[:, None, None] * (K @ K)
        d_rot = -skew(rx.reshape(-1, 3)).reshape(b, n_l, 3, 3) @ jl[:, None]     # (B, L, 3, 3)
        cols = [s[:, None, None, None] * d_rot[:, :, :2, :] * flip[:, None]]     # (B, L, 2, 3)
        eye2 = torch.eye(2, dtype=theta.dtype, device=theta.device).expand(b, n_l, 2, 2)
        cols.append(eye2)
        cols.append((ds[:, None, None] * rx[..., :2] * flip)[..., None])
        for basis, n in ((self.bid, self.n_id), (self.bexp, self.n_exp)):
            if n:
                rb = torch.einsum("bij,klj->blik", rot, basis[:n])               # (B, L, 3, n)
                cols.append(s[:, None, None, None] * rb[:, :, :2, :] * flip[:, None])
        jd = torch.cat(cols, -1) * self.w[..., None, None]                       # (B, L, 2, P)
        jd = jd.reshape(b, 2 * n_l, self.n_params)
        jp = torch.zeros(b, self.n_params - N_POSE, self.n_params, dtype=theta.dtype, device=theta.device)
        jp[:, :, N_POSE:] = self.sqrt_prior * torch.eye(self.n_params - N_POSE, dtype=theta.dtype, device=theta.device)
        return torch.cat((jd, jp), 1)

    def jacobian_autograd(self, theta):
        """The same Jacobian by automatic differentiation (for tests)."""
        def one(th, yy, ww):
            return self.residuals(th[None], yy[None], ww[None])[0]

        return torch.func.vmap(torch.func.jacrev(one))(theta, self.y, self.w)


def closed_form_pose(model_points: torch.Tensor, landmarks: torch.Tensor, visibility: torch.Tensor,
                     scale: str = DEFAULT_SCALE) -> torch.Tensor:
    """Scaled-orthographic pose aligning 3-D points to 2-D landmarks: ``(L, 3), (B, L, 2), (B, L) -> (B, 6)``.

    Fits the weighted least-squares affine camera ``y = A X + b``, flips its second row (image y
    is down), takes the nearest ``s [R_1; R_2]`` with orthonormal rows (SVD; ``s`` = mean singular
    value), completes ``R_3 = R_1 x R_2``, and returns ``[r, t, logs]``. Needs >= 4 non-coplanar
    visible points for a unique answer (a small ridge keeps it defined otherwise).
    """
    dt = landmarks.dtype
    x = model_points.to(dt)
    wv = torch.where(visibility > 0, visibility, torch.zeros_like(visibility)).to(dt)
    y = torch.where((visibility > 0)[..., None], landmarks, torch.zeros_like(landmarks))
    sw = wv.sum(1, keepdim=True).clamp_min(1e-12)
    xm = (wv[..., None] * x).sum(1) / sw  # (B, 3)
    ym = (wv[..., None] * y).sum(1) / sw  # (B, 2)
    xc = x - xm[:, None]
    yc = y - ym[:, None]
    sxx = torch.einsum("bl,bli,blj->bij", wv, xc, xc)
    ridge = 1e-12 * sxx.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-12)
    sxx = sxx + ridge[:, None, None] * torch.eye(3, dtype=dt, device=x.device)
    syx = torch.einsum("bl,bli,blj->bij", wv, yc, xc)  # (B, 2, 3)
    a = torch.linalg.solve(sxx, syx.transpose(1, 2)).transpose(1, 2)  # A = Syx Sxx^-1
    a = a * torch.tensor([1.0, -1.0], dtype=dt, device=x.device)[:, None]
    u, sv, vh = torch.linalg.svd(a, full_matrices=False)
    r12 = u @ vh  # (B, 2, 3) orthonormal rows
    s = sv.mean(1).clamp_min(1e-12)
    rot = torch.cat((r12, torch.linalg.cross(r12[:, 0], r12[:, 1])[:, None]), 1)
    proj_m = (r12 @ xm[..., None])[..., 0] * torch.tensor([1.0, -1.0], dtype=dt, device=x.device)
    t = ym - s[:, None] * proj_m
    return torch.cat((rotation_to_axis_angle(rot), t, log_from_scale(s, scale)[:, None]), 1)


def _rows(mask: torch.Tensor) -> list[int]:
    return torch.nonzero(mask).flatten().tolist()


def check_fit_input(landmarks: torch.Tensor, visibility: torch.Tensor, model_points: torch.Tensor,
                    max_coordinate: float | None = None) -> None:
    """Raise :class:`ValueError` for images a pose cannot be fitted to (module docstring, limits
    :data:`MIN_VISIBLE`, :data:`MIN_SPREAD_PX`, :data:`MIN_DEPTH_RATIO`), naming them by batch index.

    Args:
        landmarks: (B, L, 2) px; visibility: (B, L) (0 = missing); model_points: (L, 3) the
            mean shape's landmark vertices; max_coordinate: bound on |x|, |y| of visible landmarks.
    """
    used = visibility > 0
    w = used.to(torch.float64)
    y = torch.where(used[..., None], landmarks, torch.zeros_like(landmarks)).to(torch.float64)
    n = w.sum(1)
    problems = []
    few = n < MIN_VISIBLE
    if bool(few.any()):
        rows = _rows(few)
        problems.append(f"image(s) {rows[:20]} have fewer than {MIN_VISIBLE} visible landmarks "
                        f"({[int(n[i]) for i in rows[:20]]}); a pose needs {MIN_VISIBLE} non-coplanar points")
    ok = ~few
    if max_coordinate is not None:
        far = ok & (used & (y.abs() > max_coordinate).any(-1)).any(1)
        if bool(far.any()):
            problems.append(f"image(s) {_rows(far)[:20]} have landmarks beyond +-{max_coordinate:g} px: another unit or "
                            "convention? (ours: 0-based pixels, y down; pass image_size=(H, W) to check against the "
                            "image, or max_coordinate=None)")
            ok = ok & ~far
    mean = (w[..., None] * y).sum(1) / n.clamp_min(1)[:, None]
    spread = ((w * ((y - mean[:, None]) ** 2).sum(-1)).sum(1) / n.clamp_min(1)).sqrt()
    flat = ok & ~(spread >= MIN_SPREAD_PX)
    if bool(flat.any()):
        rows = _rows(flat)
        problems.append(f"image(s) {rows[:20]} have visible landmarks spread over less than {MIN_SPREAD_PX:g} px "
                        f"(RMS {[round(float(spread[i]), 4) for i in rows[:20]]}): identical points or normalised "
                        "coordinates? (ours: pixels)")
        ok = ok & ~flat
    x = model_points.to(torch.float64)
    xm = (w[..., None] * x).sum(1) / n.clamp_min(1)[:, None]
    xc = w.sqrt()[..., None] * (x - xm[:, None])
    sv = torch.linalg.svdvals(xc)                           # (B, 3)
    thin = ok & ~(sv[:, 2] >= MIN_DEPTH_RATIO * sv[:, 0])
    if bool(thin.any()):
        problems.append(f"image(s) {_rows(thin)[:20]}: the visible landmarks' model vertices are (nearly) coplanar, "
                        "so the pose's depth axis is undetermined; label more landmarks")
    if problems:
        raise ValueError("cannot fit a pose: " + "; ".join(problems))


def _landmark_rows(model, landmark_set, n_landmarks, n_id, n_exp, dtype, device):
    """Mean and bases restricted to the landmark vertices, as float64 tensors."""
    if isinstance(model, torch.nn.Module):  # a MorphableSTN
        mean, bid, bexp = model.mean, model.basis_id, model.basis_exp
        if landmark_set is None:
            idx = model.landmark_index
        else:
            raise ValueError("with a MorphableSTN, the landmark set is the module's; do not pass landmark_set")
    else:
        mean, bid, bexp = (torch.as_tensor(a) for a in (model.mean, model.basis_id, model.basis_exp))
        if landmark_set is None:
            landmark_set = SETS_BY_COUNT.get(n_landmarks)
            if landmark_set is None or landmark_set not in model.landmarks:
                raise ValueError(f"cannot tell which landmark set {n_landmarks} landmarks are; pass landmark_set= "
                                 f"(the model has {sorted(model.landmarks)})")
        idx = torch.as_tensor(landmark_indices(model.landmarks, landmark_set)[0])
    idx = idx.to(device=mean.device, dtype=torch.long).reshape(-1)
    if idx.numel() != n_landmarks:
        raise ValueError(f"{n_landmarks} landmarks given but the landmark set has {idx.numel()} vertices")
    k_max, e_max = bid.shape[0], bexp.shape[0]
    n_id = k_max if n_id is None else int(n_id)
    n_exp = e_max if n_exp is None else int(n_exp)
    if not (0 <= n_id <= k_max and 0 <= n_exp <= e_max):
        raise ValueError(f"n_id={n_id}, n_exp={n_exp}: the model has {k_max} identity and {e_max} expression "
                         "components")
    f64 = dict(dtype=torch.float64, device=device)
    return (mean.index_select(0, idx).to(**f64), bid[:n_id].index_select(1, idx).to(**f64),
            bexp[:n_exp].index_select(1, idx).to(**f64), n_id, n_exp)


def _initial_theta(init, init_alpha, prob: _Problem, y, v, batch, image_size, scale, generator):
    dt, dev = y.dtype, y.device
    p = prob.n_params
    if isinstance(init, torch.Tensor):
        th = init.to(dtype=dt, device=dev)
        if th.ndim == 1:
            th = th.expand(batch, -1)
        if th.shape != (batch, p):
            raise ValueError(f"init theta must be ({batch}, {p}) or ({p},), got {tuple(init.shape)}")
        if not bool(torch.isfinite(th).all()):
            raise ValueError("init theta contains NaN or infinity")
        return th.clone()
    th = torch.zeros(batch, p, dtype=dt, device=dev)
    if init == "closed_form":
        th[:, :N_POSE] = closed_form_pose(prob.mean, y, v, scale)
    elif init == "original":
        h = (image_size or ORIGINAL_IMAGE_SIZE)[0]
        th[:] = original_start_theta(p, h, scale, dtype=dt, device=dev)
    else:
        raise ValueError(f"init must be 'closed_form', 'original' or a theta tensor, got {init!r}")
    if init_alpha == "random":
        th[:, N_POSE:] = torch.randn(batch, p - N_POSE, generator=generator, dtype=dt, device="cpu").to(dev)
    elif init_alpha != "zeros":
        raise ValueError(f"init_alpha must be 'zeros' or 'random', got {init_alpha!r}")
    return th


def _levenberg_marquardt(prob: _Problem, theta, max_iter, tol):
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


def _lbfgs(prob: _Problem, theta, max_iter, tol):
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


def _gradient_descent(prob: _Problem, theta, max_iter, tol, lr, shape_boost):
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


def fit_landmarks(model, landmarks: torch.Tensor, visibility: torch.Tensor | None = None, *, method: str = "lm",
                  prior_weight: float | None = None, n_id: int | None = None, n_exp: int | None = None,
                  init=None, max_iter: int | None = None, tol: float | None = None, landmark_set=None,
                  scale: str = DEFAULT_SCALE, image_size: tuple | None = None, init_alpha: str = "zeros",
                  lr: float = 1e-6, shape_boost: float = 101.0, generator: torch.Generator | None = None,
                  threads: int | None = 1, max_coordinate: float | None = 65536.0) -> FitResult:
    """Fit theta to 2-D landmarks, batched over images (see the module docstring for the energy).

    Args:
        model: a :class:`~stn3dmm.model.MorphableModel` or a :class:`~stn3dmm.stn.MorphableSTN`.
        landmarks: (B, L, 2) labelled landmarks, ours (0-based px, y down); NaN where missing.
        visibility: (B, L) weights, 0 = missing (default: 1 where finite).
        method: ``"lm"`` (default), ``"lbfgs"`` or ``"gd"``.
        prior_weight: weight of ``sum alpha^2`` relative to the landmark term, px^2 (MAP: the
            squared label noise sigma^2). Default: :data:`DEFAULT_PRIOR_WEIGHT` (1) for lm and
            lbfgs, :data:`ORIGINAL_PRIOR_WEIGHT` (0.1 / 0.8998) for gd.
        n_id, n_exp: number of identity / expression coefficients to fit (leading components;
            default: all). theta has ``6 + n_id + n_exp`` columns.
        init: ``"closed_form"``, ``"original"`` or a theta tensor (default per method).
        max_iter: iteration cap (default: lm 100, lbfgs 300, gd 20000).
        tol: stopping threshold (default: lm 1e-10 relative energy decrease of an accepted step;
            lbfgs 1e-12 relative change of the summed energy; gd 1.0 absolute change, the original's).
        landmark_set: which of the model's landmark sets (name or vertex indices); default from L
            (21 -> aflw21, 68 -> ibug68), or the MorphableSTN's own.
        scale: scale map of the returned (and optimised) ``logs``: ``"exp"`` or ``"original"``.
        image_size: (H, W); when given, visible landmarks far outside the image raise ValueError;
            also sets H for the ``"original"`` start (default 224).
        init_alpha: ``"zeros"`` (default) or ``"random"`` (N(0, 1), as the original demo).
        lr, shape_boost: gradient-descent step and shape-gradient multiplier (the original's 1e-6, 101).
        generator: random generator for ``init_alpha="random"``.
        threads: torch CPU threads while fitting (default 1: many tiny operations, where more
            threads only add overhead, and 50x slow-downs on a busy machine; see
            :mod:`stn3dmm.core.threads`); None keeps the process's setting. No effect on CUDA.
        max_coordinate: without ``image_size``, visible landmarks beyond +-this many px raise
            ValueError (None: no bound).

    Raises:
        ValueError: bad arguments, or images a pose cannot be fitted to (see :func:`check_fit_input`),
            all such images named by batch index.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if scale not in SCALE_MAPS:
        raise ValueError(f"scale must be one of {SCALE_MAPS}, got {scale!r}")
    if prior_weight is None:
        prior_weight = ORIGINAL_PRIOR_WEIGHT if method == "gd" else DEFAULT_PRIOR_WEIGHT
    if not (prior_weight >= 0 and math.isfinite(prior_weight)):
        raise ValueError(f"prior_weight must be a finite non-negative number, got {prior_weight}")
    landmarks, visibility = check_landmarks(landmarks, visibility, image_size=image_size)
    with cpu_threads(threads, landmarks.device):
        return _fit(model, landmarks, visibility, method, prior_weight, n_id, n_exp, init, max_iter, tol,
                    landmark_set, scale, image_size, init_alpha, lr, shape_boost, generator,
                    None if image_size is not None else max_coordinate)


def _fit(model, landmarks, visibility, method, prior_weight, n_id, n_exp, init, max_iter, tol, landmark_set,
         scale, image_size, init_alpha, lr, shape_boost, generator, max_coordinate) -> FitResult:
    out_dtype, device = landmarks.dtype, landmarks.device
    b, n_l, _ = landmarks.shape
    mean_l, bid_l, bexp_l, n_id, n_exp = _landmark_rows(model, landmark_set, n_l, n_id, n_exp, torch.float64, device)
    check_fit_input(landmarks, visibility, mean_l, max_coordinate)
    y = landmarks.to(torch.float64)
    v = visibility.to(torch.float64)
    prob = _Problem(mean_l, bid_l, bexp_l, n_id, n_exp, y, v, prior_weight, scale)
    if init is None:
        init = "original" if method == "gd" else "closed_form"
    theta = _initial_theta(init, init_alpha, prob, prob.y, v, b, image_size, scale, generator)
    defaults = {"lm": (100, 1e-10), "lbfgs": (300, 1e-12), "gd": (20000, 1.0)}[method]
    max_iter = defaults[0] if max_iter is None else int(max_iter)
    tol = defaults[1] if tol is None else float(tol)
    if method == "lm":
        theta, iters, conv, hist = _levenberg_marquardt(prob, theta, max_iter, tol)
    elif method == "lbfgs":
        theta, iters, conv, hist = _lbfgs(prob, theta, max_iter, tol)
    else:
        theta, iters, conv, hist = _gradient_descent(prob, theta, max_iter, tol, lr, shape_boost)
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
