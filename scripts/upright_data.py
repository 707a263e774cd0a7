"""Crops for the up-direction network (:mod:`stn3dmm.nets.upright`), made from the fitted LFW photos.

    python scripts/upright_data.py --split train --out runs/upright/train.pt
    python scripts/upright_data.py --split val --views 1,2 --out runs/upright/val.pt

Each item is a crop of a face as :class:`~stn3dmm.training.data.fitted.FittedPhotos` makes them
(real crops and profiled renders of the photos' fits, yaw up to 90 degrees), turned by a roll
drawn uniformly from the whole circle, framed wider than the localiser's crop (``--context``),
and labelled with its up direction: the angle, in the crop, of the direction from the mouth to
the eyes of its 68 points (0: upright; positive: the top of the head turned clockwise). Split
``train`` holds the people the shipped localiser trained on, ``val`` the held-out people. Written
as one torch file of uint8 crops ``(N, 3, S, S)``, angles ``(N,)`` (radians) and |yaw| ``(N,)``;
the file is derived from LFW and stays out of the repository (``runs/`` is ignored).

    python scripts/upright_data.py --renders 1500 --out runs/upright/train_renders.pt

makes crops of synthetic renders instead (``stn3dmm synthetic``'s: the default model's faces, yaw up
to 90 degrees, textured with one photo each of 300 training people, over synthetic backgrounds,
two views of each of ``--renders`` identities, 224 px, kept in ``--render-dir``), each cropped
twice at a random turn: faces without hair, cut off above the brow, which the fitted photos'
renders do not show.

    python scripts/upright_data.py --boxes 1 --shard 0/2 --out runs/upright/train_boxes0.pt

makes crops framed as the fitter's first crop is framed instead (``LocaliserFitter.first_reading``):
each photo of the split turned ``--boxes`` times by a roll drawn from the whole circle, our face
detector run on it, and the crop cut from the square the fitter makes of the detector's box, turned
as the detector's eye keypoints have the face. A box frames a face less tightly than its 68 points,
and where the keypoints have the face upside down its square is shifted the wrong way; the network
trained on 68-point crops alone read 39 of 319 held-out such crops more than 120 degrees off as
upright (docs/training.md). ``--shard k/n`` makes the k-th of n interleaved parts, so that parts run side by side.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stn3dmm.photos.crop import landmark_turn  # noqa: E402


def render_crops(a) -> tuple[list, list, list]:
    """Crops of synthetic renders of the training people's textures (module docstring)."""
    import json
    import shutil

    from stn3dmm.model import load_model
    from stn3dmm.photos import read_photo
    from stn3dmm.photos.crop import crop_square, landmark_square
    from stn3dmm.training.data.fitted import held_out
    from stn3dmm.training.data.synthetic import SyntheticConfig
    from stn3dmm.training.data.synthetic_export import export_synthetic

    people = sorted(p for p in Path(a.photos).iterdir() if p.is_dir())
    tex = a.render_dir.parent / (a.render_dir.name + "_textures")
    tex.mkdir(parents=True, exist_ok=True)
    for person in [p for p, v in zip(people, held_out([p.name for p in people])) if not v][1::5][:300]:
        last = sorted(person.glob("*.jpg"))[-1]
        if not (tex / last.name).exists():
            shutil.copy(last, tex / last.name)
    cfg = SyntheticConfig(yaw_range=90.0, photo_fraction=1.0, textures=str(tex))
    export_synthetic(a.render_dir, load_model(), a.renders, views=2, size=224, seed=21, landmark_set="ibug68",
                     config=cfg)
    rng = np.random.default_rng(a.seed)
    images, angles, yaws = [], [], []
    for png in sorted(a.render_dir.glob("*.png")):
        meta = json.loads(png.with_suffix(".json").read_text())
        pts, image = np.asarray(meta["landmarks"], np.float64), read_photo(png).image
        centre, side = landmark_square(pts, "ibug68")
        for _ in range(2):
            c = centre + rng.uniform(-0.06, 0.06, 2) * side
            s = a.context * side * math.exp(rng.uniform(-0.12, 0.12))
            crop, tr = crop_square(image, c, s, a.size, angle=float(rng.uniform(-math.pi, math.pi)))
            images.append(torch.from_numpy(np.ascontiguousarray(crop * 255 + 0.5).astype(np.uint8)).permute(2, 0, 1))
            angles.append(landmark_turn(tr.apply(pts)))
            yaws.append(abs(float(meta["pose"][0])))
    return images, angles, yaws


