"""The synthetic multi-view face data set with exact ground truth.

This module owns :class:`SyntheticConfig` and :class:`SyntheticFaces`, the synthetic training /
test data: random identities of a grid morphable model, each rendered in
several views (same identity coefficients and texture; different pose, expression, lighting,
background and camera effects) by the batched renderer of :mod:`stn3dmm.training.data.render`, with
exact landmarks, their depth-tested visibility, pose, identity and theta. Its parts:

* pose convention and theta layout -- :mod:`.pose`;
* textures -- :mod:`.textures` (procedural, with features placed by :mod:`.texture_layout`) and
  photo textures from :mod:`.photo_assets` (the sample photos, or a folder of the user's photos or
  ``stn3dmm flatten`` outputs: :attr:`SyntheticConfig.textures`);
* backgrounds -- :mod:`.backgrounds`; camera effects and blurs -- :mod:`.imageops`;
* export to disk -- :mod:`.synthetic_export`.

:class:`SyntheticFaces` is a ``torch.utils.data.Dataset`` (sample format of :mod:`stn3dmm.training.data`);
deterministic given ``(seed, identity, view)``; batched rendering
(:meth:`SyntheticFaces.render_batch`, ``__getitems__`` for DataLoader batches, a small cache of
rendered batches for ``__getitem__``, :meth:`SyntheticFaces.prerender`).

Randomness: identity ``i`` draws from ``numpy.random.default_rng([seed, 0, i])`` and view
``v`` of identity ``i`` from ``default_rng([seed, 1, i, v])``; item ``index`` of a data set is
identity ``identity_offset + index // views``, view ``index % views``. Train / test splits by
identity: e.g. ``SyntheticFaces(model, 1000, 4)`` and ``SyntheticFaces(model, 200, 4,
identity_offset=1000)`` share no identity and are reproducible.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from ...core.conventions import N_POSE
from .backgrounds import BACKGROUND_KINDS, background_params, make_backgrounds
from .imageops import camera_effects
from .photo_assets import _background_tiles, sample_photo_assets
from .pose import euler_to_rotation
from .render import GridRenderer, Lighting
from .sample import landmark_vertices, make_sample
from .textures import TextureBank
from ...core.defaults import IMAGE_SIZE, LOCALISER_SIZE


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------

@dataclass
class SyntheticConfig:
    """What :class:`SyntheticFaces` draws. Angles in degrees; ``scale`` in px/mm at a 224 image
    (scaled proportionally to ``size``); ``shift`` as a fraction of the image side."""

    yaw_range: float = 75.0           #: yaw ~ U(-yaw_range, yaw_range)
    pitch_range: float = 25.0
    roll_range: float = 20.0
    scale: float = 1.05               #: mean face at ~1 px/mm for 224 input, as the photo crops
    scale_jitter: float = 0.1         #: log-uniform +-
    shift: float = 0.04               #: face centre jitter, uniform +- (fraction of the side)
    id_scale: float = 1.0             #: alpha_id ~ N(0, id_scale^2)
    exp_scale: float = 0.7            #: alpha_exp ~ N(0, exp_scale^2), per view
    n_id: int | None = None           #: identity coefficients in theta (leading ones; default all)
    n_exp: int | None = None
    lighting: bool = True             #: random directional light + ambient + specular
    color_jitter: bool = True         #: brightness, contrast, saturation, gamma
    noise: float = 0.025              #: max sigma of the pixel noise
    blur: float = 0.25                #: probability of a slight blur
    backgrounds: tuple = BACKGROUND_KINDS
    photo_textures: bool = True       #: use photo textures (the flattened sample photos, or ``textures``)
    photo_fraction: float = 0.3       #: share of identities with a photo texture
    textures: str | None = None       #: folder of photos / ``stn3dmm flatten`` outputs instead of the samples
    supersample: int | None = None    #: anti-aliasing factor (default 2 up to 160 px, else 1)
    factor: int | None = None         #: lattice samples per grid cell (default: automatic)


# ----------------------------------------------------------------------------------------------
# the data set
# ----------------------------------------------------------------------------------------------

class SyntheticFaces(Dataset):
    """Rendered faces of random identities in several views, with exact ground truth.

    Args:
        model: a grid :class:`~stn3dmm.model.MorphableModel`.
        n_identities: number of identities; item ``index`` shows identity
            ``identity_offset + index // views_per_identity`` in view ``index % views_per_identity``.
        views_per_identity: views per identity.
        size: image side S.
        seed: random seed; items are a deterministic function of ``(seed, identity, view)``.
        landmark_set: ``"aflw21"``, ``"ibug68"`` or an index array of model vertices.
        identity_offset: first identity number (disjoint identity ranges give disjoint splits).
        config: a :class:`SyntheticConfig`; keyword ``options`` override its fields.
        texture: optional ``(3, T, T)`` texture used for EVERY identity (tests, visualisation).
        batch_size: batch of the internal ``__getitem__`` cache (aligned chunks of indices).
        cache_batches: how many rendered chunks to keep.
        device: where to render (returned items are on the CPU).

    Items are sample dicts (:func:`~stn3dmm.training.data.sample.make_sample`): ``image`` (3, S, S) in
    [0, 1]; ``landmarks`` (L, 2) exact projections (px, x right, y down, 0-based);
    ``visibility`` (L,) 1 = inside the image and passing the depth test (self-occluded
    landmarks are 0); ``identity``; ``pose`` (yaw, pitch, roll) degrees (:data:`POSE_CONVENTION`);
    ``index``; ``theta`` (6 + n_id + n_exp) ground truth in the STN's convention
    (:data:`THETA_LAYOUT`, scale map ``"exp"``).

    Rendering is batched: a DataLoader's batches go through ``__getitems__`` (one batched
    render per batch, also with shuffling); single ``__getitem__`` calls render and cache the
    aligned chunk of ``batch_size`` items they fall in; :meth:`prerender` renders everything
    once (images stored as uint8, like the exported PNGs).
    """

    def __init__(self, model, n_identities: int, views_per_identity: int = 4, size: int = LOCALISER_SIZE, seed: int = 0,
                 landmark_set="aflw21", *, identity_offset: int = 0, config: SyntheticConfig | None = None,
                 texture: torch.Tensor | None = None, batch_size: int = 32, cache_batches: int = 4, device="cpu",
                 log=None, **options):
        if not getattr(model, "res", 0):
            raise ValueError("SyntheticFaces needs a grid model (model.res > 0)")
        if n_identities < 1 or views_per_identity < 1:
            raise ValueError("n_identities and views_per_identity must be at least 1")
        if identity_offset < 0 or seed < 0:
            raise ValueError("seed and identity_offset must be non-negative")
        self.config = replace(config or SyntheticConfig(), **options)
        cfg = self.config
        self.model = model
        self.n_identities, self.views = int(n_identities), int(views_per_identity)
        self.size, self.seed, self.identity_offset = int(size), int(seed), int(identity_offset)
        self.landmark_set = landmark_set
        self.landmark_index = landmark_vertices(model, landmark_set)
        self.device = torch.device(device)
        self.renderer = GridRenderer(model, self.size, supersample=cfg.supersample, factor=cfg.factor,
                                     n_id=cfg.n_id, n_exp=cfg.n_exp).to(self.device)
        self.n_id, self.n_exp = self.renderer.stn.n_id, self.renderer.stn.n_exp
        if not 0 <= cfg.photo_fraction <= 1:
            raise ValueError(f"photo_fraction must be in [0, 1], got {cfg.photo_fraction}")
        self.bank = TextureBank(model, photos=(cfg.photo_textures or bool(cfg.textures)) and texture is None,
                                photo_fraction=cfg.photo_fraction, device=self.device, log=log,
                                textures=cfg.textures)
        self.tiles = []
        if "photo" in cfg.backgrounds:
            self.tiles = [t.to(self.device) for t in sample_photo_assets(model, log=log)["tiles"]] \
                if cfg.photo_textures else self._corner_tiles()
        self.fixed_texture = None if texture is None else torch.as_tensor(texture, dtype=torch.float32).to(self.device)
        # the face centre: centroid of the landmarks of the mean shape (the photo crops centre the face)
        lm_all = np.concatenate([np.asarray(v) for v in model.landmarks.values()]) if model.landmarks else None
        pick = model.landmarks.get("ibug68", lm_all) if model.landmarks else None
        mean = np.asarray(model.mean, np.float64)
        self.face_centre = torch.tensor(mean[pick].mean(0) if pick is not None else mean.mean(0), dtype=torch.float32)
        self.batch_size, self.cache_batches = max(1, int(batch_size)), max(1, int(cache_batches))
        self._cache: OrderedDict = OrderedDict()
        self._textures: OrderedDict = OrderedDict()
        self._store: dict | None = None

    def _corner_tiles(self):
        from ...photos import read_photo
        from ...photos.samples import sample_photo_paths

        tiles = []
        for p in sample_photo_paths():
            try:
                tiles += _background_tiles(read_photo(p).image, None, 128)
            except Exception:  # pragma: no cover
                pass
        return [t.to(self.device) for t in tiles]

    # -- indexing ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.n_identities * self.views

    def identity_of(self, index: int) -> tuple[int, int]:
        """``index -> (identity, view)``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self.identity_offset + index // self.views, index % self.views

    @property
    def n_params(self) -> int:
        return N_POSE + self.n_id + self.n_exp

    # -- random parameters ------------------------------------------------------------------

    def identity_params(self, identity: int) -> dict:
        """Shape coefficients and texture parameters of an identity (deterministic)."""
        rng = np.random.default_rng([self.seed, 0, int(identity)])
        p = {"alpha_id": (rng.normal(0, 1, self.n_id) * self.config.id_scale).astype(np.float32)}
        p["texture"] = self.bank.identity_params(rng)
        return p

    def view_params(self, identity: int, view: int) -> dict:
        """Pose, expression, lighting, background and camera effects of one view (deterministic)."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, 1, int(identity), int(view)])
        p = {
            "yaw": float(rng.uniform(-cfg.yaw_range, cfg.yaw_range)),
            "pitch": float(rng.uniform(-cfg.pitch_range, cfg.pitch_range)),
            "roll": float(rng.uniform(-cfg.roll_range, cfg.roll_range)),
            "scale": float(cfg.scale * self.size / IMAGE_SIZE * math.exp(rng.uniform(-cfg.scale_jitter, cfg.scale_jitter))),
            "shift": rng.uniform(-cfg.shift, cfg.shift, 2).astype(np.float32) * self.size,
            "alpha_exp": (rng.normal(0, 1, self.n_exp) * cfg.exp_scale).astype(np.float32),
        }
        d = np.array([rng.uniform(-0.9, 0.9), rng.uniform(-0.5, 0.9), rng.uniform(0.35, 1.0)])
        amb = rng.uniform(0.3, 0.7)
        tint = np.exp(rng.normal(0, 0.05, 3))
        p["light"] = {"direction": (d / np.linalg.norm(d)).astype(np.float32),
                      "ambient": (amb * np.exp(rng.normal(0, 0.03, 3))).astype(np.float32),
                      "diffuse": ((1.05 - amb) * rng.uniform(0.8, 1.2) * tint).astype(np.float32),
                      "specular": float(rng.uniform(0, 0.15)), "shininess": float(rng.uniform(6, 40))}
        p["background"] = background_params(rng, cfg.backgrounds, len(self.tiles))
        p["camera"] = {"brightness": float(rng.uniform(0.8, 1.2)), "contrast": float(rng.uniform(0.8, 1.2)),
                       "saturation": float(rng.uniform(0.65, 1.3)), "gamma": float(rng.uniform(0.85, 1.2)),
                       "noise": float(rng.uniform(0, cfg.noise)),
                       "blur": float(rng.uniform(0.3, 1.0)) if rng.uniform() < cfg.blur else 0.0,
                       "seed": int(rng.integers(0, 2 ** 62))}
        return p

    def theta_of(self, identity_params: list[dict], view_params: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """Ground-truth ``theta (B, P)`` and ``pose (B, 3)`` for parameter dicts.

        ``t`` puts the projected face centre (centroid of the mean shape's landmarks) at the
        image centre plus the view's shift, as the photo pipeline's crops centre the face."""
        from ...stn.layers import rotation_to_axis_angle

        pose = torch.tensor([[v["yaw"], v["pitch"], v["roll"]] for v in view_params], dtype=torch.float64)
        rot = euler_to_rotation(pose[:, 0], pose[:, 1], pose[:, 2])
        r = rotation_to_axis_angle(rot)
        s = torch.tensor([v["scale"] for v in view_params], dtype=torch.float64)
        c = rot @ self.face_centre.double()
        shift = torch.as_tensor(np.stack([v["shift"] for v in view_params]), dtype=torch.float64)
        centre = 0.5 * (self.size - 1)
        t = torch.stack((centre + shift[:, 0] - s * c[:, 0], centre + shift[:, 1] + s * c[:, 1]), 1)
        a_id = torch.as_tensor(np.stack([i["alpha_id"] for i in identity_params]), dtype=torch.float64)
        a_exp = torch.as_tensor(np.stack([v["alpha_exp"] for v in view_params]), dtype=torch.float64)
        theta = torch.cat((r, t, s.log()[:, None], a_id, a_exp), 1)
        return theta.float(), pose.float()

    # -- textures ---------------------------------------------------------------------------

    def texture(self, identity: int) -> torch.Tensor:
        """The ``(3, R, R)`` texture of an identity (cached)."""
        return self._identity_textures([identity], [self.identity_params(identity)])[0]

    def _identity_textures(self, identities: list[int], params: list[dict]) -> torch.Tensor:
        if self.fixed_texture is not None:
            return self.fixed_texture[None].expand(len(identities), -1, -1, -1)
        missing = [(i, p) for i, p in zip(identities, params) if i not in self._textures]
        uniq = {}
        for i, p in missing:
            uniq.setdefault(i, p)
        if uniq:
            made = self.bank.make([p["texture"] for p in uniq.values()])
            for i, t in zip(uniq, made):
                self._textures[i] = t
        out = torch.stack([self._textures[i] for i in identities])
        for i in identities:
            self._textures.move_to_end(i)
        while len(self._textures) > max(256, 2 * len(set(identities))):
            self._textures.popitem(last=False)
        return out

    # -- rendering --------------------------------------------------------------------------

    @torch.no_grad()
    def render_batch(self, indices, extras: bool = False) -> dict:
        """Render items ``indices`` in one batch: a dict of stacked tensors (on ``device``) with
        the sample keys ``image, landmarks, visibility, identity, pose, index, theta``; with
        ``extras`` also ``alpha`` (B, 1, S, S) coverage, ``texture`` (B, 3, R, R),
        ``points`` (B, N, 2) all projected vertices and ``background`` (B, 3, S, S)."""
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("no indices")
        ids, views = zip(*(self.identity_of(i) for i in indices))
        id_params = {i: self.identity_params(i) for i in set(ids)}
        ip = [id_params[i] for i in ids]
        vp = [self.view_params(i, v) for i, v in zip(ids, views)]
        dev = self.device
        theta, pose = self.theta_of(ip, vp)
        theta = theta.to(dev)
        tex = self._identity_textures(list(ids), ip)
        if self.config.lighting:
            def lt(key):
                return torch.as_tensor(np.stack([np.asarray(v["light"][key], np.float32) for v in vp]), device=dev)

            light = Lighting(lt("direction"), lt("ambient"), lt("diffuse"), lt("specular"), lt("shininess"))
        else:
            light = None
        bg = make_backgrounds([v["background"] for v in vp], self.size, self.tiles, dev)
        out = self.renderer(theta, tex, light, bg)
        img = out["image"]
        lm_idx = torch.as_tensor(self.landmark_index, device=dev)
        landmarks = out["points"].index_select(1, lm_idx)
        vis = self.renderer.visibility(out, lm_idx)
        img = self._camera(img, [v["camera"] for v in vp])
        res = {"image": img.clamp(0, 1), "landmarks": landmarks, "visibility": vis.float(),
               "identity": torch.tensor(ids, dtype=torch.int64, device=dev), "pose": pose.to(dev),
               "index": torch.tensor(indices, dtype=torch.int64, device=dev), "theta": theta}
        if extras:
            res.update(alpha=out["alpha"], texture=tex, points=out["points"], background=bg)
        return res

    def _camera(self, img: torch.Tensor, cams: list[dict]) -> torch.Tensor:
        """Colour jitter, blur and pixel noise (per image parameters): :func:`~.imageops.camera_effects`."""
        cfg = self.config
        return camera_effects(img, cams, color_jitter=cfg.color_jitter, blur=cfg.blur, noise=cfg.noise)

    # -- Dataset protocol -------------------------------------------------------------------

    def _samples(self, batch: dict, rows) -> list[dict]:
        out = []
        for k in rows:
            img = batch["image"][k]
            if img.dtype == torch.uint8:
                img = img.float() / 255.0
            out.append(make_sample(img.cpu(), batch["landmarks"][k].cpu().numpy(), batch["visibility"][k].cpu().numpy(),
                                   int(batch["identity"][k]), batch["pose"][k].cpu().numpy(), int(batch["index"][k]),
                                   batch["theta"][k].cpu().numpy()))
        return out

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if index < 0:
            index += len(self)
        self.identity_of(index)
        if self._store is not None:
            return self._samples(self._store, [index])[0]
        chunk = index // self.batch_size
        if chunk not in self._cache:
            lo = chunk * self.batch_size
            self._cache[chunk] = self.render_batch(range(lo, min(len(self), lo + self.batch_size)))
            while len(self._cache) > self.cache_batches:
                self._cache.popitem(last=False)
        self._cache.move_to_end(chunk)
        return self._samples(self._cache[chunk], [index - chunk * self.batch_size])[0]

    def __getitems__(self, indices) -> list[dict]:
        """Batched fetch used by ``torch.utils.data.DataLoader``: one render per batch."""
        indices = [int(i) for i in indices]
        if self._store is not None:
            return self._samples(self._store, indices)
        return self._samples(self.render_batch(indices), range(len(indices)))

    def prerender(self, progress: bool = False, part: tuple[int, int] = (0, 1), gather=None) -> "SyntheticFaces":
        """Render every item once and keep it (images as uint8: 3 S^2 bytes each).

        Shared work (DDP): with ``part = (rank, world)`` this process renders only the aligned
        chunks ``rank, rank + world, ...`` of ``batch_size`` items, and ``gather`` (a callable:
        this process's ``{chunk start: batch}`` -> every process's merged) collects the rest.
        The chunks are those of one process, so the store is bit-identical either way."""
        from tqdm import tqdm

        n = len(self)
        rank, world = part
        starts = list(range(0, n, self.batch_size))
        mine = {}
        for lo in tqdm(starts[rank::world], desc="render", unit="batch", disable=not progress):
            b = self.render_batch(range(lo, min(n, lo + self.batch_size)))
            b["image"] = (b["image"] * 255 + 0.5).clamp(0, 255).to(torch.uint8)
            mine[lo] = {k: v.cpu() for k, v in b.items()}
        parts = gather(mine) if gather is not None else mine
        if sorted(parts) != starts:
            raise RuntimeError(f"prerender: {len(parts)} of {len(starts)} chunks rendered (part={part})")
        self._store = {k: torch.cat([parts[lo][k] for lo in starts]) for k in parts[starts[0]]}
        self._cache.clear()
        return self


__all__ = ["SyntheticConfig", "SyntheticFaces"]
