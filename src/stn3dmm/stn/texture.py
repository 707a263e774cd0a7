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
    """(B, 1, R, R) soft visibility: 1 deep inside the visible region, falling to 0 at its
    edge over about ``blend`` pixels, exactly 0 where the mask is 0."""
    m = (mask > 0.5).to(mask.dtype)
    if blend <= 0:
        return m
    # distance-like falloff: blur of the mask, renormalised so interior pixels reach 1
    soft = _gaussian_blur(m, blend)
    soft = ((soft - 0.5) * 2).clamp(0, 1)
    return torch.maximum(soft, 1e-3 * m) * m


def symmetric_completion(flattened: torch.Tensor, mask: torch.Tensor, blend: float = 2.0):
    """Fill invisible pixels from their mirror pixel, blending across the seam.

    Args:
        flattened: (B, C, R, R) flattened textures.
        mask: (B, 1, R, R) visibility (1 = seen in the photo).
        blend: width of the blended seam in pixels (0 = hard switch).

    Returns:
        completed (B, C, R, R): where the pixel was seen it is a blend of itself and its
            mirror that gives the original pixel full weight away from the seam; elsewhere the
            mirror pixel; 0 where neither side was seen.
        alpha (B, 1, R, R): 1 where the completed pixel has data (seen or mirrored), else 0.
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
    """Visibility-weighted mean texture.

    Args:
        textures: (N, C, R, R).
        weights: (N, 1, R, R) per-pixel weights (alpha = visibility), >= 0.

    Returns:
        mean (C, R, R) (0 where no weight), coverage (1, R, R) = summed weight.
    """
    if textures.ndim != 4 or weights.shape != (textures.shape[0], 1, *textures.shape[2:]):
        raise ValueError(f"textures (N, C, R, R) and weights (N, 1, R, R) expected, got {tuple(textures.shape)} "
                         f"and {tuple(weights.shape)}")
    cov = weights.sum(0)
    mean = (textures * weights).sum(0) / cov.clamp_min(1e-12)
    return torch.where(cov > 0, mean, torch.zeros_like(mean)), cov
