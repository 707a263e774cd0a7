"""The main face beside a background face: does the detector put the photo's own face first?

A tuning set for the detector's choice of main face (AFLW2000-3D is a test set). Each of the
held-out head renders of ``benchmarks/large_pose.py --set heads`` (LFW people never trained on,
turned to |yaw| up to 90 degrees, 224 px, with their exact 68 points) is set in the middle of a
448-pixel photo: the top-left corner of another LFW photo, enlarged and blurred,
around it, and in the margin a third
LFW photo's face (its central 130 pixels, scaled to make its face 0.4-0.75 as wide as the main face), sharp,
as a bystander. Both are pasted with feathered edges. The main face counts as first when the
detector's face 0 contains the true face's centre and overlaps its square by IoU >= 0.3, as
``benchmarks/detect_recall.py`` counts (its ``_hit``) a render's face found; "any" when some face does. A
second set, "off-centre", holds each head render alone, moved off the middle: a detector that
searches harder where nothing covers the photo's centre must not put a false face first there.

    python benchmarks/main_face.py [--settings default,no-dlib,no-rescue] [--out /tmp/stn3dmm_large_pose]
    python benchmarks/main_face.py --calibrate-dlib     # dlib's box against BlazeFace's (photos.mmod)

The set is written once to ``OUT/main_face`` (needs the head renders, ``OUT/heads1``, which
``python benchmarks/large_pose.py --set heads --views 1`` makes).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT
from detect_recall import _hit

sys.path.insert(0, str(ROOT / "src"))

SIDE = 448
#: Median width of the detector's box on a near-frontal head render (224 px), and on an LFW photo's
#: central 130 pixels as a share of them (107 px of the 250-pixel photo), both measured here.
HEAD_FACE, LFW_FACE = 92.0, 107.0 / 130.0
#: The bystander's face, as a share of the main face's width: clearly smaller, as in a photo of a person.
BYSTANDER = (0.4, 0.75)
BUCKETS = ("0-30", "30-60", "60-90")
#: The detector settings compared: FaceDetector's keyword arguments.
SETTINGS = {"default": {}, "no-dlib": {"last_resort": False},
            "no-rescue": {"rescue": False, "last_resort": False}}


def _feathered(img: np.ndarray, margin: int) -> np.ndarray:
    """(H, W) alpha: 1 inside, falling linearly to 0 over ``margin`` pixels at the edges."""
    h, w = img.shape[:2]
    ry = np.minimum(np.arange(h), np.arange(h)[::-1]) / margin
    rx = np.minimum(np.arange(w), np.arange(w)[::-1]) / margin
    return np.clip(np.minimum(ry[:, None], rx[None, :]), 0.0, 1.0)


def _paste(canvas: np.ndarray, img: np.ndarray, x: int, y: int, margin: int) -> None:
    a = _feathered(img, margin)[..., None]
    h, w = img.shape[:2]
    region = canvas[y:y + h, x:x + w]
    canvas[y:y + h, x:x + w] = a * img + (1 - a) * region


def _bystander_place(rng: random.Random, size: int) -> tuple[int, int]:
    """Top-left corner of a bystander of ``size`` pixels, centred in the margin around the render."""
    band = (SIDE - 224) // 2
    lo, hi = band // 2, SIDE - band // 2
    side = rng.choice("lrtb")
    c = (rng.uniform(lo, hi), rng.choice((lo, hi)))
    c = np.clip(c if side in "tb" else c[::-1], size / 2, SIDE - size / 2)
    return int(c[0] - size / 2), int(c[1] - size / 2)


def make_set(heads: Path, lfw: Path, out: Path, kind: str, seed: int = 0) -> Path:
    """Write the composites (PNG) and their face squares (JSON) to ``out`` once. ``kind``:
    "bystander" (the head render in the middle, a smaller LFW face in the margin) or "off-centre"
    (the head render alone, moved 80-112 pixels off the middle along x, y or both)."""
    from PIL import Image, ImageFilter

    if (out / "done").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    photos = [min(p.glob("*.jpg")) for p in sorted(q for q in lfw.iterdir() if q.is_dir())]
    photos = [p for k, p in enumerate(photos) if k % 10]         # the heads are every 10th person's
    for png in sorted(heads.glob("head*.png")):
        meta = json.loads(png.with_suffix(".json").read_text())
        back = Image.open(rng.choice(photos)).convert("RGB").crop((0, 0, 64, 64))     # a corner: no face
        back = back.resize((SIDE, SIDE), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(4))
        canvas = np.asarray(back, np.float64).copy()
        off = np.full(2, (SIDE - 224) // 2)
        if kind == "off-centre":
            off += [rng.choice((-1, 1)) * rng.randint(80, 112) if a else 0 for a in rng.choice(((1, 0), (0, 1), (1, 1)))]
        _paste(canvas, np.asarray(Image.open(png).convert("RGB"), np.float64), *off, 16)
        if kind == "bystander":
            size = round(HEAD_FACE * rng.uniform(*BYSTANDER) / LFW_FACE)
            face = Image.open(rng.choice(photos)).convert("RGB").crop((60, 60, 190, 190)).resize((size, size))
            _paste(canvas, np.asarray(face, np.float64), *_bystander_place(rng, size), 8)
        Image.fromarray((canvas + 0.5).astype(np.uint8)).save(out / png.name)
        pts = np.asarray(meta["landmarks"], np.float64) + off
        lo, hi = pts.min(0), pts.max(0)
        c, half = (lo + hi) / 2, (hi - lo).max() / 2
        (out / png.with_suffix(".json").name).write_text(json.dumps(
            {"square": np.concatenate([c - half, c + half]).tolist(), "abs_yaw": abs(meta["pose"][0])}))
    (out / "done").write_text("")
    return out


def score(folder: Path, detector) -> tuple[dict, float]:
    """Per |yaw| bucket: [main face first, main face anywhere, total]; and ms per photo."""
    from PIL import Image

    rows = {b: [0, 0, 0] for b in BUCKETS}
    spent = 0.0
    pngs = sorted(folder.glob("head*.png"))
    for png in pngs:
        meta = json.loads(png.with_suffix(".json").read_text())
        img = np.asarray(Image.open(png).convert("RGB"))
        t0 = time.perf_counter()
        boxes = [b for b, _, _ in detector.detect_boxes(img)]
        spent += time.perf_counter() - t0
        sq = np.asarray(meta["square"])
        row = rows[BUCKETS[min(2, int(meta["abs_yaw"] // 30))]]
        row[0] += _hit(boxes[:1], sq)
        row[1] += _hit(boxes, sq)
        row[2] += 1
    return rows, 1000 * spent / max(1, len(pngs))


def _framing(ours: np.ndarray, theirs: np.ndarray) -> list:
    """[k, fx, fy] that map dlib's box ``theirs`` onto BlazeFace's ``ours`` (photos.mmod.to_blazeface_box)."""
    d = float(max(theirs[2:] - theirs[:2]))
    return [float(max(ours[2:] - ours[:2])) / d, *(((ours[:2] + ours[2:]) - (theirs[:2] + theirs[2:])) / (2 * d))]


def calibrate(folder: Path, lfw: Path, every: int = 3, people: int = 60) -> None:
    """Median framing of dlib's boxes against BlazeFace's on the faces both find: every
    ``every``-th off-centre composite (|yaw| 0-90, faces about 90 px) and the first photo of
    ``people`` LFW people (training data, near-frontal) enlarged 1, 2 and 3 times (faces 95-300 px);
    ``photos.mmod.MMOD_TO_BLAZEFACE`` is the median of both."""
    from PIL import Image

    from stn3dmm.photos import FaceDetector
    from stn3dmm.photos.mmod import MmodDetector

    det, dlib_det = FaceDetector(landmarks=False, last_resort=False), MmodDetector()
    rows = {"renders": [], "LFW": []}
    for png in sorted(folder.glob("head*.png"))[::every]:
        sq = np.asarray(json.loads(png.with_suffix(".json").read_text())["square"])
        img = np.asarray(Image.open(png).convert("RGB"))
        ours = [b for b, _, _ in det.detect_boxes(img) if _hit([b], sq)]
        theirs = [b for b, _, _ in dlib_det(img, framing=(1.0, 0.0, 0.0)) if _hit([b], sq)]
        if ours and theirs:
            rows["renders"].append(_framing(ours[0], theirs[0]))
    dirs = sorted(p for p in lfw.iterdir() if p.is_dir())
    for person in dirs[::max(1, len(dirs) // people)][:people]:
        photo = Image.open(min(person.glob("*.jpg"))).convert("RGB")
        for scale in (1, 2, 3):
            img = np.asarray(photo.resize((photo.width * scale, photo.height * scale), Image.Resampling.BICUBIC))
            sq = np.r_[0.3 * np.array(img.shape[1::-1]), 0.7 * np.array(img.shape[1::-1])]   # the middle
            ours = [b for b, _, _ in det.detect_boxes(img) if _hit([b], sq)]
            theirs = [b for b, _, _ in dlib_det(img, framing=(1.0, 0.0, 0.0)) if _hit([b], sq)]
            if ours and theirs:
                rows["LFW"].append(_framing(ours[0], theirs[0]))
    for name, r in [*rows.items(), ("both", rows["renders"] + rows["LFW"])]:
        k, fx, fy = np.median(np.array(r), axis=0)
        print(f"{name}: {len(r)} faces both found, framing ({k:.2f}, {fx:.2f}, {fy:.2f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/stn3dmm_large_pose")
    ap.add_argument("--lfw", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--settings", default="default,no-dlib", help=f"detector settings to compare, of {list(SETTINGS)}")
    ap.add_argument("--calibrate-dlib", action="store_true",
                    help="print how dlib's boxes frame the faces both detectors find, as BlazeFace's do")
    args = ap.parse_args()
    heads = Path(args.out) / "heads1"
    if not (heads / "done").exists():
        sys.exit(f"{heads}: no head renders; make them with python benchmarks/large_pose.py --set heads --views 1")
    from stn3dmm.photos import FaceDetector

    if args.calibrate_dlib:
        return calibrate(make_set(heads, Path(args.lfw), Path(args.out) / "main_face_off-centre", "off-centre"),
                         Path(args.lfw))
    for kind in ("bystander", "off-centre"):
        folder = make_set(heads, Path(args.lfw), Path(args.out) / f"main_face_{kind}", kind)
        print(f"\n{kind}: {len(list(folder.glob('head*.png')))} composites ({SIDE} px); "
              "main face first / found at all / total")
        print("setting".ljust(10) + "".join(f"|yaw| {b}".rjust(24) for b in BUCKETS) + "ms/photo".rjust(10))
        for setting in args.settings.split(","):
            rows, ms = score(folder, FaceDetector(landmarks=False, **SETTINGS[setting]))
            print(setting.ljust(10) + "".join(f"{a}/{t} ({b} any)".rjust(24) for a, b, t in rows.values())
                  + f"{ms:10.1f}")

if __name__ == "__main__":
    main()
