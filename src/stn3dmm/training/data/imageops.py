"""Small batched image operations of the synthetic data: Gaussian blurs, inpainting, camera effects.

Owns :func:`gaussian_blur`, :func:`blur_batch` (one sigma per image), :func:`inpaint_blur`
(fill holes by normalised blurring), ``_upsample`` (bicubic, for low-frequency noise grids),
:func:`camera_effects` (colour jitter, blur and noise of rendered images) and
:func:`degrade` (one harsh degradation of an image: low resolution, an occluder, darkness, side
light or a heavy blur; :func:`draw_degradation` draws one). Images are ``(B, C, H, W)`` (or, for
:func:`degrade`, ``(C, H, W)``) float tensors on any device.
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


#: The kinds of :func:`degrade`, drawn with equal chance by :func:`draw_degradation`.
DEGRADATIONS = ("low resolution", "occluder", "dark", "side light", "blur")


def draw_degradation(rng, n_tiles: int) -> dict:
    """One draw of :func:`degrade`'s parameters from a numpy ``rng``: the kind, and each kind's
    parameter (all drawn, so that the stream does not depend on the kind)."""
    return {"kind": DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))],
            "factor": float(rng.uniform(2.0, 5.0)),                   # low resolution: side / factor
            "box": tuple(float(v) for v in rng.uniform([0.2, 0.2, 0.25, 0.25], [0.8, 0.8, 0.55, 0.55])),
            "tile": int(rng.integers(max(n_tiles, 1))),               # occluder: centre x, y, w, h (of S)
            "level": float(rng.uniform(0.2, 0.5)), "gamma": float(rng.uniform(1.2, 1.8)),   # dark, side light
            "angle": float(rng.uniform(0.0, 2 * math.pi)), "sigma": float(rng.uniform(1.5, 3.0))}


def degrade(img: torch.Tensor, d: dict, tiles: list | None = None) -> torch.Tensor:
    """``img (C, H, W)`` in [0, 1] made harder by one degradation ``d`` (:func:`draw_degradation`):

    * ``low resolution``: shrunk ``factor`` times (area) and blown up again (bilinear);
    * ``occluder``: the rectangle ``box`` (centre and size, fractions of the side) covered by
      ``tiles[tile]`` (a ``(C, h, w)`` patch of another photo; without tiles, its mean grey);
    * ``dark``: scaled by ``level``, then raised to ``gamma``;
    * ``side light``: scaled from ``level`` on one side to 1 on the other, along ``angle``;
    * ``blur``: a Gaussian of ``sigma`` px.

    Examples:
        >>> img = torch.full((3, 8, 8), 0.5)
        >>> d = dict(kind="dark", level=0.5, gamma=2.0)
        >>> degrade(img, d)[0, 0, 0].item()
        0.0625
    """
    c, h, w = img.shape
    kind = d["kind"]
    if kind == "low resolution":
        small = F.interpolate(img[None], size=(max(1, round(h / d["factor"])), max(1, round(w / d["factor"]))),
                              mode="area")
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
    if kind == "occluder":
        cx, cy, bw, bh = d["box"]
        x0, x1 = max(0, round((cx - bw / 2) * w)), min(w, round((cx + bw / 2) * w))
        y0, y1 = max(0, round((cy - bh / 2) * h)), min(h, round((cy + bh / 2) * h))
        out = img.clone()
        if x1 > x0 and y1 > y0:
            if tiles:
                patch = tiles[d["tile"] % len(tiles)].to(img.device, img.dtype)[None]
                out[:, y0:y1, x0:x1] = F.interpolate(patch, size=(y1 - y0, x1 - x0), mode="bilinear",
                                                     align_corners=False)[0, :c]
            else:
                out[:, y0:y1, x0:x1] = img.mean()
        return out
    if kind == "dark":
        return (img * d["level"]).clamp(0, 1) ** d["gamma"]
    if kind == "side light":
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=img.device, dtype=img.dtype),
                                torch.linspace(-1, 1, w, device=img.device, dtype=img.dtype), indexing="ij")
        along = (xs * math.cos(d["angle"]) + ys * math.sin(d["angle"])).clamp(-1, 1)
        return img * (d["level"] + (1 - d["level"]) * (along + 1) / 2)
    if kind == "blur":
        return gaussian_blur(img[None], d["sigma"])[0]
    raise ValueError(f"unknown degradation {kind!r} (one of {DEGRADATIONS})")


__all__ = ["gaussian_blur", "blur_batch", "inpaint_blur", "camera_effects", "DEGRADATIONS", "draw_degradation",
           "degrade"]
