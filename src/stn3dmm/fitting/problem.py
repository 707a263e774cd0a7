"""The landmark-fitting problem: residuals and their Jacobian, the closed-form pose, input checks, the start.

For every image independently (all images in one batched computation) the fitters of
:mod:`stn3dmm.fitting` minimise

    E(theta) = sum_l v_l |P_l(theta) - y_l|^2  +  prior_weight * sum alpha^2

where ``P_l`` are the model's landmark vertices projected by :func:`~stn3dmm.stn.layers.grid_generator`
(the same layers the STN uses), ``y`` the labelled landmarks (ours: 0-based px, y down),
``v`` their visibility (0 = missing) and ``alpha`` the shape coefficients (N(0, 1) a priori).
:class:`LandmarkProblem` holds the landmark rows of the model (:func:`landmark_rows`) and
evaluates the stacked residuals ``[sqrt(v) (P - y); sqrt(prior_weight) alpha]``, E and their
Jacobian in closed form. All computation runs in float64.

Initialisation (:func:`initial_theta`): ``"closed_form"`` aligns the mean shape's landmarks to
the 2-D landmarks by a weighted affine camera fit, projected to the nearest scaled orthographic
camera (SVD), giving r, t and s (:func:`closed_form_pose`); ``"original"`` is the original's
start: r = 0, t = (112, 112) in its y-up 1-based frame converted to ours
(``stn3dmm.core.conventions.original_start_theta``; ``image_size`` sets H, default 224), logs for
s = 0.99; or a tensor ``(B, 6+K+E)`` / ``(6+K+E,)``. Shape coefficients start at zero
(``init_alpha="zeros"``, the prior's mode, deterministic) or N(0, 1) (``"random"``, as the
original demo did).

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

import torch

from ..core.conventions import (_LN_099, DEFAULT_SCALE, N_POSE, ORIGINAL_IMAGE_SIZE, log_from_scale,
                                original_start_theta, scale_from_log)
from ..model.morphable import SETS_BY_COUNT, landmark_indices
from ..stn.layers import (axis_angle_to_rotation, grid_generator, morphable_model, rotate, rotation_to_axis_angle,
                          skew, split_theta)

#: Fewest visible landmarks per image (see the module docstring).
MIN_VISIBLE = 4
#: Smallest RMS distance (px) of an image's visible landmarks from their centroid.
MIN_SPREAD_PX = 1.0
#: Smallest ratio of the thinnest to the widest extent (singular values) of the visible landmarks' model vertices.
MIN_DEPTH_RATIO = 0.01


class LandmarkProblem:
    """The landmark rows of the model and the residual function (float64).

    Args:
        mean_l: (L, 3) mean shape's landmark vertices; bid_l: (K, L, 3), bexp_l: (E, L, 3) the
            identity and expression bases at those vertices (see :func:`landmark_rows`).
        n_id, n_exp: K and E, the coefficients fitted; theta has ``6 + K + E`` columns.
        y: (B, L, 2) landmarks, px; v: (B, L) visibility weights (<= 0: missing).
        prior_weight: weight of ``sum alpha^2``; scale: the scale map of theta's ``logs``.
    """

    def __init__(self, mean_l, bid_l, bexp_l, n_id, n_exp, y, v, prior_weight, scale):
        self.mean, self.bid, self.bexp = mean_l, bid_l, bexp_l
        self.n_id, self.n_exp, self.scale = n_id, n_exp, scale
        self.used = v > 0
        self.y = torch.where(self.used[..., None], y, torch.zeros_like(y))
        self.w = torch.where(self.used, v, torch.zeros_like(v)).sqrt()
        self.sqrt_prior = math.sqrt(prior_weight)
        self.n_params = N_POSE + n_id + n_exp

    def project(self, theta):
        """(B, 6+K+E) -> (B, L, 2): the landmark vertices projected, px."""
        return grid_generator(theta, self.mean, self.bid, self.bexp, self.n_id, self.n_exp, self.scale).points

    def residuals(self, theta, y=None, w=None):
        """(B, 6+K+E) -> (B, 2L + K + E): ``[sqrt(v) (P - y); sqrt(prior_weight) alpha]``."""
        y = self.y if y is None else y
        w = self.w if w is None else w
        p = self.project(theta)
        rd = (w[..., None] * (p - y)).flatten(1)
        return torch.cat((rd, self.sqrt_prior * theta[:, N_POSE:]), 1)

    def energy(self, theta):
        """(B, 6+K+E) -> (B,): E(theta), the summed squared residuals."""
        r = self.residuals(theta)
        return (r * r).sum(1)

    def jacobian(self, theta):
        """(B, 6+K+E) -> (B, 2L+K+E, 6+K+E): the Jacobian of :meth:`residuals`, in closed form
        (batched einsums).

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
        """The same (B, 2L+K+E, 6+K+E) Jacobian by automatic differentiation (for tests)."""
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


def landmark_rows(model, landmark_set, n_landmarks, n_id, n_exp, dtype, device):
    """Mean and bases restricted to the landmark vertices, as float64 tensors on ``device``.

    ``model`` is a MorphableModel (the set from ``landmark_set``, else from ``n_landmarks``) or a
    MorphableSTN (its own set). Returns ``(mean_l (L, 3), bid_l (K, L, 3), bexp_l (E, L, 3), K, E)``
    with K = ``n_id`` and E = ``n_exp`` (None: all of the model's components).
    """
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
    n_vertices = mean.shape[0]
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n_vertices):
        raise ValueError(f"landmark_set: vertex indices must lie in [0, {n_vertices}) (the model's vertices), "
                         f"got [{int(idx.min())}, {int(idx.max())}]")
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


def initial_theta(init, init_alpha, prob: LandmarkProblem, y, v, batch, image_size, scale, generator):
    """The start, (B, 6+K+E) in ``y``'s dtype: ``init`` (``"closed_form"``, ``"original"`` or a
    theta tensor) for the pose, ``init_alpha`` for the shape (see the module docstring).
    ``y`` (B, L, 2) and ``v`` (B, L) are the landmarks and their visibility."""
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


__all__ = ["LandmarkProblem", "closed_form_pose", "check_fit_input", "landmark_rows", "initial_theta", "MIN_VISIBLE",
           "MIN_SPREAD_PX", "MIN_DEPTH_RATIO"]
