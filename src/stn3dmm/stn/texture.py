"""Flattened textures: symmetric completion and visibility-weighted averaging.

Pure tensor functions on batches in UV layout (row 0 = top of the face, column j mirrors
column R-1-j, so ``flip(-1)`` is the face's bilateral mirror):

* :func:`symmetric_completion` fills pixels hidden in the photo from their mirror pixel
  where that one is visible, with a blended seam;
* :func:`weighted_average` is the visibility-weighted mean of many textures of one person
  (the original's teaser), with a coverage map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), zero padding."""
    if sigma <= 0:
        return x
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)


def seam_weights(mask: torch.Tensor, blend: float = 2.0) -> torch.Tensor:
    """Soft visibility ``(B, 1, R, R)``: 1 deep inside the visible region, falling to 0 at its edge.

    Blending weights for :func:`symmetric_completion`, so that the seam between seen pixels and
    mirrored ones does not show. Falls over about ``blend`` pixels; exactly 0 where the mask is 0.

    Args:
        mask: (B, 1, R, R) visibility (> 0.5 = seen).
        blend: width of the falloff in pixels (0 = the hard mask).

    Returns:
        (B, 1, R, R) in [0, 1].

    Examples:
        >>> mask = torch.zeros(1, 1, 16, 16)
        >>> mask[..., 4:12, :8] = 1  # an 8 x 8 seen block at the left edge
        >>> seam_weights(mask, blend=1.0)[0, 0, 8, :9].round(decimals=2)
        tensor([0.4000, 0.8800, 0.9900, 1.0000, 1.0000, 0.9900, 0.8800, 0.4000, 0.0000])
    """
    m = (mask > 0.5).to(mask.dtype)
    if blend <= 0:
        return m
    # distance-like falloff: blur of the mask, renormalised so interior pixels reach 1
    soft = _gaussian_blur(m, blend)
    soft = ((soft - 0.5) * 2).clamp(0, 1)
    return torch.maximum(soft, 1e-3 * m) * m


def symmetric_completion(flattened: torch.Tensor, mask: torch.Tensor, blend: float = 2.0):
    """Fill invisible pixels from their mirror pixel, blending across the seam.

    A face photographed from the side shows one cheek; the UV map is symmetric, so the hidden
    half is completed from the seen one.

    Args:
        flattened: (B, C, R, R) flattened textures.
        mask: (B, 1, R, R) visibility (1 = seen in the photo).
        blend: width of the blended seam in pixels (0 = hard switch).

    Returns:
        completed (B, C, R, R): where the pixel was seen it is a blend of itself and its
            mirror that gives the original pixel full weight away from the seam; elsewhere the
            mirror pixel; 0 where neither side was seen.
        alpha (B, 1, R, R): 1 where the completed pixel has data (seen or mirrored), else 0.

    Examples:
        >>> flattened = torch.tensor([[[[1.0, 2.0, 0.0, 0.0]]]])
        >>> mask = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])  # the right half was hidden
        >>> symmetric_completion(flattened, mask, blend=0)
        (tensor([[[[1., 2., 2., 1.]]]]), tensor([[[[1., 1., 1., 1.]]]]))
    """
    w = seam_weights(mask, blend)
    wm = w.flip(-1)
    own = (mask > 0.5).to(flattened.dtype)
    mir = own.flip(-1)
    # the photo's own pixel keeps priority: the mirror only contributes (1 - w) of its weight
    w_mirror = wm * (1 - w)
    total = w + w_mirror
    out = (w * flattened + w_mirror * flattened.flip(-1)) / total.clamp_min(1e-12)
    alpha = ((own + mir) > 0).to(flattened.dtype)
    out = torch.where(total > 0, out, flattened * own + flattened.flip(-1) * mir * (1 - own))
    return out * alpha, alpha


def weighted_average(textures: torch.Tensor, weights: torch.Tensor):
    """Visibility-weighted mean texture of many flattened textures of one person.

    Each photo contributes only where it saw the face (the original's teaser), and the
    coverage map says how much data each pixel had.

    Args:
        textures: (N, C, R, R).
        weights: (N, 1, R, R) per-pixel weights (alpha = visibility), >= 0.

    Returns:
        mean (C, R, R) (0 where no weight), coverage (1, R, R) = summed weight.

    Examples:
        >>> textures = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 4.0]]]])  # two 1 x 2 textures
        >>> weights = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 1.0]]]])   # the first did not see pixel 1
        >>> weighted_average(textures, weights)
        (tensor([[[2., 4.]]]), tensor([[[2., 1.]]]))
    """
    if textures.ndim != 4 or weights.shape != (textures.shape[0], 1, *textures.shape[2:]):
        raise ValueError(f"textures (N, C, R, R) and weights (N, 1, R, R) expected, got {tuple(textures.shape)} "
                         f"and {tuple(weights.shape)}")
    cov = weights.sum(0)
    mean = (textures * weights).sum(0) / cov.clamp_min(1e-12)
    return torch.where(cov > 0, mean, torch.zeros_like(mean)), cov
