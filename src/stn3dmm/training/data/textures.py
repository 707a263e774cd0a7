"""Per-identity face textures of the synthetic data: palettes and the procedural texture bank.

Owns the colour palettes (:data:`SKIN_PALETTE`, ``HAIR_*``, ``IRIS_*``, :func:`skin_tone`) and
:class:`TextureBank`: ``(3, R, R)`` textures in the grid's UV layout (row 0 = top of the face)
from per-identity random parameters -- skin tone, low-frequency colour noise and grain,
brows, eyes (sclera, iris, pupil, lash line), lips and mouth line, nostrils, eye-socket
shading, blush, hair line, beards, every feature placed by :func:`~.texture_layout.texture_layout`
-- optionally with a photo texture (:mod:`.photo_assets`), tone-shifted and blended in
outside the inner face.
"""

from __future__ import annotations

import numpy as np
import torch

from .imageops import _upsample
from .photo_assets import folder_photo_assets, sample_photo_assets
from .texture_layout import texture_layout

#: sRGB skin tones from light to dark; a tone t in [0, 1] interpolates them.
SKIN_PALETTE = np.array([(0.98, 0.86, 0.78), (0.93, 0.76, 0.64), (0.84, 0.64, 0.50), (0.72, 0.52, 0.38),
                         (0.56, 0.38, 0.27), (0.40, 0.27, 0.19), (0.27, 0.18, 0.13)], np.float32)
HAIR_COLOURS = np.array([(0.05, 0.04, 0.04), (0.16, 0.11, 0.07), (0.32, 0.21, 0.13), (0.55, 0.42, 0.27),
                         (0.78, 0.66, 0.45), (0.50, 0.23, 0.11), (0.55, 0.55, 0.55), (0.85, 0.85, 0.83)], np.float32)
HAIR_PROBS = np.array([0.3, 0.25, 0.15, 0.08, 0.07, 0.05, 0.06, 0.04])
IRIS_COLOURS = np.array([(0.16, 0.10, 0.06), (0.30, 0.19, 0.10), (0.38, 0.32, 0.18), (0.28, 0.38, 0.24),
                         (0.30, 0.44, 0.60), (0.45, 0.50, 0.55)], np.float32)
IRIS_PROBS = np.array([0.35, 0.25, 0.12, 0.08, 0.14, 0.06])


def skin_tone(t: float) -> np.ndarray:
    """sRGB colour of skin tone ``t`` in [0, 1] (0 = lightest) from :data:`SKIN_PALETTE`."""
    x = np.clip(t, 0, 1) * (len(SKIN_PALETTE) - 1)
    i = min(int(x), len(SKIN_PALETTE) - 2)
    f = x - i
    return (1 - f) * SKIN_PALETTE[i] + f * SKIN_PALETTE[i + 1]


