"""How the detector's upright vote was chosen: rules for weak detections, replayed on saved looks.

A weak detection (score below ``UPRIGHT_SCORE``) has its eye line put to a vote over eight turns
of its crop (``photos.detect.upright_vote``). This looks once at every face of the upright
check's tuning sets (``benchmarks/upright.py``: LFW photos turned by 0, 90, 180, 270 +- 30
degrees, a second draw of 90 and 180, and the held-out head renders upright and turned by
U(-180, 180)), keeps the eight looks of each weak detection, and replays each rule on them:
the quarter-turn check the vote replaced, and the vote with other weights, agreement, margin and
need. Printed: per set, the faces whose eye line ends more than 45 degrees off the truth
(confident detections are checked as the detector does, the same in every row).

    python benchmarks/upright_vote.py [--photos 100] [--out /tmp/stn3dmm_large_pose]
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from _common import ROOT
from upright import arguments, eye_angle, head_sets, off, turned_lfw

sys.path.insert(0, str(ROOT / "src"))

RULES = {"the vote (kept)": {}, "plain scores, no need": {"power": 1.0, "need": 0.0},
         "plain scores": {"power": 1.0}, "scores squared": {"power": 2.0},
         "no look of 0.8 needed": {"need": 0.0}, "needing 0.75": {"need": 0.75},
         "agreeing within 30 degrees": {"agree": math.radians(30.0)}, "margin 0.2": {"margin": 0.2}}


def quarter_turns(score, kp, looks):
    """The check before the vote: the best of the crop's four quarter turns, where it scores 0.8
    or more and beats every look pointing more than 45 degrees another way by 0.1."""
    from stn3dmm.photos.detect import UPRIGHT_MARGIN, UPRIGHT_SCORE, _eye_angle, _turn

    seen = [looks[k] for k in (0, 2, 4, 6)]
    best, top = max(seen, key=lambda s: s[0])
    if best < UPRIGHT_SCORE:
        return kp
    up = _eye_angle(top)
    rivals = [s for s, k in seen if k is not None and _turn(_eye_angle(k), up) > math.pi / 4]
    if any(best < s + UPRIGHT_MARGIN for s in rivals) or _turn(up, _eye_angle(kp)) <= math.pi / 4:
        return kp
    return top


def saved_looks(items, det, raw):
    """[(truth, keypoints if confident, else (score, keypoints, eight looks))] of each item's face 0."""
    from stn3dmm.photos.detect import UPRIGHT_SCORE, _has_eyes

    out = []
    for img, truth in items:
        found = raw.detect_boxes(img)
        if not found or not _has_eyes(found[0][2]):
            continue
        box, score, kp = found[0]
        out.append((truth, det._upright(img, box, score, kp)[2] if score >= UPRIGHT_SCORE else
                    (score, kp, det.upright_looks(img, box, kp))))
    return out


def wrong(saved, rule) -> int:
    return sum(off(eye_angle(s if not isinstance(s, tuple) else rule(*s)), truth) > 45.0 for truth, s in saved)


def main():
    args = arguments(__doc__)
    lfw = Path(args.lfw)
    from stn3dmm.photos import FaceDetector
    from stn3dmm.photos.detect import upright_vote

    det, raw = (FaceDetector(tiles=0, landmarks=False, upright=u) for u in (True, False))
    sets = {f"LFW {r}": turned_lfw(lfw, args.photos, r) for r in (0, 90, 180, 270)}
    sets.update({f"LFW {r}'": turned_lfw(lfw, args.photos, r, seed=1) for r in (90, 180)})
    sets.update((("heads" if t.startswith("held") else "rolled"), items) for t, items in head_sets(args.out))
    saved = {name: saved_looks(items, det, raw) for name, items in sets.items()}
    rules = {"weak ones unchecked": lambda s, kp, looks: kp, "the quarter turns (before)": quarter_turns}
    rules.update({k: (lambda s, kp, looks, kw=kw: upright_vote(s, kp, looks, **kw)) for k, kw in RULES.items()})
    print(f"\n{'eye line off by > 45 degrees':<30}" + "".join(f"{n:>11}" for n in saved))
    print(f"{'faces (weak)':<30}" + "".join(f"{f'{len(v)} ({sum(isinstance(s, tuple) for _, s in v)})':>11}"
                                            for v in saved.values()))
    for title, rule in rules.items():
        print(f"{title:<30}" + "".join(f"{wrong(v, rule):>11}" for v in saved.values()))


if __name__ == "__main__":
    main()
