"""The training losses of the 3DMM-STN, in three reductions.

The paper's losses and how ours differ from the original: docs/paper.md, "Losses and the flip
augmentation".

This module owns the four losses and their original weights. Every loss takes a ``reduction``:

* ``"sum"`` (default): sums over the batch, so its size grows with the batch (the original's
  losses were sums, which is why it trained with a learning rate of 1e-10). For the landmark
  and prior losses this is the original's value. For symmetry and siamese each image is
  normalised by its own overlap before the sum (table below), which is NOT the original's.
* ``"mean"``: the same quantities normalised so that their size does not depend on the batch
  size, the number of landmarks or the output resolution.
* ``"original"``: the original's forward values. Landmark and prior as ``"sum"``; symmetry and
  siamese as it normalised them: the batch's total squared difference over the entries
  non-zero in both (per channel), divided by the number of non-zero entries of the whole
  batch (all images and channels; for siamese, both images of each pair). The gradient is the
  true gradient of that value (autograd), not the original's backward, which was not (its
  symmetry backward is ``count / 2`` times too large, its siamese backward gives the second
  image of each pair the wrong sign; see docs/paper.md).

========================  =========================================  ======================================
loss                      ``"sum"``                                  ``"mean"``
========================  =========================================  ======================================
:func:`landmark_loss`     sum_b sum_l v_bl |p_bl - y_bl|^2           the sum / sum_b sum_l v_bl
                                                                     (mean squared error per landmark)
:func:`prior_loss`        sum_b sum_k alpha_bk^2                     mean over all coefficients
:func:`symmetry_loss`     sum_b [ sum_{p in M_b} sum_c d^2 / |M_b| ]  mean over images, divided by C
:func:`siamese_loss`      same with the partner image's output       same
========================  =========================================  ======================================

For the symmetry and siamese losses, ``d = x_b - x'_b`` (``x'`` the left-right flip of ``x``, or
the partner's output), ``M_b`` the pixels non-zero in both (a pixel is non-zero when any channel
is) and ``|M_b|`` their count (an image with an empty ``M_b`` contributes 0). Ours divides each
image by its own overlap so that an image's weight does not depend on the others in its
batch or on how much of it is masked. The masks carry no gradient. Flipping the output is
the face's bilateral mirror because the UV map is symmetric.
Pass the *masked* outputs (``out.masked``), so that hidden and outside pixels, which are 0,
drop out as in the original.
Missing landmarks have visibility 0 and may be NaN; they contribute nothing (and no NaN gradient).
"""

from __future__ import annotations

import torch

#: The original's loss weights.
ORIGINAL_WEIGHTS = {"landmark": 0.8998, "prior": 0.1, "siamese": 0.0001, "symmetry": 0.0001}

_REDUCTIONS = ("sum", "mean", "original")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def landmark_loss(predicted: torch.Tensor, target: torch.Tensor, visibility: torch.Tensor | None = None,
                  reduction: str = "sum") -> torch.Tensor:
    """Landmark loss: visibility-weighted squared distance between projected and labelled landmarks.

    The supervised term of the original: it pulls the projected landmark vertices onto the
    labels, and so teaches the localiser the pose, scale and shape.

    Args:
        predicted: (B, L, 2) projected landmark vertices (image px).
        target: (B, L, 2) labelled landmarks (same convention); NaN allowed where visibility is 0.
        visibility: (B, L) weights, 0 = missing (default: 1 where the target is finite).
        reduction: ``"sum"`` (the original's, also ``"original"``) or ``"mean"`` (divided by
            the total visibility).

    Returns:
        a scalar tensor.

    Examples:
        >>> nan = float("nan")
        >>> pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
        >>> target = torch.tensor([[[3.0, 4.0], [nan, nan]]])  # the second landmark is missing
        >>> landmark_loss(pred, target), landmark_loss(pred, target, reduction="mean")
        (tensor(25.), tensor(25.))
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
    if reduction != "mean":
        return total
    return total / w.sum().clamp_min(torch.finfo(predicted.dtype).tiny)


def prior_loss(alpha: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Statistical prior: ``sum alpha^2`` over shape coefficients (or their mean).

    The coefficients are N(0, 1) under the model, so this is the negative log prior up to a
    constant: it keeps the shape plausible where the landmarks do not constrain it.

    Args:
        alpha: (B, D) shape coefficients.
        reduction: ``"sum"`` (the original's, also ``"original"``) or ``"mean"`` (over all
            B * D coefficients).

    Returns:
        a scalar tensor.

    Examples:
        >>> alpha = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
        >>> prior_loss(alpha), prior_loss(alpha, "mean")
        (tensor(6.), tensor(1.5000))
    """
    _check_reduction(reduction)
    sq = alpha * alpha
    return sq.mean() if reduction == "mean" else sq.sum()


