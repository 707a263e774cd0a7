"""The main job: photos in, pose-normalised face textures in dense correspondence out.

Owns the per-face pipeline (detect -> crop -> fit -> flatten -> mask -> complete) as a
function, :func:`flatten_faces`, and the batch runner behind ``stn3dmm flatten``,
:func:`flatten_paths`, which writes for every face

* ``<name>_texture.png``   the flattened texture, RGBA, alpha = visibility;
* ``<name>_completed.png`` symmetric completion (hidden pixels from their mirror pixel);
* ``<name>_overlay.png``   crop | fitted mesh | flattened | mask | completed;
* ``<name>.json``          theta, landmarks, fit error, crop transform, detection;
* ``<name>.obj`` (+ ``.mtl``, ``_texture.png``) the fitted shape textured with the completion,

where ``<name>`` is ``<photo stem>_face<k>`` (k = 0 for the largest face). Every file is
written atomically; existing outputs are never replaced without ``overwrite``. A bad photo
is reported and skipped; the run goes on.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .export import write_textured_obj
from .fit import fit_landmarks
from .stn import MorphableSTN
from .texture import symmetric_completion

#: Prior weight for dense detector targets (~400 points, a few px of noise each): the
#: landmark term is ~20x that of 21 labelled points, and MAP with ~2 px noise gives ~4.
DENSE_PRIOR_WEIGHT = 4.0


@dataclass
class FaceResult:
    """One flattened face. Arrays are numpy; images float in [0, 1], UV layout (R, R)."""

    index: int
    crop: np.ndarray            # (S, S, 3) the STN input
    transform: object           # CropTransform photo -> crop
    theta: np.ndarray           # (6 + K + E,)
    error: float                # mean weighted landmark error, crop px
    targets: object             # LandmarkTargets in crop px
    points: np.ndarray          # (N, 2) projected grid vertices, crop px
    shape: np.ndarray           # (N, 3) fitted shape, mm
    flattened: np.ndarray       # (R, R, 3)
    mask: np.ndarray            # (R, R)
    completed: np.ndarray       # (R, R, 3)
    completed_alpha: np.ndarray  # (R, R)
    face: object                # the detection, photo px
    seconds: dict = field(default_factory=dict)


class Flattener:
    """Holds the model, the STN and the detector for many photos.

    Args:
        model: a grid MorphableModel.
        size: STN input side (the crop), default 224.
        res: output grid side (default: the model's R).
        visibility: ``"depth"`` (default) or ``"backface"``.
        mapping: detector landmark map, ``"dense"`` (default) or ``"ibug68"``.
        prior_weight: fitting prior weight (default: :data:`DENSE_PRIOR_WEIGHT` for dense).
        detector: a :class:`~stn3dmm.photos.FaceDetector` (default: a new one).
        device: torch device for fitting and sampling.
    """

    def __init__(self, model, size=224, res=None, visibility="depth", mapping="dense", prior_weight=None,
                 detector=None, device="cpu", blend=2.0):
        from .photos import FaceDetector

        self.model, self.size, self.mapping, self.blend = model, int(size), mapping, blend
        self.prior_weight = prior_weight if prior_weight is not None else (
            DENSE_PRIOR_WEIGHT if mapping == "dense" else 0.1 / 0.8998)
        self.device = torch.device(device)
        self.stn = MorphableSTN(model, out_res=res, visibility=visibility, landmarks=None,
                                max_outside=None).to(self.device)
        self.detector = detector or FaceDetector()

    def detect(self, photo):
        """Faces of a Photo (or image array), largest first, tiny ones flagged."""
        from .photos import detect_faces

        return detect_faces(photo, self.detector)

    def flatten_faces(self, image: np.ndarray, faces: list) -> list[FaceResult]:
        """Fit and flatten ``faces`` of ``image`` (H, W, 3) float in [0, 1], batched."""
        return self.flatten_many([(image, f) for f in faces])

    def flatten_many(self, items: list) -> list[FaceResult]:
        """Fit and flatten ``(image, face)`` pairs (faces from any photos) in one batch.
        ``FaceResult.index`` is the position within each image's own list of faces."""
        from .photos import crop_face

        if not items:
            return []
        t0 = time.perf_counter()
        crops, transforms, targets = [], [], []
        for image, f in items:
            crop, tr = crop_face(image, f, size=self.size)
            crops.append(crop)
            transforms.append(tr)
            targets.append(f.transformed(tr).landmarks(self.model, self.mapping))
        t1 = time.perf_counter()
        pts = torch.tensor(np.stack([t.points for t in targets]), dtype=torch.float64)
        w = torch.tensor(np.stack([t.weights for t in targets]), dtype=torch.float64)
        fit = fit_landmarks(self.model, pts, w, landmark_set=torch.as_tensor(targets[0].vertices),
                            prior_weight=self.prior_weight, image_size=(self.size, self.size))
        t2 = time.perf_counter()
        images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(self.device, torch.float32)
        with torch.no_grad():
            out = self.stn(images, fit.theta.to(self.device, torch.float32))
            completed, alpha = symmetric_completion(out["flattened"], out["mask"], blend=self.blend)
        t3 = time.perf_counter()
        n = len(items)
        seen = Counter()
        res = []
        for k, (image, f) in enumerate(items):
            idx = seen[id(image)]
            seen[id(image)] += 1
            res.append(FaceResult(
                index=idx, crop=crops[k], transform=transforms[k], theta=fit.theta[k].numpy(),
                error=float(fit.error[k]), targets=targets[k], points=out["points"][k].cpu().numpy(),
                shape=out["shape"][k].cpu().numpy(), flattened=out["flattened"][k].permute(1, 2, 0).cpu().numpy(),
                mask=out["mask"][k, 0].cpu().numpy(), completed=completed[k].permute(1, 2, 0).cpu().numpy(),
                completed_alpha=alpha[k, 0].cpu().numpy(), face=f,
                seconds={"crop+map": (t1 - t0) / n, "fit": (t2 - t1) / n, "sample+visibility": (t3 - t2) / n}))
        return res


# ----------------------------------------------------------------------------- outputs

def _u8(x):
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def overlay_image(r: FaceResult, res: int) -> np.ndarray:
    """crop + landmarks | crop + mesh | flattened | mask | completed, as one uint8 image."""
    from PIL import Image, ImageDraw

    s = r.crop.shape[0]
    panels = []
    im = Image.fromarray(_u8(r.crop))
    d = ImageDraw.Draw(im)
    used = r.targets.weights > 0
    for x, y in r.targets.points[used]:
        d.point((float(x), float(y)), fill=(0, 255, 0))
    panels.append(im)
    im = Image.fromarray(_u8(r.crop))
    d = ImageDraw.Draw(im)
    g = r.points.reshape(res, res, 2)
    step = max(1, res // 28)
    for i in range(0, res, step):
        d.line([tuple(p) for p in g[i].tolist()], fill=(0, 255, 255), width=1)
        d.line([tuple(p) for p in g[:, i].tolist()], fill=(0, 255, 255), width=1)
    panels.append(im)
    for a in (r.flattened, np.repeat(r.mask[..., None], 3, -1), r.completed):
        panels.append(Image.fromarray(_u8(a)).resize((s, s), Image.NEAREST))
    out = Image.new("RGB", (5 * s + 4 * 4, s), (255, 255, 255))
    for k, p in enumerate(panels):
        out.paste(p, (k * (s + 4), 0))
    return np.asarray(out)


def output_names(stem: str, k: int) -> dict:
    base = f"{stem}_face{k}"
    return {"texture": f"{base}_texture.png", "completed": f"{base}_completed.png", "overlay": f"{base}_overlay.png",
            "json": f"{base}.json", "obj": f"{base}.obj"}


def write_outputs(r: FaceResult, out_dir: Path, stem: str, model, photo, overwrite: bool, mesh: bool = True) -> list:
    """Write the files of one face; returns their paths. Raises FileExistsError when an
    output exists and ``overwrite`` is False (checked before anything is written)."""
    from .photos import write_png_atomic

    names = output_names(stem, r.index)
    paths = {k: out_dir / v for k, v in names.items()}
    if not overwrite:
        clash = [p for p in paths.values() if p.exists()]
        if clash:
            raise FileExistsError(f"{clash[0]} exists (use --overwrite)")
    res = model.res if r.flattened.shape[0] == model.res else r.flattened.shape[0]
    write_png_atomic(paths["texture"], np.concatenate([_u8(r.flattened), _u8(r.mask)[..., None]], -1))
    write_png_atomic(paths["completed"], np.concatenate([_u8(r.completed), _u8(r.completed_alpha)[..., None]], -1))
    write_png_atomic(paths["overlay"], overlay_image(r, res), compress_level=1)
    tr = r.transform
    info = {
        "photo": str(getattr(photo, "path", "")), "face_index": r.index,
        "detection": {"bbox": np.asarray(r.face.bbox).tolist(), "score": float(r.face.score)},
        "photo_size_read": [int(photo.width), int(photo.height)] if hasattr(photo, "width") else None,
        "photo_scale_read": float(getattr(photo, "scale", 1.0)),
        "crop": {"size": int(r.crop.shape[0]), "matrix_photo_to_crop": np.asarray(tr.matrix).tolist()},
        "theta": r.theta.tolist(), "theta_layout": "[r(3) axis-angle, t(2) crop px, logs(1) s=exp(logs), alpha_id, alpha_exp]",
        "fit_error_px": r.error,
        "landmarks": {"mapping": "model vertices <- detector points", "vertices": r.targets.vertices.tolist(),
                      "points_crop_px": np.round(r.targets.points, 3).tolist(),
                      "weights": np.round(r.targets.weights, 4).tolist()},
        "model": model.source, "res": int(res), "visible_fraction": float(r.mask.mean()),
        "convention": "pixels: x right, y down, 0-based centres; model: mm, y up",
    }
    from .export import _atomic_write

    _atomic_write(paths["json"], json.dumps(info, indent=1).encode())
    written = [paths["texture"], paths["completed"], paths["overlay"], paths["json"]]
    if mesh:
        tex = np.concatenate([_u8(r.completed), _u8(r.completed_alpha)[..., None]], -1)
        if res == model.res:
            written += write_textured_obj(paths["obj"], r.shape, model.faces, model.uv, tex)
    return written


# ----------------------------------------------------------------------------- batch runner

@dataclass
class RunReport:
    """What a batch did: counts, the problems by file, and where the time went."""

    photos: int = 0
    succeeded: int = 0
    faces: int = 0
    failures: list = field(default_factory=list)     # (path, reason)
    seconds: dict = field(default_factory=lambda: defaultdict(float))
    wall: float = 0.0

    def summary(self) -> str:
        lines = [f"{self.succeeded} of {self.photos} photos flattened ({self.faces} faces) in {self.wall:.1f} s"]
        if self.seconds:
            tot = sum(self.seconds.values())
            lines.append("time: " + ", ".join(f"{k} {v:.1f} s ({100 * v / max(tot, 1e-9):.0f}%)"
                                              for k, v in self.seconds.items()))
        if self.failures:
            lines.append(f"{len(self.failures)} problem(s):")
            by = Counter(r.split(":")[0] for _, r in self.failures)
            lines += [f"  {p}: {r}" for p, r in self.failures]
            lines.append("  by kind: " + ", ".join(f"{k} x{v}" for k, v in by.items()))
        return "\n".join(lines)


def flatten_paths(inputs, out_dir, flattener: Flattener, *, overwrite=False, max_faces=None, mesh=True,
                  progress=True, log=print, chunk: int = 8) -> RunReport:
    """Flatten every face of every photo in ``inputs`` (files and folders) into ``out_dir``.

    Photos are read and their faces detected one by one; the faces of up to ``chunk`` photos
    are then fitted and flattened in one batch, and their files written by a background
    thread while the next photos are read."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from .photos import PhotoError, iter_photos, read_photo

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = RunReport()
    paths = list(iter_photos(inputs, on_skip=lambda p, why: rep.failures.append((str(p), f"not a photo: {why}"))))
    stems = Counter()
    writes = []
    writer = ThreadPoolExecutor(max_workers=1)
    t_start = time.perf_counter()

    def write_all(batch):
        t = time.perf_counter()
        for path, stem, photo, results in batch:
            for r in results:
                write_outputs(r, out_dir, stem, flattener.model, photo, overwrite=True, mesh=mesh)
        return time.perf_counter() - t

    def process(pending):
        items = [(ph.image, f) for _, _, ph, faces in pending for f in faces]
        try:
            results = flattener.flatten_many(items)
        except ValueError:
            if len(pending) == 1:
                raise
            for one in pending:            # isolate the photo that failed
                try:
                    process([one])
                except ValueError as e:
                    rep.failures.append((str(one[0]), f"fit failed: {e}"))
            return
        batch, k = [], 0
        for path, stem, photo, faces in pending:
            batch.append((path, stem, photo, results[k:k + len(faces)]))
            k += len(faces)
            rep.faces += len(faces)
            rep.succeeded += 1
        for r in results:
            for name, v in r.seconds.items():
                rep.seconds[name] += v
        writes.append(writer.submit(write_all, batch))

    pending = []
    bar = tqdm(paths, desc="flatten", unit="photo", disable=not progress, dynamic_ncols=True)
    for path in bar:
        rep.photos += 1
        stem = path.stem
        stems[stem] += 1
        if stems[stem] > 1:
            stem = f"{stem}-{stems[stem]}"
        t0 = time.perf_counter()
        try:
            photo = read_photo(path)
        except PhotoError as e:
            rep.failures.append((str(path), f"unreadable: {e.problem}"))
            continue
        t1 = time.perf_counter()
        try:
            faces = flattener.detect(photo)
        except Exception as e:  # a detector failure on one photo must not stop the batch
            rep.failures.append((str(path), f"detector error: {e}"))
            continue
        rep.seconds["read"] += t1 - t0
        rep.seconds["detect"] += time.perf_counter() - t1
        usable = [f for f in faces if not f.tiny and f.points is not None]
        if not faces:
            rep.failures.append((str(path), "no face found"))
            continue
        if not usable:
            why = "tiny face" if any(f.tiny for f in faces) else "no landmarks"
            rep.failures.append((str(path), f"{why}: {len(faces)} face(s) found, none large enough to fit "
                                            f"(at least {flattener.detector.min_face:.0f} px)"))
            continue
        usable = usable[:max_faces] if max_faces else usable
        if not overwrite:
            clash = [out_dir / n for k in range(len(usable)) for n in output_names(stem, k).values()
                     if (out_dir / n).exists()]
            if clash:
                rep.failures.append((str(path), f"outputs exist: {clash[0].name} (use --overwrite)"))
                continue
        pending.append((path, stem, photo, usable))
        if len(pending) >= chunk:
            try:
                process(pending)
            except ValueError as e:
                rep.failures.append((str(pending[0][0]), f"fit failed: {e}"))
            pending = []
        bar.set_postfix(faces=rep.faces, failed=len(rep.failures))
    if pending:
        try:
            process(pending)
        except ValueError as e:
            rep.failures.append((str(pending[0][0]), f"fit failed: {e}"))
    for f in writes:
        rep.seconds["write"] += f.result()
    writer.shutdown()
    rep.wall = time.perf_counter() - t_start
    return rep


def flatten_largest(flattener: Flattener, image: np.ndarray) -> FaceResult:
    """The largest face of ``image`` (H, W, 3) float in [0, 1], flattened; ValueError if none."""
    faces = [f for f in flattener.detect(image) if not f.tiny and f.points is not None]
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
