"""Small batched image operations of the synthetic data: Gaussian blurs, inpainting, camera effects.

Owns :func:`gaussian_blur`, :func:`blur_batch` (one sigma per image), :func:`inpaint_blur`
(fill holes by normalised blurring), ``_upsample`` (bicubic, for low-frequency noise grids)
and :func:`camera_effects` (colour jitter, blur and noise of rendered images). Images are
``(B, C, H, W)`` float tensors on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflect padding (one sigma for all)."""
    if sigma <= 0:
        return x
    rad = max(1, int(math.ceil(3 * sigma)))
    rad = min(rad, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-rad, rad + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (rad, rad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, rad, rad), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def blur_batch(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of ``(B, C, H, W)`` with one sigma per image ``(B,)`` (0 = unchanged)."""
    b, c, h, w = x.shape
    smax = float(sigma.max()) if sigma.numel() else 0.0
    if smax <= 0:
        return x
    rad = max(1, int(math.ceil(3 * smax)))
    t = torch.arange(-rad, rad + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x.dtype).clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = k / k.sum(1, keepdim=True)  # (B, K); sigma ~ 0 gives a delta
    k = k[:, None].expand(b, c, -1).reshape(b * c, 1, -1)
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(F.pad(y, (rad, rad, 0, 0), mode="reflect"), k[:, :, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, rad, rad), mode="reflect"), k[:, :, :, None], groups=b * c)
    return y.view(b, c, h, w)


def inpaint_blur(image: torch.Tensor, alpha: torch.Tensor, sigmas=(1.5, 3.0, 6.0, 12.0, 24.0)) -> torch.Tensor:
    """Fill ``image (B, C, H, W)`` where ``alpha (B, 1, H, W)`` is 0 by normalised Gaussian blurring at
    growing scales (smooth colour from the nearby known pixels); known pixels are kept."""
    a = (alpha > 0.5).to(image.dtype)
    out = image * a
    filled = a.clone()
    for s in sigmas:
        num = gaussian_blur(image * a, s)
        den = gaussian_blur(a, s)
        ok = (den > 1e-3) & (filled < 0.5)
        out = torch.where(ok, num / den.clamp_min(1e-3), out)
        filled = torch.where(ok, torch.ones_like(filled), filled)
    if bool((filled < 0.5).any()):
        mean = (image * a).sum((2, 3), keepdim=True) / a.sum((2, 3), keepdim=True).clamp_min(1)
        out = torch.where(filled > 0.5, out, mean.expand_as(out))
    return out


def _upsample(grid: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(grid, size=size, mode="bicubic", align_corners=True)


def camera_effects(img: torch.Tensor, cams: list[dict], color_jitter: bool = True, blur: float = 0.0,
                   noise: float = 0.0) -> torch.Tensor:
    """Colour jitter, blur and pixel noise of rendered images ``(B, 3, S, S)``, per image.

    ``cams`` holds one dict per image with ``brightness``, ``contrast``, ``saturation``,
    ``gamma``, ``blur`` (sigma, px), ``noise`` (sigma) and ``seed`` (of the noise). The flags
    switch the stages: ``color_jitter``; blur when ``blur > 0``; noise when ``noise > 0``
    (the image's own sigma is used; the arguments are the synthetic configuration's maxima)."""
    dev = img.device

    def sc(key):
        return torch.tensor([c[key] for c in cams], device=dev, dtype=img.dtype)[:, None, None, None]

    if color_jitter:
        img = img * sc("brightness")
        mean = img.mean((1, 2, 3), keepdim=True)
        img = (img - mean) * sc("contrast") + mean
        grey = (0.299 * img[:, :1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3])
        img = grey + (img - grey) * sc("saturation")
        img = img.clamp(0, 1) ** sc("gamma")
    if blur > 0:
        img = blur_batch(img, sc("blur").view(-1))
    if noise > 0:
        n = torch.stack([torch.randn(img.shape[1:], generator=torch.Generator().manual_seed(c["seed"]))
                         for c in cams]).to(dev, img.dtype)
        img = img + n * sc("noise")
    return img


__all__ = ["gaussian_blur", "blur_batch", "inpaint_blur", "camera_effects"]
