"""Face detectors at every pose: recall and speed of mediapipe's (ours) against dlib's, in one run.

Two sets, neither of them a test set: the synthetic large-pose renders of real LFW textures of
``benchmarks/large_pose.py`` (|yaw| up to 90 degrees, exact face boxes), and LFW photos (one
per person, near-frontal; every photo holds a face at its centre). A face counts as found when
a detected box contains the true face centre and overlaps the true face square by IoU >= 0.3
(renders), or contains the photo's centre (LFW). Peers: dlib's CNN face detector (MMOD, the
model file inside the ``face_recognition_models`` package) and dlib's HOG frontal detector.

    python benchmarks/detect_recall.py [--lfw-photos 300] [--out /tmp/stn3dmm_large_pose]

dlib (dlib-bin, face_recognition_models) is a dependency of stn3dmm since its detector takes a second
look with it (``photos/mmod.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT

sys.path.insert(0, str(ROOT / "src"))


def dlib_detectors() -> dict:
    """dlib's CNN (MMOD) and HOG detectors as box functions, or {} when dlib is missing."""
    try:
        import dlib
    except ImportError:
        print("dlib not installed (a dependency of stn3dmm): pip install -e . to compare with it")
        return {}
    from stn3dmm.photos.mmod import mmod_model_path

    cnn = dlib.cnn_face_detection_model_v1(str(mmod_model_path()))      # raw boxes: dlib's own framing
    hog = dlib.get_frontal_face_detector()

    def boxes(rects):
        return [np.array([r.left(), r.top(), r.right(), r.bottom()], dtype=float) for r in rects]

    return {"dlib CNN (MMOD)": lambda img: boxes([d.rect for d in cnn(img, 0)]),
            "dlib HOG": lambda img: boxes(hog(img, 0))}


def mediapipe_detector():
    from stn3dmm.photos import FaceDetector

    det = FaceDetector(landmarks=False)
    return lambda img: [f.bbox for f in det(img)]


def _iou(a, b) -> float:
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = np.prod(np.clip(hi - lo, 0, None))
    return float(inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter))


def _hit(boxes, square) -> bool:
    c = (square[:2] + square[2:]) / 2
    return any(b[0] <= c[0] <= b[2] and b[1] <= c[1] <= b[3] and _iou(b, square) >= 0.3 for b in boxes)


def _centre_hit(boxes, image) -> bool:
    c = np.array(image.shape[1::-1]) / 2
    return any(b[0] <= c[0] <= b[2] and b[1] <= c[1] <= b[3] for b in boxes)


def run(detect, images, hit, buckets) -> tuple[dict, float]:
    """Found and total per bucket (``hit(boxes, k)`` says whether image k's face was found), and ms
    per image."""
    hits = {k: [0, 0] for k in dict.fromkeys(buckets)}
    t0 = time.perf_counter()
    for k, (img, b) in enumerate(zip(images, buckets)):
        hits[b][0] += hit(detect(img), k)
        hits[b][1] += 1
    return hits, 1000 * (time.perf_counter() - t0) / len(images)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/stn3dmm_large_pose")
    ap.add_argument("--lfw", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--lfw-photos", type=int, default=300)
    args = ap.parse_args()
    import large_pose
    from PIL import Image

    from stn3dmm.model import load_model

    renders = large_pose.render_set(Path(args.out), load_model(), 100, 3, Path(args.lfw))
    r_img = [np.asarray(Image.open(renders.image_path(i)).convert("RGB")) for i in range(len(renders))]
    r_sq = [renders.face_square(i) for i in range(len(renders))]
    r_b = [("render |yaw| 0-30", "render |yaw| 30-60", "render |yaw| 60-90")[min(2, int(y // 30))]
           for y in renders.abs_yaw]
    people = sorted(p for p in Path(args.lfw).iterdir() if p.is_dir())
    step = max(1, len(people) // args.lfw_photos)
    lfw = [sorted(p.glob("*.jpg"))[0] for p in people[::step][:args.lfw_photos]]
    l_img = [np.asarray(Image.open(f).convert("RGB")) for f in lfw]
    detectors = {"mediapipe (stn3dmm)": mediapipe_detector(), **dlib_detectors()}
    cols = ["render |yaw| 0-30", "render |yaw| 30-60", "render |yaw| 60-90", "LFW"]
    print(f"{len(r_img)} renders (224 px), {len(l_img)} LFW photos (250 px); found / total, ms per image")
    print("detector".ljust(22) + "".join(c.rjust(22) for c in cols) + "ms/render".rjust(12) + "ms/LFW".rjust(10))
    for name, det in detectors.items():
        h1, ms1 = run(det, r_img, lambda boxes, k: _hit(boxes, r_sq[k]), r_b)
        h2, ms2 = run(det, l_img, lambda boxes, k: _centre_hit(boxes, l_img[k]), ["LFW"] * len(l_img))
        hits = {**h1, **h2}
        print(name.ljust(22) + "".join(f"{hits[c][0]}/{hits[c][1]} ({100 * hits[c][0] / max(1, hits[c][1]):.0f}%)"
                                       .rjust(22) for c in cols) + f"{ms1:12.1f}{ms2:10.1f}")


if __name__ == "__main__":
    main()
