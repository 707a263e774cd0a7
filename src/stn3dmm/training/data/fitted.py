"""Real photos labelled by the landmark pipeline's fits, and their faces re-rendered at new poses.

This module owns :func:`read_fits` (a ``stn3dmm flatten`` output tree: one JSON per face with
theta and the crop it was fitted in, one completed texture), :func:`held_out` (the split by
person) and :class:`FittedPhotos`, the data set of ``data.kind = "fitted"``.

Each photo gives ``real_views`` crops of the photo itself and ``profiled_views`` renders of its
own fitted face (its shape and expression coefficients, its completed texture) at a new yaw
(up to ``yaw_range``), pitch and roll, lit anew and composited over a crop of ANOTHER photo's
surroundings: the profiling of 300W-LP (Zhu et al. 2016), with the 3D morphable model of the
fit in place of their meshed photo.

Labels
------
``landmark_set`` is the model's ``ibug68`` vertices followed by every ``grid_step``-th grid
vertex (rows and columns). A real crop's landmarks are the fitted model's projections of those
vertices (pseudo-labels); a render's are exact. Every landmark counts, hidden or not, with
weight ``68 / L`` (so that the landmark term has the scale of 68 points; ``ibug_share`` moves a
given share of that weight onto the 68 iBUG points, which the benchmark scores): these are 3D-style
landmarks, the positions of model vertices, as AFLW2000-3D's are. Renders also carry their
exact ``theta`` and ``pose``; real crops carry neither (the batch drops keys not in every item).

Framing
-------
Every crop is the square that :func:`~.crop.landmark_square` makes of the face's ``ibug68``
points (the framing that ``stn3dmm evaluate`` uses from a benchmark box), jittered in centre
(``shift``), side (``scale_jitter``) and turn (``roll``, real crops; renders are rolled in 3D).

Items are deterministic in ``(seed, photo, view)``; item ``i`` is photo ``i // views``, view
``i % views`` (the first ``real_views`` views are real crops). ``identities`` is the person (the
photo's folder), so ``train.pairs = "identity"`` pairs photos, and renders, of one person.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ...core.conventions import N_POSE
from ...core.defaults import LOCALISER_SIZE
from .backgrounds import background_params, make_backgrounds
from ...photos.crop import landmark_square
from .imageops import camera_effects, degrade, draw_degradation
from .pose import euler_to_rotation, rotation_to_euler
from .render import GridRenderer, Lighting
from .sample import make_sample

#: name ending of the flatten JSON of a photo's main face (face 0)
FIT_SUFFIX = "_face0.json"
SPLITS = ("train", "val", "all")


@dataclass
class Fit:
    """One photo's fit, read from a ``stn3dmm flatten`` JSON."""

    person: str               #: the photo's folder, relative to the output root
    photo: Path               #: the photo
    theta: np.ndarray         #: (P,) theta in the fit's crop (crop px, ``exp`` scale)
    matrix: np.ndarray        #: (2, 3) photo px -> the fit's crop px
    texture: Path             #: the completed texture (RGBA PNG)
    error: float              #: the fit's landmark error, crop px


