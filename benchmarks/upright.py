"""The detector's upright check, on tuning sets: are each face's eye keypoints the right way up?

BlazeFace finds a face turned upside down but places its eyes where the mouth is, and the face
mesh then fits the face upside down. ``FaceDetector(upright=True)`` looks at each face's crop
turned by 180 degrees too (``FaceDetector._upright``). This prints, with the check off and on,
how many faces have keypoints more than 45 degrees off the truth, on:

- LFW photos (one per person, every 10th person) turned by r + U(-30, 30) degrees, r = 0, 90,
  180, 270: the truth is the photo's own eye line (from the landmark fit's flatten tree, or
  level), turned by the same angle;
- the held-out head renders of ``benchmarks/large_pose.py --set heads`` (profiles, where both
  crops score low), as they are and each turned by its own angle in U(-180, 180) (its
  ``--roll=-180,180``): the truth is the 68 landmarks' outer eye corners.

    python benchmarks/upright.py [--photos 100] [--out /tmp/stn3dmm_large_pose]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

import numpy as np

from _common import ROOT

sys.path.insert(0, str(ROOT / "src"))


def eye_angle(kp: np.ndarray) -> float:
    """Degrees of the line from the subject's right eye keypoint to the left one (y down)."""
    d = kp[1] - kp[0]
    return math.degrees(math.atan2(d[1], d[0]))


def off(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def turned_lfw(lfw: Path, n: int, turn: float, seed: int = 0):
    """``n`` LFW photos (every 10th person's first) turned by ``turn`` + U(-30, 30) degrees
    counter-clockwise, with the eye line's true angle (y down: a turn of t gives -t)."""
    from PIL import Image

    rng = random.Random(seed)
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[::10][:n]
    for person in people:
        photo = sorted(person.glob("*.jpg"))[0]
        t = turn + rng.uniform(-30.0, 30.0)
        img = Image.open(photo).convert("RGB").rotate(t, resample=Image.Resampling.BILINEAR, expand=True)
        yield np.asarray(img), -t


def _eye_line(lm: np.ndarray) -> float:
    return eye_angle(lm[[36, 45]])


def heads(folder: Path, truth=_eye_line):
    """(image uint8, ``truth`` of its 68 true points: by default the eye line's angle) per render."""
    import json

    from PIL import Image

    for png in sorted(folder.glob("head*.png")):
        lm = np.array(json.loads(png.with_suffix(".json").read_text())["landmarks"])
        yield np.asarray(Image.open(png).convert("RGB")), truth(lm)


def count(items, detectors) -> list:
    """[faces, wrong with detector 0, wrong with detector 1, ...]: largest face only."""
    row = [0] + [0] * len(detectors)
    for img, truth in items:
        found = [d.detect_boxes(img) for d in detectors]
        if not all(found):
            continue
        row[0] += 1
        for k, boxes in enumerate(found):
            row[k + 1] += off(eye_angle(boxes[0][2]), truth) > 45.0
    return row


def arguments(doc: str):
    """The tuning sets' options (--photos, --lfw, --out), LFW checked to be there."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--photos", type=int, default=100)
    ap.add_argument("--lfw", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--out", default="/tmp/stn3dmm_large_pose",
                    help="where benchmarks/large_pose.py --set heads --views 1 [--roll=-180,180] left its renders")
    args = ap.parse_args()
    if not Path(args.lfw).is_dir():
        sys.exit(f"{args.lfw}: LFW not found; pass --lfw")
    return args


def head_sets(out: str, truth=_eye_line):
    """(title, items) of the held-out head renders, upright and rolled, that have been made
    (:func:`heads`)."""
    for name, title in (("heads1", "held-out head renders"), ("heads1_roll-180_180", "... turned U(-180, 180)")):
        folder = Path(out) / name
        if (folder / "done").exists():
            yield title, heads(folder, truth)
        else:
            print(f"{folder}: no head renders (python benchmarks/large_pose.py --set heads --views 1 [--roll=-180,180] "
                  "makes them)")


def main():
    args = arguments(__doc__)
    lfw = Path(args.lfw)
    from stn3dmm.photos import FaceDetector

    dets = [FaceDetector(tiles=0, landmarks=False, upright=u) for u in (False, True)]
    rows = [(f"LFW turned {r} +- 30", count(turned_lfw(lfw, args.photos, r), dets)) for r in (0, 90, 180, 270)]
    rows += [(title, count(items, dets)) for title, items in head_sets(args.out)]
    print(f"\n{'set':<24}{'faces':>7}{'wrong, no check':>17}{'wrong, checked':>16}")
    for name, (n, a, b) in rows:
        print(f"{name:<24}{n:>7}{a:>17}{b:>16}")


if __name__ == "__main__":
    main()