def turned_photo(image: np.ndarray, points: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo turned by ``degrees`` (counter-clockwise as seen, canvas grown to hold it, black
    outside) and its points turned with it."""
    from PIL import Image

    h, w = image.shape[:2]
    im = Image.fromarray(image).rotate(degrees, resample=Image.Resampling.BILINEAR, expand=True)
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])    # y down: counter-clockwise
    centre_in, centre_out = np.array([(w - 1) / 2, (h - 1) / 2]), np.array([(im.width - 1) / 2, (im.height - 1) / 2])
    return np.asarray(im), (points - centre_in) @ rot.T + centre_out


def box_crops(a) -> tuple[list, list, list]:
    """Crops framed from our detector's boxes of turned photos, as the fitter's first crop is framed
    (module docstring); a photo where the detector finds no face on its 68 points gives none."""
    from tqdm import tqdm

    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.model import load_model
    from stn3dmm.nets.upright import CONTEXT, SIZE
    from stn3dmm.photos import FaceDetector
    from stn3dmm.photos.crop import crop_square
    from stn3dmm.photos.detect import box_iou
    from stn3dmm.stn.pose import pose_from_theta
    from stn3dmm.training.data.fitted import FittedPhotos

    try:
        k, n = (int(v) for v in a.shard.split("/"))
    except ValueError:
        sys.exit(f"--shard must be k/n (e.g. 0/2), got {a.shard!r}")
    if not 0 <= k < n:
        sys.exit(f"--shard k/n needs 0 <= k < n, got {a.shard!r}")
    model = load_model()
    ds = FittedPhotos(a.fits, model, a.size, photos=a.photos, split=a.split, real_views=1, profiled_views=0,
                      grid_step=0, tiles=0, progress=False)
    fitter, detector = load_localiser(model=model), FaceDetector(landmarks=False)
    images, angles, yaws = [], [], []
    for j in tqdm(range(k, len(ds.fits), n), desc=f"boxes {k}/{n}", unit="photo"):
        rng = np.random.default_rng([a.seed, 7, j])
        yaw = abs(float(pose_from_theta(torch.as_tensor(ds.fits[j].theta[None]))[0, 0]))
        for _ in range(a.boxes):
            photo, pts = turned_photo(ds.images[j], ds.points[j][:68], float(rng.uniform(-180, 180)))
            truth = np.concatenate([pts.min(0), pts.max(0)])
            face = max(detector(photo), key=lambda f: box_iou(f.bbox, truth), default=None)
            if face is None or box_iou(face.bbox, truth) < 0.2:
                continue
            turn = face.upright_turn(fitter.turns, fitter.turn_within)
            centre, side = fitter.box_square(face.bbox, turn)
            crop, tr = crop_square(photo, centre, side * CONTEXT, SIZE, angle=turn)
            images.append(torch.from_numpy(np.ascontiguousarray(crop * 255 + 0.5).astype(np.uint8)).permute(2, 0, 1))
            angles.append(landmark_turn(tr.apply(pts)))
            yaws.append(yaw)
    return images, angles, yaws


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", choices=("train", "val"), default="train")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--views", default="2,3", help="real,profiled views per photo (default 2,3)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--context", type=float, default=1.5)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--fits", default=str(ROOT / "data/lfw_flat"))
    p.add_argument("--photos", default=str(ROOT.parent / "shared/data/lfw"))
    p.add_argument("--renders", type=int, default=0, help="synthetic renders of this many identities instead")
    p.add_argument("--render-dir", type=Path, default=ROOT / "runs/upright/renders")
    p.add_argument("--boxes", type=int, default=0, help="crops framed from the detector's boxes instead: this many "
                                                        "turned copies of each photo")
    p.add_argument("--shard", default="0/1", help="with --boxes: the k-th of n interleaved parts (k/n)")
    a = p.parse_args(argv)
    from tqdm import tqdm

    from stn3dmm.model import load_model
    from stn3dmm.training.data.fitted import FittedPhotos

    torch.set_num_threads(1 if a.boxes else 2)     # box parts run side by side
    t0 = time.time()
    if a.renders:
        return write(a, *render_crops(a), t0)
    if a.boxes:
        return write(a, *box_crops(a), t0)
    real, profiled = (int(v) for v in a.views.split(","))
    ds = FittedPhotos(a.fits, load_model(), a.size, photos=a.photos, split=a.split, real_views=real,
                      profiled_views=profiled, head_share=0.67, roll_range=180.0, context=a.context, degrade=0.2,
                      seed=a.seed, grid_step=0)
    images, angles, yaws = [], [], []
    for lo in tqdm(range(0, len(ds), 256), desc="crops", unit="batch"):
        for it in ds.__getitems__(list(range(lo, min(lo + 256, len(ds))))):
            images.append((it["image"] * 255 + 0.5).clamp(0, 255).to(torch.uint8))
            angles.append(landmark_turn(it["landmarks"].numpy()))
            yaws.append(abs(float(it["pose"][0])) if torch.isfinite(it["pose"][0]) else float("nan"))
    return write(a, images, angles, yaws, t0)


def write(a, images: list, angles: list, yaws: list, t0: float) -> int:
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".part")
    torch.save({"images": torch.stack(images), "angles": torch.tensor(angles, dtype=torch.float32),
                "abs_yaw": torch.tensor(yaws, dtype=torch.float32), "split": a.split, "seed": a.seed,
                "context": a.context}, tmp)
    tmp.replace(a.out)
    what = "renders" if a.renders else f"{a.split} boxes" if a.boxes else a.split
    print(f"{len(images)} crops of {what} in {time.time() - t0:.0f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