class TextureBank:
    """Per-identity face textures in UV layout, from procedural parameters (see :meth:`identity_params`).

    Args:
        model: the grid model (its landmarks place the features).
        photos: use photo textures; ``False`` for procedural textures only.
        textures: a folder of the user's photos or ``stn3dmm flatten`` outputs
            (:func:`~.photo_assets.folder_photo_assets`) instead of the flattened sample photos
            (:func:`~.photo_assets.sample_photo_assets`).
        photo_fraction: share of identities with a photo texture (when photos are available).
        device: where textures are made.
    """

    def __init__(self, model, *, photos: bool = True, photo_fraction: float = 0.3, device="cpu", log=None,
                 textures=None):
        self.res = int(model.res)
        self.device = torch.device(device)
        lay = texture_layout(model)
        self.layout = lay
        self.masks = {k: torch.from_numpy(np.asarray(v, np.float32)).to(self.device) for k, v in lay.items()
                      if isinstance(v, np.ndarray)}
        self.eye_height = float(lay["eye_height"])
        self.brow_top = float(lay.get("brow_top", 0.0))
        if not photos:
            assets = {"textures": [], "skins": []}
        elif textures:
            assets = folder_photo_assets(model, textures, log=log)
        else:
            assets = sample_photo_assets(model, log=log)
        self.photo_textures = [t.to(self.device) for t in assets["textures"]]
        self.photo_skins = [np.asarray(s, np.float32) for s in assets["skins"]]
        self.photo_fraction = float(photo_fraction) if self.photo_textures else 0.0

    def identity_params(self, rng: np.random.Generator) -> dict:
        """Draw the texture parameters of one identity from ``rng``."""
        r = self.res
        tone = rng.uniform(0, 1)
        skin = skin_tone(tone) * np.exp(rng.normal(0, 0.04, 3)).astype(np.float32)
        skin = skin * np.array([1 + rng.normal(0, 0.03), 1, 1 - rng.normal(0, 0.03) * 0.5], np.float32)
        hair = HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=HAIR_PROBS)] * np.exp(rng.normal(0, 0.04, 3))
        p = {
            "skin": np.clip(skin, 0.05, 1).astype(np.float32),
            "tone": float(tone),
            "low": rng.normal(0, 0.05, (3, 5, 5)).astype(np.float32),
            "lum": rng.normal(0, 0.045, (1, 11, 11)).astype(np.float32),
            "grain": float(rng.uniform(0.005, 0.03)),
            "grain_seed": int(rng.integers(0, 2 ** 62)),
            "hair": np.clip(hair, 0.02, 0.95).astype(np.float32),
            "hair_on": bool(rng.uniform() < 0.8),
            "hair_mid": float(rng.uniform(-4, 0.45 * max(self.brow_top, 1))),
            "hair_side": float(rng.uniform(0.2, 0.6) * r),
            "hair_width": float(rng.uniform(0.08, 0.2) * r),
            "brow_strength": float(rng.uniform(0.45, 0.9)),
            "brow_width": float(rng.uniform(0.9, 2.0)),
            "iris": IRIS_COLOURS[rng.choice(len(IRIS_COLOURS), p=IRIS_PROBS)] * np.exp(rng.normal(0, 0.1, 3)),
            "lip": np.array([rng.uniform(0.75, 0.92), rng.uniform(0.45, 0.62), rng.uniform(0.45, 0.62)], np.float32),
            "lip_strength": float(rng.uniform(0.5, 1.0)),
            "lash": float(rng.uniform(0.5, 0.95)),
            "socket": float(rng.uniform(0.05, 0.25)),
            "blush": float(rng.uniform(0.0, 0.35)),
            "beard": float(rng.uniform(0.3, 0.85)) if rng.uniform() < 0.15 else 0.0,
            "photo": -1,
        }
        if self.photo_textures and rng.uniform() < self.photo_fraction:
            p["photo"] = int(rng.integers(len(self.photo_textures)))
            p["photo_mirror"] = bool(rng.uniform() < 0.5)
        return p

    def make(self, params: list[dict]) -> torch.Tensor:
        """Textures ``(B, 3, R, R)`` in [0, 1] for a list of identity parameter dicts (batched)."""
        r, dev = self.res, self.device
        m = self.masks

        def stack(key, shape=None):
            return torch.as_tensor(np.stack([np.asarray(p[key], np.float32) for p in params]), device=dev)

        def col(key):
            return stack(key)[:, :, None, None]

        def sc(key):
            return torch.tensor([float(p[key]) for p in params], device=dev)[:, None, None, None]

        def mix(x, colour, w):
            return x + (colour - x) * w

        skin = col("skin")
        tex = skin * (1 + _upsample(stack("low"), (r, r))) * (1 + _upsample(stack("lum"), (r, r)))
        grain = torch.stack([torch.randn(1, r, r, generator=torch.Generator().manual_seed(p["grain_seed"]))
                             for p in params]).to(dev)
        tex = tex * (1 + sc("grain") * grain)
        tex = tex * (1 - sc("socket") * m["socket"])
        red = skin * torch.tensor([1.05, 0.8, 0.8], device=dev)[None, :, None, None]
        tex = mix(tex, red, sc("blush") * m["cheek"] + 0.25 * m["nose"])
        # beard / stubble, noisy
        stub = (0.6 + 0.4 * grain.clamp(-1, 1)) * m["beard"]
        tex = mix(tex, col("hair"), sc("beard") * stub)
        # hair line: rows above hairline(col), lower over the temples
        rows = torch.arange(r, device=dev, dtype=tex.dtype)[None, :, None]
        cols = torch.arange(r, device=dev, dtype=tex.dtype)[None, None, :]
        u = (cols - 0.5 * (r - 1)).abs() / (0.5 * (r - 1))  # 0 centre .. 1 sides
        line = sc("hair_mid")[:, 0] + (sc("hair_side")[:, 0] - sc("hair_mid")[:, 0]) * u ** 3
        line = line + 40.0 * _upsample(stack("lum"), (1, r))[:, 0]  # a wobbly hair line
        hair_w = torch.sigmoid((line - rows) / 1.2) * sc("hair_on")[:, 0]
        hair_tex = col("hair") * (1 + 0.25 * _upsample(stack("low")[:, :1], (r, r)) * 4 + 0.1 * grain)
        tex = mix(tex, hair_tex, hair_w[:, None])
        # brows
        brow = torch.sigmoid((sc("brow_width")[:, 0] - m["brow_dist"][None]) / 0.45)[:, None]
        tex = mix(tex, col("hair") * 0.8 + 0.2 * skin * 0.5, sc("brow_strength") * brow)
        # lips and mouth
        lip = skin * col("lip")
        tex = mix(tex, lip, sc("lip_strength") * m["lips"])
        tex = mix(tex, skin * 0.25, 0.85 * m["mouth"])
        # eyes: sclera, iris, pupil, lash line
        eye = m["eye"][None, None]
        sclera = torch.tensor([0.86, 0.82, 0.8], device=dev)[None, :, None, None] \
            * (0.6 + 0.4 * skin.mean(1, keepdim=True) / 0.7).clamp(max=1.05)
        tex = mix(tex, sclera, eye)
        iris = torch.clamp((1.0 - m["iris_dist"]) / 0.15, 0, 1)[None, None] * eye
        tex = mix(tex, col("iris"), iris)
        pupil = torch.clamp((0.45 - m["iris_dist"]) / 0.1, 0, 1)[None, None] * eye
        tex = mix(tex, torch.full_like(skin, 0.03), pupil)
        lash = torch.clamp(1.2 - m["eye_dist"] / 0.6, 0, 1)[None, None]
        tex = mix(tex, torch.full_like(skin, 0.05), sc("lash") * lash)
        tex = mix(tex, skin * 0.2, m["nostril"][None, None] * 0.9)
        # photo textures: tone-shifted, blended into the procedural texture outside the inner face
        for i, p in enumerate(params):
            k = p.get("photo", -1)
            if k is None or k < 0:
                continue
            ph = self.photo_textures[k]
            if p.get("photo_mirror"):
                ph = ph.flip(-1)
            gain = torch.as_tensor(np.clip(p["skin"] / np.maximum(self.photo_skins[k], 1e-3), 0.35, 2.5),
                                   device=dev, dtype=ph.dtype)[:, None, None]
            ph = ph * gain * (1 + _upsample(stack("lum")[i:i + 1], (r, r))[0]) \
                * (1 + _upsample(stack("low")[i:i + 1], (r, r))[0])
            w = m["face"][None]
            tex[i] = ph * w + tex[i] * (1 - w)
        return tex.clamp(0, 1)


__all__ = ["SKIN_PALETTE", "HAIR_COLOURS", "HAIR_PROBS", "IRIS_COLOURS", "IRIS_PROBS", "skin_tone", "TextureBank"]
