"""The main job: photos in, pose-normalised face textures in dense correspondence out.

Owns the per-face pipeline (detect -> crop -> fit -> flatten -> mask -> complete):
:class:`Flattener` (its :meth:`Flattener.flatten_many` batches faces from any photos) and the
:class:`FaceResult` it gives per face, the options' limits (:func:`check_options`), and
:func:`flatten_main_face` and :func:`texture_difference` for one photo. The batch runner behind
``stn3dmm flatten``, which lists, reads and writes, is :mod:`stn3dmm.flatten.runner`.

Visibility: a texel is visible (alpha 255) when the model's visibility test passes, its
sample lies inside the crop, and the crop there shows the photo, not the zero padding that
:func:`~stn3dmm.photos.crop_face` adds where the face square leaves the photo (the crop's
validity is sampled with the texture, bilinearly; a texel counts only if its sample touches
no padding). Padding is thus invisible: completed from the mirror, ignored by ``average``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from ..fitting.landmarks import ORIGINAL_PRIOR_WEIGHT, fit_landmarks
from ..stn import MorphableSTN
from ..stn.texture import symmetric_completion
from ..core.threads import cpu_threads
from ..core.defaults import IMAGE_SIZE

#: Prior weight for dense detector targets (~400 points, a few px of noise each): the
#: landmark term is ~20x that of 21 labelled points, and MAP with ~2 px noise gives ~4.
DENSE_PRIOR_WEIGHT = 4.0
#: Smallest STN input (crop side) and output texture side accepted.
MIN_SIZE, MIN_RES = 32, 16
#: Largest crop side accepted: photos are read with at most 2048 px on their longer side
#: (:data:`~stn3dmm.photos.io.DEFAULT_MAX_SIDE`), so a larger crop of a face only upsamples,
#: while the memory of its crop, validity mask, warp and overlay grows with the square of the side.
MAX_SIZE = 2048
#: Largest texture side accepted: a texel of a 1024 texture already spans less than a pixel of
#: a 1024 px face crop, and the model's own mesh has 112 x 112 vertices; a larger texture adds
#: no detail, only memory (``--res 30000`` would ask for many GB).
MAX_RES = 1024
#: A texel whose sampled crop validity is below this touches padding: invisible.
VALID_MIN = 0.999
#: How theta is found: the landmark fit, the trained localiser in one forward pass per crop, or
#: ``auto``: the localiser where it finds the face turned by :data:`AUTO_SWITCH_YAW` or more, or
#: where the face mesh found no points on the face; the landmark fit elsewhere.
METHODS = ("landmarks", "localiser", "auto")
#: ``auto``'s switch: the localiser's own |yaw| (degrees) from which its theta is kept. Chosen on
#: the two tuning sets of ``benchmarks/large_pose.py --sweep`` (held-out LFW people's head renders
#: and synthetic renders; the lowest mean of their bucket means) with the stage-2 and stage-4
#: localisers. With stage 5's, and stage 6's with mirror averaging, both sets lean to 0 (the
#: localiser alone); 30 was kept because on the test's real near-frontal faces the landmark fit
#: is ahead, which the renders do not show (docs/benchmarks.md, "its switch"). With the blend
#: (:data:`AUTO_FIT_SHARE`), 30 is ahead of the localiser alone on both tuning sets too.
AUTO_SWITCH_YAW = 30.0
#: Where ``auto`` keeps the landmark fit, the fit's targets are this share the face mesh's points and
#: the rest the localiser's own projection of the same vertices (1: the face mesh's alone). 0.4 was
#: chosen on the two tuning sets of ``benchmarks/large_pose.py --sweep 30 --shares ...`` (the mean of
#: their bucket means: 2.94 at 1, 2.78 at 0.4; docs/benchmarks.md, "auto's blend").
AUTO_FIT_SHARE = 0.4
#: ``auto`` localises a face again on a crop turned upright where its face mesh sees it turned in the
#: photo by more than this (degrees: upside down, or on its side; the localiser learned roll within
#: 25), unless the localiser sees it at :data:`UPRIGHT_PROFILE` degrees of |yaw| or more: at profile
#: the face mesh can lie upside down on an upright face. Chosen on the held-out head renders turned
#: by quarter turns (docs/benchmarks.md, "Faces turned in the photo: upright by the face mesh").
UPRIGHT_ROLL = 60.0
UPRIGHT_PROFILE = 80.0
#: ... and the crop first seen is kept where the localiser agrees with itself there clearly better
#: than on the upright crop: its mirror gap (:meth:`~stn3dmm.fitting.localiser.LocaliserFitter.mirror_gap`)
#: below this share of the upright crop's. The face mesh can read a profile as turned on its side.
#: Chosen on the held-out head renders at any roll (docs/benchmarks.md, "Faces turned in the photo:
#: the localiser's second opinion"; ``benchmarks/upright_gap.py``): of the 424 faces turned, 14 wrong
#: by the face mesh alone, 12 at shares of 0.4 to 0.8, 13 at 1.
UPRIGHT_KEEP_GAP = 0.6
#: ``auto`` keeps the landmark fit only where the face mesh and the localiser agree on which way the
#: face stands in the photo: the mesh's turn (:meth:`~stn3dmm.photos.detect.Face.mesh_angle`) within
#: this many degrees of the localiser's (:func:`~stn3dmm.fitting.localiser.face_turn`). On a face
#: upside down the face mesh can lie upright, and a fit to it lands the face upside down however
#: sure the localiser was (docs/benchmarks.md, "The localiser at any roll").
FIT_TURN_AGREE = 60.0


def check_options(size=None, res=None, max_faces=None, *, flags: bool = False) -> None:
    """Refuse a crop side outside [:data:`MIN_SIZE`, :data:`MAX_SIZE`], a texture side outside
    [:data:`MIN_RES`, :data:`MAX_RES`] or ``max_faces`` below 1 (None: not given) with
    ValueError, before any work or allocation; ``flags`` names them as the command line's
    options. The one check that the command line and :class:`Flattener` share."""
    name = (lambda n: "--" + n.replace("_", "-")) if flags else (lambda n: n)  # noqa: E731
    if size is not None and int(size) < MIN_SIZE:
        raise ValueError(f"{name('size')} must be at least {MIN_SIZE} px (the face crop side), got {size}")
    if size is not None and int(size) > MAX_SIZE:
        raise ValueError(f"{name('size')} must be at most {MAX_SIZE} px (the face crop side: photos are read at "
                         f"most {MAX_SIZE} px a side, a larger crop adds memory, not detail), got {size}")
    if res is not None and int(res) < MIN_RES:
        raise ValueError(f"{name('res')} must be at least {MIN_RES} (the texture side), got {res}")
    if res is not None and int(res) > MAX_RES:
        raise ValueError(f"{name('res')} must be at most {MAX_RES} (the texture side: beyond it a texel is smaller "
                         f"than a pixel of the largest face crop), got {res}")
    if max_faces is not None and int(max_faces) < 1:
        raise ValueError(f"{name('max_faces')} must be at least 1 (leave it out for all faces), got {max_faces}")


@dataclass
class FaceResult:
    """One flattened face. Arrays are numpy; images float in [0, 1], UV layout (R', R')."""

    index: int
    crop: np.ndarray            # (S, S, 3) the STN input
    transform: object           # CropTransform photo -> crop
    theta: np.ndarray           # (6 + K + E,)
    error: float                # mean weighted landmark error, crop px
    targets: object             # LandmarkTargets in crop px
    points: np.ndarray          # (R * R, 2) projected model grid vertices, crop px
    shape: np.ndarray           # (R * R, 3) fitted shape, mm
    flattened: np.ndarray       # (R', R', 3)
    mask: np.ndarray            # (R', R') visibility, 0 or 1
    completed: np.ndarray       # (R', R', 3)
    completed_alpha: np.ndarray  # (R', R')
    face: object                # the detection, photo px
    seconds: dict = field(default_factory=dict)


class _TimedSTN(MorphableSTN):
    """The STN, noting how long its last visibility test took (for the time breakdown)."""

    visibility_seconds = 0.0

    def vertex_visibility(self, posed):
        t = time.perf_counter()
        try:
            return super().vertex_visibility(posed)
        finally:
            self.visibility_seconds = time.perf_counter() - t


class Flattener:
    """Holds the model, the STN and the detector for many photos.

    Args:
        model: a grid MorphableModel (R x R vertices).
        size: STN input side (the crop), default 224, from :data:`MIN_SIZE` to :data:`MAX_SIZE`.
        res: output texture side R' (default: the model's R), from :data:`MIN_RES` to :data:`MAX_RES`. Any
            R' samples the same surface: the model's grid of sampling points is resampled
            bilinearly (the OBJ keeps the model's R x R mesh; its UVs fit any texture side).
        visibility: ``"depth"`` (default) or ``"backface"``.
        mapping: detector landmark map, ``"dense"`` (default) or ``"ibug68"``.
        prior_weight: fitting prior weight (default: :data:`DENSE_PRIOR_WEIGHT` for dense).
        detector: a :class:`~stn3dmm.photos.FaceDetector` (default: a new one).
        device: torch device for fitting and sampling.
        threads: torch CPU threads for cropping, fitting and sampling (default 1: these are many
            small operations, and more threads slow them down badly on a busy machine; see
            :mod:`stn3dmm.core.threads`). None keeps the process's setting.
        method: ``"landmarks"`` (default: face mesh, landmark map, Levenberg-Marquardt fit),
            ``"localiser"`` (the face detector's box, then the trained localiser's theta: no face
            mesh, no fit; :mod:`stn3dmm.fitting.localiser`) or ``"auto"`` (:data:`METHODS`; the
            default of ``stn3dmm flatten``, which scores better on AFLW2000-3D; here the default
            stays the landmark fit, which needs no trained network).
        localiser: the :class:`~stn3dmm.fitting.localiser.LocaliserFitter` for ``"localiser"`` and
            ``"auto"`` (default: the shipped one, :func:`~stn3dmm.fitting.localiser.load_localiser`).
        switch_yaw: ``"auto"``'s switch (default :data:`AUTO_SWITCH_YAW`).
        fit_share: ``"auto"``'s blend of the face mesh's targets with the localiser's, in [0, 1]
            (default :data:`AUTO_FIT_SHARE`; 1: the face mesh's alone).
        fit_turn_agree: ``"auto"`` keeps the fit only where the face mesh's turn is within this
            many degrees of the localiser's (default :data:`FIT_TURN_AGREE`; 180: always).
    """

    def __init__(self, model, size=IMAGE_SIZE, res=None, visibility="depth", mapping="dense", prior_weight=None,
                 detector=None, device="cpu", blend=2.0, threads: int | None = 1, method: str = "landmarks",
                 localiser=None, switch_yaw: float = AUTO_SWITCH_YAW, fit_share: float = AUTO_FIT_SHARE,
                 fit_turn_agree: float = FIT_TURN_AGREE):
        from ..photos import FaceDetector

        check_options(size=size, res=res)
        # how to make this Flattener again in another process (recipe()); not when parts were passed in
        self._recipe = None if detector is not None or localiser is not None else dict(
            model=model, size=size, res=res, visibility=visibility, mapping=mapping, prior_weight=prior_weight,
            device=str(device), blend=blend, threads=threads, method=method, switch_yaw=switch_yaw,
            fit_share=fit_share, fit_turn_agree=fit_turn_agree)
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        if not 0.0 <= fit_share <= 1.0:
            raise ValueError(f"fit_share must be in [0, 1], got {fit_share}")
        self.localiser, self.switch_yaw, self.fit_share = None, float(switch_yaw), float(fit_share)
        self.fit_turn_agree = float(fit_turn_agree)
        if method != "landmarks":
            from ..fitting.localiser import load_localiser

            self.localiser = localiser or load_localiser(device, model=model)
        self.model, self.size, self.mapping, self.blend = model, int(size), mapping, blend
        self.threads = threads
        self.prior_weight = prior_weight if prior_weight is not None else (
            DENSE_PRIOR_WEIGHT if mapping == "dense" else ORIGINAL_PRIOR_WEIGHT)
        self.device = torch.device(device)
        # the crop carries a 4th channel, 1 inside the photo and 0 on padding (see the module doc)
        self.stn = _TimedSTN(model, out_res=res, visibility=visibility, landmarks=None,
                             max_outside=None, channels=4).to(self.device)
        self.res = self.stn.out_res
        # the localiser alone needs boxes only: no face mesh, and no check of the eye keypoints' way up
        # (they turn a crop only where the localiser's ``turns`` is above 1; the boxes are the same)
        boxes_only = method == "localiser"
        self.detector = detector or FaceDetector(landmarks=not boxes_only,
                                                 upright=not boxes_only or self.localiser.turns > 1)

    def recipe(self) -> dict:
        """The keyword arguments that make this Flattener again (in a worker process,
        :mod:`stn3dmm.flatten.workers`): the model and the options.

        Raises:
            ValueError: a detector or a localiser was passed in, which cannot be remade.
        """
        if self._recipe is None:
            raise ValueError("this Flattener was given its own detector or localiser, which a worker process "
                             "cannot remake: use workers=1")
        return dict(self._recipe)

    @property
    def needs_mesh(self) -> bool:
        """Whether a face needs its face-mesh points (the landmark fit) or only its box."""
        return self.method == "landmarks"

    def detect(self, photo):
        """Faces of a Photo (or image array), main face first, tiny ones flagged."""
        from ..photos import detect_faces

        return detect_faces(photo, self.detector)

    def flatten_faces(self, image: np.ndarray, faces: list) -> list[FaceResult]:
        """Fit and flatten ``faces`` of ``image`` (H, W, 3) float in [0, 1], batched."""
        return self.flatten_many([(image, f) for f in faces])

    def flatten_many(self, items: list) -> list[FaceResult]:
        """Fit and flatten ``(image, face)`` pairs (faces from any photos) in one batch.
        ``FaceResult.index`` is the position within each image's own list of faces."""
        if not items:
            return []
        with cpu_threads(self.threads, self.device):
            return self._flatten_many(items)

    def _flatten_many(self, items: list) -> list[FaceResult]:
        t0 = time.perf_counter()
        how = {"localiser": self._localise, "landmarks": self._fit, "auto": self._auto}[self.method]
        crops, transforms, targets, theta, error = how(items)
        t1 = time.perf_counter()
        images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(self.device, torch.float32)
        with torch.no_grad():
            out = self.stn(images, theta.to(self.device, torch.float32))
            flat = out["flattened"][:, :3]
            mask = out["mask"] * (out["flattened"][:, 3:] >= VALID_MIN).to(flat.dtype)
            completed, alpha = symmetric_completion(flat, mask, blend=self.blend)
        t2 = time.perf_counter()
        n = len(items)
        vis = self.stn.visibility_seconds
        seconds = {"crop+fit": (t1 - t0) / n, "sample": (t2 - t1 - vis) / n, "visibility": vis / n}
        seen = Counter()
        res = []
        for k, (image, f) in enumerate(items):
            idx = seen[id(image)]
            seen[id(image)] += 1
            res.append(FaceResult(
                index=idx, crop=crops[k][..., :3], transform=transforms[k], theta=theta[k].numpy(),
                error=float(error[k]), targets=targets[k], points=out["points"][k].cpu().numpy(),
                shape=out["shape"][k].cpu().numpy(), flattened=flat[k].permute(1, 2, 0).cpu().numpy(),
                mask=mask[k, 0].cpu().numpy(), completed=completed[k].permute(1, 2, 0).cpu().numpy(),
                completed_alpha=alpha[k, 0].cpu().numpy(), face=f, seconds=dict(seconds)))
        return res

    def _crop(self, image, face=None, square=None, angle: float = 0.0):
        """The STN input: the crop (S, S, 4) with the photo-validity channel, and its transform
        (of ``face``, or of ``square`` turned by ``angle``)."""
        from ..photos import crop_face, crop_square

        if square is None:
            crop, tr = crop_face(image, face, size=self.size)
        else:
            crop, tr = crop_square(image, square[0], square[1], self.size, angle=angle)
        return _with_validity(crop, tr), tr

    def _fit(self, items: list, guide=None):
        """Crops, transforms, landmark targets, theta and errors by the landmark fit; ``guide``:
        ``(theta, transforms)`` of the localiser, whose points the targets are blended with."""
        from ..photos import face_targets

        crops, transforms, targets = [], [], []
        for image, f in items:
            crop, tr = self._crop(image, f)
            crops.append(crop)
            transforms.append(tr)
            targets.append(face_targets(f.transformed(tr), self.model, self.mapping))
        if guide is not None:
            targets = self._blend_targets(targets, transforms, *guide)
        pts = torch.tensor(np.stack([t.points for t in targets]), dtype=torch.float64)
        w = torch.tensor(np.stack([t.weights for t in targets]), dtype=torch.float64)
        fit = fit_landmarks(self.model, pts, w, landmark_set=torch.as_tensor(targets[0].vertices),
                            prior_weight=self.prior_weight, image_size=(self.size, self.size), threads=None)
        return crops, transforms, targets, fit.theta, fit.error

    def _blend_targets(self, targets: list, transforms: list, theta: torch.Tensor, sources: list) -> list:
        """Each target point moved to ``fit_share`` x its face-mesh place + (1 - ``fit_share``) x
        where ``theta`` (in the crops of ``sources``: photo -> crop) puts the same vertex."""
        vertices = torch.as_tensor(targets[0].vertices)
        with torch.no_grad():
            guide = self.stn.geometry(theta.to(self.device, torch.float32)).points[:, vertices]
        guide = guide.double().cpu().numpy()
        w = self.fit_share
        return [t._replace(points=w * t.points + (1 - w) * tr.apply(src.to_source(g)))
                for t, tr, src, g in zip(targets, transforms, sources, guide)]

    def _localise(self, items: list, upright: bool = False):
        """The same by the localiser: its theta in its own crop (from the faces' boxes; ``upright``:
        faces turned in the photo again on a crop turned upright, :meth:`_upright`), re-expressed in
        the STN's crop of the same square (a scale about the pixel centres: no landmark targets, no
        fit error)."""
        transforms, theta = self._localised(items, upright)
        crops = self._crops_at(items, transforms, range(len(items)))
        n = len(items)
        return crops, transforms, [None] * n, theta, np.full(n, np.nan)

    def _localised(self, items: list, upright: bool = False) -> tuple[list, torch.Tensor]:
        """:meth:`_localise`'s transforms (photo -> the STN's crop of each face's final square) and
        theta (N, P) in those crops, without cropping."""
        from ..photos.crop import image_size, square_transform, transform_theta

        found = self.localiser.from_faces([im for im, _ in items], [f for _, f in items])
        if upright:
            found = self._upright(items, found)
        k = self.size / self.localiser.size
        to_crop = np.array([[k, 0.0, 0.5 * (k - 1)], [0.0, k, 0.5 * (k - 1)]])
        transforms = [square_transform(r.square[0], r.square[1], self.size, image_size(image), r.angle)
                      for (image, _), r in zip(items, found)]
        return transforms, torch.as_tensor(np.stack([transform_theta(r.theta, to_crop) for r in found]))

    def _crops_at(self, items: list, transforms: list, which) -> list:
        """The STN inputs of faces ``which`` (their crops by ``transforms``, with the validity
        channel); None for the others."""
        from ..photos.crop import warp

        crops = [None] * len(items)
        for k in which:
            crops[k] = _with_validity(warp(items[k][0], transforms[k]), transforms[k])
        return crops

    def upright_candidates(self, items: list, found: list) -> tuple[list, list]:
        """The faces of ``items`` (``(image, face)``) that their face mesh sees turned in the photo
        (:data:`UPRIGHT_ROLL`) and the localiser's ``found`` does not see at profile
        (:data:`UPRIGHT_PROFILE`): their indices, and each localised again on a crop turned upright
        by the mesh's angle, framed by its 68 points. ``benchmarks/upright_gap.py`` replays these."""
        from ..fitting.localiser import abs_yaw

        yaw = abs_yaw(found)
        angles = [f.mesh_angle() for _, f in items]
        turned = [k for k, a in enumerate(angles) if a is not None and abs(math.degrees(a)) > UPRIGHT_ROLL
                  and yaw[k] < UPRIGHT_PROFILE]
        return (turned, self.localised_in_mesh_frame([items[k] for k in turned])) if turned else ([], [])

    def localised_in_mesh_frame(self, items: list) -> list:
        """Each ``(image, face)`` (a face with face-mesh points) localised on a crop turned by its
        mesh's angle (:meth:`~stn3dmm.photos.detect.Face.mesh_angle`) and framed by its 68 points."""
        from ..fitting.localiser import upright_frame
        from ..photos.crop import landmark_square
        from ..photos.landmark_map import mediapipe_ibug68

        angles = [f.mesh_angle() for _, f in items]
        squares = [upright_frame(mediapipe_ibug68(f.points), a, lambda p: landmark_square(p, "ibug68"))
                   for (_, f), a in zip(items, angles)]
        return self.localiser.from_squares([im for im, _ in items], squares, angles)

    def _upright(self, items: list, found: list) -> list:
        """``found`` with the faces turned in the photo localised again upright
        (:meth:`upright_candidates`), unless the localiser was clearly surer of itself on the crop
        it first saw (:data:`UPRIGHT_KEEP_GAP`)."""
        found = list(found)
        for k, r in zip(*self.upright_candidates(items, found)):
            if not found[k].mirror_gap < UPRIGHT_KEEP_GAP * r.mirror_gap:   # NaN (no mirror): turned
                found[k] = r
        return found

    def _auto(self, items: list):
        """The same by ``auto`` (:data:`METHODS`): the localiser on every face, then the landmark
        fit in place of its theta where the face has face-mesh points and the localiser's |yaw|
        is below :attr:`switch_yaw`, to targets blended with the localiser's (:attr:`fit_share`). A
        face its face mesh sees turned in the photo is localised on a crop turned upright
        (:data:`UPRIGHT_ROLL`). The fit is not kept where the face mesh stands the face another way up
        than the localiser (:data:`FIT_TURN_AGREE`)."""
        from ..fitting.localiser import face_turn
        from ..photos.detect import turn_apart
        from ..stn.pose import pose_from_theta

        transforms, theta = self._localised(items, upright=True)
        yaw = pose_from_theta(theta.double())[:, 0].abs().numpy()
        turn = face_turn(theta, [tr.angle for tr in transforms])

        def agree(k, face):
            return turn_apart(face.mesh_angle(), turn[k]) <= math.radians(self.fit_turn_agree)

        refit = [k for k, (_, f) in enumerate(items)
                 if f.points is not None and yaw[k] < self.switch_yaw and agree(k, f)]
        crops = self._crops_at(items, transforms, sorted(set(range(len(items))) - set(refit)))
        targets, error = [None] * len(items), np.full(len(items), np.nan)
        if not refit:
            return crops, transforms, targets, theta, error
        guide = (theta[refit], [transforms[k] for k in refit]) if self.fit_share < 1 else None
        fit = self._fit([items[k] for k in refit], guide)
        theta = theta.clone()
        for j, k in enumerate(refit):
            crops[k], transforms[k], targets[k] = fit[0][j], fit[1][j], fit[2][j]
            theta[k], error[k] = fit[3][j].to(theta.dtype), fit[4][j]
        return crops, transforms, targets, theta, error


def _with_validity(crop: np.ndarray, transform) -> np.ndarray:
    """A crop (S, S, 3) with a 4th channel: 1 where it shows the photo, 0 on padding (sampled
    with the colours)."""
    return np.concatenate([crop, transform.valid_mask()[..., None].astype(np.float32)], -1)


def flatten_main_face(flattener: Flattener, image: np.ndarray) -> FaceResult:
    """The main face of ``image`` (H, W, 3) float in [0, 1], flattened; ValueError if none."""
    faces = [f for f in flattener.detect(image) if not f.tiny and (f.points is not None or not flattener.needs_mesh)]
    if not faces:
        raise ValueError("no face large enough to fit")
    return flattener.flatten_faces(image, faces[:1])[0]


def texture_difference(a: FaceResult, b: FaceResult, mirror: bool = False) -> tuple[float, float]:
    """Mean absolute difference (0-255 scale) of two flattened textures over the pixels visible
    in both, and the fraction of pixels that is. ``mirror``: b is of the mirrored photo, so it
    is compared after a left-right flip (the face's own mirror in UV space)."""
    tb, mb = (b.flattened[:, ::-1], b.mask[:, ::-1]) if mirror else (b.flattened, b.mask)
    both = (a.mask > 0.5) & (mb > 0.5)
    if not both.any():
        return float("nan"), 0.0
    return float(255 * np.abs(a.flattened[both] - tb[both]).mean()), float(both.mean())
