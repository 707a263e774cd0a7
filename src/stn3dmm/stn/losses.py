"""The training losses of the 3DMM-STN (SPEC section 5), each in the original's sum form and a mean form.

This module owns the four losses and their original weights. Every loss takes
``reduction="sum"`` (the original: plain sums, which is why it trained with a learning rate of
1e-10) or ``reduction="mean"`` (the same quantity normalised so its size does not depend on the
batch size, the number of landmarks or the output resolution):

========================  =========================================  ==========================================
loss                      ``"sum"`` (original)                       ``"mean"``
========================  =========================================  ==========================================
:func:`landmark_loss`     sum_b sum_l v_bl |p_bl - y_bl|^2           the sum / sum_b sum_l v_bl
                                                                     (mean squared error per labelled landmark)
:func:`prior_loss`        sum_b sum_k alpha_bk^2                     mean over all coefficients
:func:`symmetry_loss`     sum_b [ sum_{p in M_b} sum_c d^2 / |M_b| ]  mean over images, divided by C
:func:`siamese_loss`      same with the partner image's output       same
========================  =========================================  ==========================================

For the symmetry and siamese losses, ``d = x_b - x'_b`` (``x'`` the left-right flip of ``x``, or
the partner's output), ``M_b`` the pixels non-zero in both (a pixel is non-zero when any channel
is) and ``|M_b|`` their count (an image with an empty ``M_b`` contributes 0). The masks carry no
gradient. Flipping the output is the face's bilateral mirror because the UV map is symmetric.
Pass the *masked* outputs (``out["masked"]``), so that hidden and outside pixels, which are 0,
drop out as in the original.
Missing landmarks have visibility 0 and may be NaN; they contribute nothing (and no NaN gradient).
"""

from __future__ import annotations

import torch

#: The original's loss weights (SPEC section 5).
ORIGINAL_WEIGHTS = {"landmark": 0.8998, "prior": 0.1, "siamese": 0.0001, "symmetry": 0.0001}

_REDUCTIONS = ("sum", "mean")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def landmark_loss(predicted: torch.Tensor, target: torch.Tensor, visibility: torch.Tensor | None = None,
                  reduction: str = "sum") -> torch.Tensor:
    """Landmark loss: visibility-weighted squared distance.

    Args:
        predicted: (B, L, 2) projected landmark vertices (image px).
        target: (B, L, 2) labelled landmarks (same convention); NaN allowed where visibility is 0.
        visibility: (B, L) weights, 0 = missing (default: 1 where the target is finite).
        reduction: ``"sum"`` (original) or ``"mean"`` (divided by the total visibility).
    """
    _check_reduction(reduction)
    if predicted.shape != target.shape or predicted.ndim != 3 or predicted.shape[-1] != 2:
        raise ValueError(f"predicted and target must both be (B, L, 2), got {tuple(predicted.shape)} "
                         f"and {tuple(target.shape)}")
    finite = torch.isfinite(target).all(-1)
    if visibility is None:
        visibility = finite.to(predicted.dtype)
    if visibility.shape != predicted.shape[:2]:
        raise ValueError(f"visibility must be {tuple(predicted.shape[:2])}, got {tuple(visibility.shape)}")
    used = (visibility > 0) & finite
    if bool(((visibility > 0) & ~finite).any()):
        raise ValueError("a landmark with visibility > 0 is NaN or infinite")
    tgt = torch.where(used[..., None], target, torch.zeros_like(target))
    diff = torch.where(used[..., None], predicted - tgt, torch.zeros_like(predicted))
    w = torch.where(used, visibility.to(predicted.dtype), torch.zeros_like(visibility, dtype=predicted.dtype))
    total = (w * (diff * diff).sum(-1)).sum()
    if reduction == "sum":
        return total
    return total / w.sum().clamp_min(torch.finfo(predicted.dtype).tiny)


def prior_loss(alpha: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Statistical prior: ``sum alpha^2`` over shape coefficients ``alpha (B, D)`` (or ``"mean"``)."""
    _check_reduction(reduction)
    sq = alpha * alpha
    return sq.sum() if reduction == "sum" else sq.mean()


def _paired_loss(x: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    _check_reduction(reduction)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) outputs of the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    with torch.no_grad():
        both = ((x != 0).any(1, keepdim=True) & (y != 0).any(1, keepdim=True)).to(x.dtype)  # (B, 1, H, W)
        count = both.sum((1, 2, 3))
    d = (x - y) * both
    per_image = (d * d).sum((1, 2, 3)) / count.clamp_min(1.0)
    if reduction == "sum":
        return per_image.sum()
    return per_image.mean() / x.shape[1]


def symmetry_loss(flattened: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Bilateral symmetry: a flattened output ``(B, C, H, W)`` against its own left-right flip, over
    pixels non-zero in both, divided by their count (per image); see the module docstring."""
    return _paired_loss(flattened, flattened.flip(-1), reduction)


def siamese_loss(flattened_a: torch.Tensor, flattened_b: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Siamese multi-view: two flattened outputs ``(B, C, H, W)`` of the same faces (e.g. an image and its
    mirror), over pixels non-zero in both, divided by their count (per pair)."""
    return _paired_loss(flattened_a, flattened_b, reduction)


def total_loss(*, predicted=None, target=None, visibility=None, alpha=None, flattened=None, flattened_pair=None,
               weights: dict | None = None, reduction: str = "sum") -> dict:
    """Weighted sum of whichever losses have their inputs given (weights default to
    :data:`ORIGINAL_WEIGHTS`). Returns a dict of the weighted terms and ``"total"``."""
    w = dict(ORIGINAL_WEIGHTS, **(weights or {}))
    terms = {}
    if predicted is not None:
        terms["landmark"] = w["landmark"] * landmark_loss(predicted, target, visibility, reduction)
    if alpha is not None:
        terms["prior"] = w["prior"] * prior_loss(alpha, reduction)
    if flattened is not None:
        terms["symmetry"] = w["symmetry"] * symmetry_loss(flattened, reduction)
        if flattened_pair is not None:
            terms["siamese"] = w["siamese"] * siamese_loss(flattened, flattened_pair, reduction)
    if not terms:
        raise ValueError("no loss inputs given")
    terms["total"] = sum(terms.values())
    return terms


__all__ = ["ORIGINAL_WEIGHTS", "landmark_loss", "prior_loss", "symmetry_loss", "siamese_loss", "total_loss"]