def read_fits(root, photos=None, max_error: float = 4.0) -> tuple[list[Fit], list[tuple[str, str]]]:
    """Every face-0 fit under a ``stn3dmm flatten`` output tree, sorted by path.

    Args:
        root: the flatten output folder (``out/Person/photo_face0.json`` ...).
        photos: the folder that was flattened; the photo of ``root/A/x_face0.json`` is looked up
            as ``photos/A/<the JSON's photo file name>`` (default: the JSON's own photo path).
        max_error: fits with a larger landmark error (px in the 224 crop) are left out.

    Returns:
        (fits, problems): problems are ``(json path, reason)`` of the faces left out.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder of stn3dmm flatten outputs")
    fits, problems = [], []
    for js in sorted(root.rglob(f"*{FIT_SUFFIX}")):
        try:
            d = json.loads(js.read_text())
            if d.get("method", "landmarks") != "landmarks":      # a localiser's theta is no label
                problems.append((str(js), f"not a landmark fit (method {d['method']!r})"))
                continue
            rel = js.parent.relative_to(root)
            photo = Path(d["photo"]) if photos is None else Path(photos) / rel / Path(d["photo"]).name
            tex = js.with_name(js.name[: -len(".json")] + "_completed.png")
            fit = Fit(str(rel), photo, np.asarray(d["theta"], np.float64),
                      np.asarray(d["crop"]["matrix_photo_to_crop"], np.float64), tex, float(d["fit_error_px"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append((str(js), f"unreadable flatten JSON ({e})"))
            continue
        if not (fit.error <= max_error):
            problems.append((str(js), f"fit error {fit.error:.2f} px is over {max_error}"))
        elif not fit.texture.is_file():
            problems.append((str(js), f"no completed texture {fit.texture.name}"))
        elif not fit.photo.is_file():
            problems.append((str(js), f"the photo {fit.photo} is missing"))
        else:
            fits.append(fit)
    return fits, problems


def held_out(people, every: int = 10) -> np.ndarray:
    """(n,) bool: True for the people held out for selection, every ``every``-th distinct name
    in sorted order (0th, ``every``-th, ...), so the split depends on the names alone."""
    names = sorted(set(people))
    out = {n: i % every == 0 for i, n in enumerate(names)}
    return np.array([out[p] for p in people], dtype=bool)


def landmark_weights(n: int, ibug_share: float | None = None) -> np.ndarray:
    """(n,) float32 weights of a landmark set of the 68 iBUG points then ``n - 68`` grid vertices,
    summing to 68: ``68 / n`` each, or ``ibug_share`` of the sum on the 68 and the rest shared by
    the grid vertices.

    Examples:
        >>> w = landmark_weights(852, 0.5)
        >>> float(w[:68].sum()), float(w[68:].sum()), float(w[0])
        (34.0, 34.0, 0.5)
    """
    if ibug_share is None or n == 68:
        return np.full(n, 68.0 / n, np.float32)
    if not 0.0 <= ibug_share <= 1.0 or n < 68:
        raise ValueError(f"ibug_share must be in [0, 1] with at least 68 landmarks, got {ibug_share} and {n}")
    w = np.full(n, 68.0 * (1.0 - ibug_share) / (n - 68), np.float32)
    w[:68] = ibug_share
    return w


def landmark_vertices_dense(model, grid_step: int) -> np.ndarray:
    """The ``ibug68`` vertices, then every ``grid_step``-th grid vertex in rows and columns
    (none for ``grid_step`` 0: the 68 alone, as the benchmark scores them)."""
    r = int(model.res)
    if grid_step <= 0:
        return np.asarray(model.landmarks["ibug68"], np.int64).copy()
    rows = np.arange(0, r, grid_step)
    grid = (rows[:, None] * r + rows[None, :]).reshape(-1)
    return np.concatenate([np.asarray(model.landmarks["ibug68"], np.int64), grid.astype(np.int64)])


class FittedPhotos(Dataset):
    """Real photos with pseudo-labels from their fits, and profiled renders (module docstring).

    Args:
        root: a ``stn3dmm flatten`` output tree (:func:`read_fits`).
        model: the grid morphable model the fits were made with.
        size: crop side S.
        photos: the folder that was flattened (see :func:`read_fits`).
        split: ``"train"`` (people not held out), ``"val"`` (held out: :func:`held_out`) or ``"all"``.
        real_views, profiled_views: crops of the photo and renders of its face, per photo.
        seed: items are a deterministic function of ``(seed, photo, view)``.
        yaw_range, pitch_range, roll_range: the renders' pose ranges, degrees (uniform).
        head_yaw_min: a head render's |yaw| is drawn from ``[head_yaw_min, yaw_range]`` (before the
            limit of 85 degrees from the photo's own; 0: every yaw).
        shift, scale_jitter: framing jitter (fraction of the side; log-uniform +-).
        max_error: fits with a larger error are left out (``excluded`` lists them).
        grid_step: the landmark set's grid spacing (:func:`landmark_vertices_dense`).
        tiles: how many photos give background tiles.
        head_share: the share of profiled views that are head renders (:mod:`.profiling`: the
            photo itself, meshed around its face, turned) rather than face renders.
        context: the crop's side, in crop sides of the 68 points' square (1: the framing
            ``stn3dmm evaluate`` uses; more: a photo-like view with the face smaller in it).
        augment: colour jitter, blur and noise on every item (off: the pixels as cropped or rendered).
        degrade: the share of items then made harder by one harsh degradation (low resolution, an
            occluder cut from another photo's surroundings, darkness, side light or a heavy blur;
            :func:`~.imageops.degrade`), drawn apart from every other draw of the item, so that 0
            leaves the items exactly as before.
        ibug_share: the share of the landmark weight (68 in all) on the 68 iBUG points, the rest
            spread evenly over the grid vertices (None: every landmark the same, ``68 / L``).
    """

    def __init__(self, root, model, size: int = LOCALISER_SIZE, *, photos=None, split: str = "train",
                 real_views: int = 1, profiled_views: int = 4, seed: int = 0, yaw_range: float = 90.0,
                 pitch_range: float = 25.0, roll_range: float = 25.0, shift: float = 0.06,
                 scale_jitter: float = 0.12, max_error: float = 4.0, grid_step: int = 4, tiles: int = 600,
                 head_share: float = 0.0, context: float = 1.0, augment: bool = True, degrade: float = 0.0,
                 ibug_share: float | None = None, head_yaw_min: float = 0.0, progress: bool = True, log=None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if real_views < 0 or profiled_views < 0 or real_views + profiled_views < 1:
            raise ValueError("real_views and profiled_views must be >= 0, and one of them > 0")
        if not 0.0 <= head_share <= 1.0:
            raise ValueError(f"head_share must be in [0, 1], got {head_share}")
        if not 0.0 <= degrade <= 1.0:
            raise ValueError(f"degrade must be in [0, 1], got {degrade}")
        fits, self.excluded = read_fits(root, photos, max_error)
        if split != "all" and fits:
            val = held_out([f.person for f in fits])
            fits = [f for f, v in zip(fits, val) if v == (split == "val")]
        self.fits, self.model, self.size, self.seed = fits, model, int(size), int(seed)
        self.real_views, self.profiled_views = int(real_views), int(profiled_views)
        self.views = self.real_views + self.profiled_views
        self.ranges = (float(yaw_range), float(pitch_range), float(roll_range))
        self.head_yaw_min = float(head_yaw_min)
        self.shift, self.scale_jitter, self.augment = float(shift), float(scale_jitter), bool(augment)
        self.head_share, self.context, self.degrade = float(head_share), float(context), float(degrade)
        self.landmark_set = landmark_vertices_dense(model, grid_step)
        self.weights = landmark_weights(len(self.landmark_set), ibug_share)
        names = sorted({f.person for f in fits})
        person = {n: i for i, n in enumerate(names)}
        self.identity_names = names
        self.photo_identity = np.array([person[f.person] for f in fits], dtype=np.int64)
        self.identities = np.repeat(self.photo_identity, self.views)
        n_id = n_exp = (len(fits[0].theta) - N_POSE) // 2 if fits else 0
        self.renderer = GridRenderer(model, self.size, n_id=n_id, n_exp=n_exp)
        self._load(progress, int(tiles), log)

    # -- loading ------------------------------------------------------------------------------

    def _load(self, progress: bool, n_tiles: int, log) -> None:
        from tqdm import tqdm

        from ...photos import read_photo
        from .photo_assets import _background_tiles, _read_flatten_texture

        stn = self.renderer.stn
        images, textures, points = [], [], []
        for f in tqdm(self.fits, desc="fitted photos", unit="photo", disable=not progress, dynamic_ncols=True):
            images.append((read_photo(f.photo, max_side=None).image * 255 + 0.5).astype(np.uint8))   # 4x less memory
            textures.append((_read_flatten_texture(f.texture, int(self.model.res)) * 255 + 0.5).to(torch.uint8))
        self.images, self.textures = images, textures
        theta = torch.as_tensor(np.stack([f.theta for f in self.fits]) if self.fits else np.zeros((0, 26)))
        for lo in range(0, len(self.fits), 256):
            with torch.no_grad():
                pts = stn.geometry(theta[lo:lo + 256].float()).points[:, torch.as_tensor(self.landmark_set)].double()
            for k, p in enumerate(pts.numpy()):
                m = self.fits[lo + k].matrix
                a, b = m[:, :2], m[:, 2]
                points.append((p - b) @ np.linalg.inv(a).T)     # fit crop px -> photo px
        self.points = points
        self.alpha = theta[:, N_POSE:].float()
        rng = np.random.default_rng([self.seed, 99])
        self.tiles = []
        for j in rng.permutation(len(self.fits))[:n_tiles]:
            lo, hi = points[j].min(0), points[j].max(0)
            tiles = _background_tiles(images[j].astype(np.float32) / 255, (*lo, *hi), 96)
            self.tiles += [tiles[i] for i in rng.permutation(len(tiles))[:2]]
        if log:
            log(f"fitted photos: {len(self.fits)} photos of {len(self.identity_names)} people, "
                f"{len(self.excluded)} left out, {len(self.tiles)} background tiles")

    # -- indexing -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.fits) * self.views

    def identity_of(self, index: int) -> tuple[int, int]:
        """``index -> (photo, view)``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return index // self.views, index % self.views

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([int(index) % len(self)])[0]

    def __getitems__(self, indices) -> list[dict]:
        items = [(int(i),) + self.identity_of(int(i)) for i in indices]
        kind = ["real" if it[2] < self.real_views else "head" if self.is_head(*it[1:]) else "render" for it in items]
        real, rend, head = ([it for it, k in zip(items, kind) if k == want] for want in ("real", "render", "head"))
        out = {}
        for group, make in ((real, self._real), (rend, self._render), (head, self._render_head)):
            if group:
                out.update(zip((it[0] for it in group), make([it[1:] for it in group], [it[0] for it in group])))
        return [out[i] for i, _, _ in items]

    # -- items --------------------------------------------------------------------------------

    def _rng(self, photo: int, view: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 2, photo, view])

    def is_head(self, photo: int, view: int) -> bool:
        """Whether item ``(photo, view)`` is a head render (a deterministic draw of ``head_share``)."""
        if view < self.real_views or self.head_share <= 0:
            return False
        return bool(np.random.default_rng([self.seed, 3, photo, view]).uniform() < self.head_share)

    def _camera(self, rng) -> dict:
        return {"brightness": float(rng.uniform(0.8, 1.2)), "contrast": float(rng.uniform(0.8, 1.2)),
                "saturation": float(rng.uniform(0.7, 1.3)), "gamma": float(rng.uniform(0.85, 1.2)),
                "noise": float(rng.uniform(0, 0.02)), "blur": float(rng.uniform(0.3, 1.0)) if rng.uniform() < 0.2
                else 0.0, "seed": int(rng.integers(0, 2 ** 62))}

    def _square(self, pts68: np.ndarray, rng) -> tuple[np.ndarray, float]:
        """The jittered crop square of a face's 68 points."""
        centre, side = landmark_square(pts68, "ibug68")
        centre = centre + rng.uniform(-self.shift, self.shift, 2) * side
        return centre, self.context * side * math.exp(rng.uniform(-self.scale_jitter, self.scale_jitter))

    def _finish(self, images: torch.Tensor, landmarks, cams, keys, extra) -> list[dict]:
        if self.augment:
            images = camera_effects(images, cams, color_jitter=True, blur=0.02, noise=0.02).clamp(0, 1)
        if self.degrade > 0:
            images = images.clone()
            for k, (index, photo) in enumerate(keys):
                rng = np.random.default_rng([self.seed, 4, photo, self.identity_of(index)[1]])
                if rng.uniform() < self.degrade:
                    images[k] = degrade(images[k], draw_degradation(rng, len(self.tiles)), self.tiles).clamp(0, 1)
        vis = self.weights
        out = []
        for k, (index, photo) in enumerate(keys):
            e = extra[k] if extra else {}
            out.append(make_sample(images[k], landmarks[k], vis, int(self.photo_identity[photo]), e.get("pose"),
                                   index, e.get("theta")))
        return out

    def _real(self, pv, indices) -> list[dict]:
        from ...photos.crop import crop_square

        crops, lms, cams = [], [], []
        for photo, view in pv:
            rng = self._rng(photo, view)
            pts = self.points[photo]
            centre, side = self._square(pts[:68], rng)
            angle = math.radians(float(rng.uniform(-1, 1) * self.ranges[2]))
            crop, tr = crop_square(self.images[photo], centre, side, self.size, angle=angle)
            crops.append(torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1))
            lms.append(tr.apply(pts))
            cams.append(self._camera(rng))
        return self._finish(torch.stack(crops), lms, cams, [(i, p) for i, (p, _) in zip(indices, pv)], None)

    @torch.no_grad()
    def _render(self, pv, indices) -> list[dict]:
        photos = [p for p, _ in pv]
        rngs = [self._rng(p, v) for p, v in pv]
        yaw, pitch, roll = self.ranges
        pose = torch.tensor([[r.uniform(-yaw, yaw), r.uniform(-pitch, pitch), r.uniform(-roll, roll)] for r in rngs],
                            dtype=torch.float64)
        theta, _ = self._posed_unit(photos, pose, rngs)
        light = _lighting(rngs)
        bg = make_backgrounds([background_params(r, ("photo",), len(self.tiles)) for r in rngs], self.size,
                              self.tiles)
        tex = torch.stack([self.textures[p] for p in photos]).float() / 255
        out = self.renderer(theta.float(), tex, light, bg)
        lms = out["points"][:, torch.as_tensor(self.landmark_set)].numpy()
        extra = [{"pose": pose[k].numpy(), "theta": theta[k].numpy()} for k in range(len(pv))]
        return self._finish(out["image"], lms, [self._camera(r) for r in rngs],
                            [(i, p) for i, p in zip(indices, photos)], extra)

    @torch.no_grad()
    def _render_head(self, pv, indices) -> list[dict]:
        """Head renders (:mod:`.profiling`): the photo around the face, turned to a new pose."""
        from .profiling import HEAD_RAISE, HEAD_SIDE, head_surface, render_surfaces

        photos = [p for p, _ in pv]
        rngs = [self._rng(p, v) for p, v in pv]
        fit_theta = torch.as_tensor(np.stack([self.fits[p].theta for p in photos])).float()
        fit = self.renderer.stn.geometry(fit_theta)
        src = rotation_to_euler(fit.rotation.double())
        pose = torch.stack([self._head_pose(src[k], r) for k, r in enumerate(rngs)])
        theta, pts = self._posed_unit(photos, pose, rngs)
        r = int(self.model.res)
        surfaces = []
        for k, p in enumerate(photos):
            centre, side = landmark_square(self.points[p][:68], "ibug68")
            surfaces.append(head_surface(self.images[p], self.fits[p].theta, self.fits[p].matrix,
                                         fit.posed[k].double().numpy().reshape(r, r, 3),
                                         centre - np.array([0.0, HEAD_RAISE * side]), HEAD_SIDE * side))
        bg = make_backgrounds([background_params(rr, ("photo",), len(self.tiles)) for rr in rngs], self.size,
                              self.tiles)
        out = render_surfaces(torch.stack([s["nodes"] for s in surfaces]), torch.stack([s["texture"] for s in surfaces]),
                              euler_to_rotation(pose[:, 0], pose[:, 1], pose[:, 2]).float(), theta[:, 5].exp().float(),
                              theta[:, 3:5].float(), self.size, bg, self.renderer.supersample)
        extra = [{"pose": pose[k].numpy(), "theta": theta[k].numpy()} for k in range(len(pv))]
        return self._finish(out["image"], pts, [self._camera(rr) for rr in rngs],
                            [(i, p) for i, p in zip(indices, photos)], extra)

    def _head_pose(self, source: torch.Tensor, rng) -> torch.Tensor:
        """(yaw, pitch, roll) of a head render: turned further towards the side the photo shows
        (either side when it is within 10 degrees of frontal), at most 85 degrees from the photo's
        own yaw so that what the photo hid is never the front."""
        yaw_r, pitch_r, roll_r = self.ranges
        y0 = float(source[0])
        sign = math.copysign(1.0, y0) if abs(y0) > 10 else (1.0 if rng.uniform() < 0.5 else -1.0)
        yaw = float(np.clip(sign * rng.uniform(self.head_yaw_min, yaw_r), y0 - 85, y0 + 85))
        return torch.tensor([yaw, rng.uniform(-pitch_r, pitch_r), rng.uniform(-roll_r, roll_r)], dtype=torch.float64)

    def _posed_unit(self, photos, pose: torch.Tensor, rngs):
        """theta (B, P) of each photo's fitted face at ``pose``, framed by the jittered square of its
        68 points in an S crop, and its landmark set's points (B, L, 2) there."""
        from ...stn.layers import rotation_to_axis_angle

        rot = rotation_to_axis_angle(euler_to_rotation(pose[:, 0], pose[:, 1], pose[:, 2]))
        unit = torch.cat((rot, torch.zeros(len(photos), 3, dtype=torch.float64), self.alpha[photos].double()), 1)
        pts = self.renderer.stn.geometry(unit.float()).points[:, torch.as_tensor(self.landmark_set[:68])].double().numpy()
        theta = unit.clone()
        c0 = 0.5 * (self.size - 1)
        for k, r in enumerate(rngs):             # unit scale: points in mm; frame the 68 points' square
            centre, side = self._square(pts[k], r)
            s = self.size / side
            theta[k, 3:5] = torch.as_tensor(c0 - s * centre)
            theta[k, 5] = math.log(s)
        lms = self.renderer.stn.geometry(theta.float()).points[:, torch.as_tensor(self.landmark_set)].numpy()
        return theta, lms

    def __repr__(self) -> str:
        return (f"FittedPhotos({len(self.fits)} photos of {len(self.identity_names)} people, views="
                f"{self.real_views} real + {self.profiled_views} profiled, size={self.size}, "
                f"{len(self.landmark_set)} landmarks, excluded={len(self.excluded)})")


def _lighting(rngs) -> Lighting:
    """New light for a render of a photo texture (which already holds the photo's own light):
    mostly ambient, a softer directional part than the synthetic faces'."""
    rows = []
    for r in rngs:
        d = np.array([r.uniform(-0.9, 0.9), r.uniform(-0.5, 0.9), r.uniform(0.4, 1.0)])
        amb = r.uniform(0.55, 0.9)
        rows.append((d / np.linalg.norm(d), np.full(3, amb), np.full(3, 1.05 - amb) * r.uniform(0.8, 1.2),
                     r.uniform(0, 0.08), r.uniform(6, 40)))

    def col(k):
        return torch.as_tensor(np.stack([np.asarray(row[k], np.float32) for row in rows]))

    return Lighting(col(0), col(1), col(2), col(3), col(4))


__all__ = ["Fit", "FittedPhotos", "read_fits", "held_out", "landmark_vertices_dense", "FIT_SUFFIX", "SPLITS"]
