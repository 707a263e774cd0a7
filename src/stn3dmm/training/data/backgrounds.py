"""Random backgrounds of the synthetic data: gradients, noise, stripes, blobs and photo crops.

Owns :data:`BACKGROUND_KINDS`, :func:`background_params` (one background's random
parameters) and :func:`make_backgrounds` (``(B, 3, S, S)`` in [0, 1], batched per kind;
photo crops come from tiles of :mod:`.photo_assets`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .imageops import _upsample

#: background kinds; "photo" crops come from photo tiles (:mod:`.photo_assets`)
BACKGROUND_KINDS = ("gradient", "noise", "stripes", "blobs", "photo")


def background_params(rng: np.random.Generator, kinds=BACKGROUND_KINDS, n_tiles: int = 0) -> dict:
    """Draw the parameters of one background from ``rng``."""
    kinds = [k for k in kinds if k != "photo" or n_tiles > 0] or ["gradient"]
    weights = np.array([1.3 if k == "photo" else 1.0 for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    colours = rng.uniform(0, 1, (4, 3)) ** rng.uniform(0.7, 1.6)
    p = {"kind": kind, "colours": colours.astype(np.float32), "angle": float(rng.uniform(0, 2 * np.pi)),
         "noise3": rng.normal(0, 1, (3, 3, 3)).astype(np.float32),
         "noise7": rng.normal(0, 1, (3, 7, 7)).astype(np.float32),
         "amp": float(rng.uniform(0.05, 0.3)), "freq": float(rng.uniform(1.5, 10)), "phase": float(rng.uniform(0, 6.3)),
         "sharp": float(rng.uniform(0.5, 8)), "blobs": rng.uniform(0, 1, (6, 6)).astype(np.float32)}
    if kind == "photo":
        side = rng.uniform(0.4, 1.0)
        p.update(tile=int(rng.integers(n_tiles)), side=float(side), cx=float(rng.uniform(-1 + side, 1 - side)),
                 cy=float(rng.uniform(-1 + side, 1 - side)), flip=bool(rng.uniform() < 0.5),
                 rot=float(rng.normal(0, 0.15)))
    return p


def make_backgrounds(params: list[dict], size: int, tiles: list | None = None, device="cpu") -> torch.Tensor:
    """Backgrounds ``(B, 3, S, S)`` in [0, 1] from :func:`background_params` dicts (batched per kind)."""
    b = len(params)
    dev = torch.device(device)
    out = torch.empty(b, 3, size, size, device=dev)
    t = torch.linspace(-1, 1, size, device=dev)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    for kind in BACKGROUND_KINDS:
        sel = [i for i, p in enumerate(params) if p["kind"] == kind]
        if not sel:
            continue
        ps = [params[i] for i in sel]
        n = len(ps)

        def arr(key):
            return torch.as_tensor(np.stack([np.asarray(p[key], np.float32) for p in ps]), device=dev)

        def sc(key):
            return torch.tensor([float(p[key]) for p in ps], device=dev)[:, None, None, None]

        c = arr("colours")[:, :, :, None, None]  # (n, 4, 3, 1, 1)
        ang = sc("angle")
        proj = torch.cos(ang) * xx + torch.sin(ang) * yy  # (n, 1, S, S)
        if kind == "gradient":
            w = ((proj + 1.4) / 2.8).clamp(0, 1)
            img = c[:, 0] + (c[:, 1] - c[:, 0]) * w
        elif kind == "noise":
            img = c[:, 0] + sc("amp") * 2 * (_upsample(arr("noise3"), (size, size))
                                             + 0.5 * _upsample(arr("noise7"), (size, size)))
        elif kind == "stripes":
            s = torch.sin(math.pi * sc("freq") * proj + sc("phase"))
            w = torch.sigmoid(sc("sharp") * s)
            img = c[:, 0] + (c[:, 1] - c[:, 0]) * w
        elif kind == "blobs":
            bl = arr("blobs")  # (n, 6, 6): x, y, sigma, r, g, b
            img = c[:, 0].expand(n, 3, size, size).clone()
            for k in range(bl.shape[1]):
                cx, cy = bl[:, k, 0, None, None] * 2 - 1, bl[:, k, 1, None, None] * 2 - 1
                sg = 0.08 + 0.4 * bl[:, k, 2, None, None]
                g = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sg ** 2))[:, None]
                img = img + (bl[:, k, 3:6, None, None] - img) * g
        else:  # photo crops
            src = torch.stack([tiles[p["tile"]] for p in ps]).to(dev)
            side, rot = sc("side")[:, 0, 0, 0], sc("rot")[:, 0, 0, 0]
            flip = torch.tensor([-1.0 if p["flip"] else 1.0 for p in ps], device=dev)
            aff = torch.zeros(n, 2, 3, device=dev)
            aff[:, 0, 0] = side * torch.cos(rot) * flip
            aff[:, 0, 1] = -side * torch.sin(rot)
            aff[:, 1, 0] = side * torch.sin(rot) * flip
            aff[:, 1, 1] = side * torch.cos(rot)
            aff[:, 0, 2] = sc("cx")[:, 0, 0, 0]
            aff[:, 1, 2] = sc("cy")[:, 0, 0, 0]
            grid = F.affine_grid(aff, (n, 3, size, size), align_corners=False)
            img = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        out[sel] = img.clamp(0, 1)
    return out


__all__ = ["BACKGROUND_KINDS", "background_params", "make_backgrounds"]