def _paired_loss(x: torch.Tensor, y: torch.Tensor, reduction: str, nonzero_of: tuple) -> torch.Tensor:
    """The squared difference of ``x`` and ``y`` (B, C, H, W) where both are non-zero, reduced;
    ``reduction="original"`` divides by the non-zero entries of the tensors in ``nonzero_of``."""
    _check_reduction(reduction)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) outputs of the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if reduction == "original":
        with torch.no_grad():
            both = ((x != 0) & (y != 0)).to(x.dtype)  # per entry (pixel and channel)
            count = sum((t != 0).sum() for t in nonzero_of).to(x.dtype)
        d = (x - y) * both
        return (d * d).sum() / count.clamp_min(1.0)
    with torch.no_grad():
        both = ((x != 0).any(1, keepdim=True) & (y != 0).any(1, keepdim=True)).to(x.dtype)  # (B, 1, H, W)
        count = both.sum((1, 2, 3))
    d = (x - y) * both
    per_image = (d * d).sum((1, 2, 3)) / count.clamp_min(1.0)
    if reduction == "sum":
        return per_image.sum()
    return per_image.mean() / x.shape[1]


def symmetry_loss(flattened: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Bilateral symmetry: a flattened output against its own left-right flip.

    The UV map is mirror symmetric, so a face flattened at the right pose and shape looks the
    same flipped; the difference trains the shape without landmarks. Summed over the pixels
    non-zero in both, divided by their count (per image); see the module docstring.

    Args:
        flattened: (B, C, H, W), the masked output (``out.masked``).
        reduction: ``"sum"`` (per-image normalisation, summed), ``"mean"`` (over images,
            divided by C) or ``"original"`` (the batch total over the entries non-zero in
            both, divided by the non-zero entries of ``flattened``).

    Returns:
        a scalar tensor.

    Examples:
        >>> symmetry_loss(torch.tensor([[[[1.0, 3.0]]]]))  # d = (-2, 2) on 2 pixels: 8 / 2
        tensor(4.)
        >>> x = torch.tensor([[[[1.0, 0.0, 3.0]], [[2.0, 5.0, 0.0]]]])  # (1, 2, 1, 3): two channels
        >>> symmetry_loss(x)  # all 3 pixels non-zero in both: (4 + 0 + 4 + 4 + 0 + 4) / 3
        tensor(5.3333)
        >>> symmetry_loss(x, "original")  # per channel: (4 + 4) + 0, over the 4 non-zero entries
        tensor(2.)
    """
    return _paired_loss(flattened, flattened.flip(-1), reduction, (flattened,))


def siamese_loss(flattened_a: torch.Tensor, flattened_b: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Siamese multi-view: two flattened outputs of the same faces (e.g. an image and its mirror).

    Two views of one face flatten to one texture; their difference trains pose and shape
    without landmarks. Summed over the pixels non-zero in both, divided by their count (per
    pair); see the module docstring. For an image and its mirror, pass the mirror's output
    flipped back (``.flip(-1)``); the original compared them unflipped, which makes the term a
    second symmetry loss (docs/paper.md).

    Args:
        flattened_a: (B, C, H, W).
        flattened_b: (B, C, H, W), image b the partner of image b of ``flattened_a``.
        reduction: ``"sum"`` (per-pair normalisation, summed), ``"mean"`` (over pairs, divided
            by C) or ``"original"`` (the batch total over the entries non-zero in both,
            divided by the non-zero entries of both inputs).

    Returns:
        a scalar tensor.

    Examples:
        >>> a = torch.tensor([[[[1.0, 0.0]]]])
        >>> b = torch.tensor([[[[2.0, 5.0]]]])  # only the first pixel is non-zero in both
        >>> siamese_loss(a, b)
        tensor(1.)
        >>> siamese_loss(a, b, "original")  # 1 over the 3 non-zero entries of a and b
        tensor(0.3333)
    """
    return _paired_loss(flattened_a, flattened_b, reduction, (flattened_a, flattened_b))


def total_loss(*, predicted=None, target=None, visibility=None, alpha=None, flattened=None, flattened_pair=None,
               weights: dict | None = None, reduction: str = "sum") -> dict:
    """Weighted sum of whichever losses have their inputs given.

    One call for a training step, with the original's weights (:data:`ORIGINAL_WEIGHTS`) unless
    ``weights`` overrides some of them.

    Args:
        predicted: (B, L, 2) projected landmarks, for :func:`landmark_loss` (with ``target`` and
            ``visibility``).
        target: (B, L, 2) labelled landmarks.
        visibility: (B, L) landmark weights.
        alpha: (B, D) shape coefficients, for :func:`prior_loss`.
        flattened: (B, C, H, W) masked output, for :func:`symmetry_loss`.
        flattened_pair: (B, C, H, W) the partners' masked output, for :func:`siamese_loss`
            (with ``flattened``).
        weights: name -> weight, overriding :data:`ORIGINAL_WEIGHTS`.
        reduction: ``"sum"``, ``"mean"`` or ``"original"`` (see the module docstring).

    Returns:
        a dict of the weighted terms and ``"total"``.

    Examples:
        >>> nan = float("nan")
        >>> terms = total_loss(predicted=torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]),
        ...                    target=torch.tensor([[[3.0, 4.0], [nan, nan]]]), alpha=torch.tensor([[1.0, 2.0]]))
        >>> {k: round(v.item(), 4) for k, v in terms.items()}  # 0.8998 * 25 and 0.1 * 5
        {'landmark': 22.495, 'prior': 0.5, 'total': 22.995}
    """
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
