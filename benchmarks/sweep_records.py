"""The localiser's cascade and turn sweep, face by face, on held-out data: record once, score rules offline.

    python benchmarks/sweep_records.py record renders OUT.pkl [--weights DIR]   # head renders, 8 sets
    python benchmarks/sweep_records.py record photos OUT.pkl [--weights DIR] [--photos 1::3,0,200]
    python benchmarks/sweep_records.py score OUT.pkl ... [--far 0.75,0.7] [--sure 0.018,0.02]

``record`` runs the shipped fitter (or the package-format weights folder ``--weights``, with its
refiner) and keeps, for every face, the cascade's result before the sweep (mirror gap, crop turn,
68 points), each of the sweep's tries, and the final result. The sets are those of
``benchmarks/localiser_roll.py`` (make the head renders first, as its docstring says), all of them:
the held-out people's upright head renders from the true square and from our detector, the same
blurred, shrunk, half hidden and darkened (from the square), their renders at any roll from the
square and from our detector; or their real LFW photos (``--photos START::STEP,LO,HI`` of the
held-out photos) from our detector's box, as taken and degraded. The file is a pickle this script
writes and reads (no one else's).

``score`` prints per set the bucket means of NME % by |yaw| and the faces wrong (above 20 %), or,
for real photos (all upright), the faces the sweep turned by more than 60 degrees; then the same
counts under other sweep rules replayed on the records: a bar for far turns (``sweep_far``),
other ``SWEEP_SURE`` values, and (``--near``) far turns held to a share of the near side's surest
agreed gap (:func:`replay`'s ``near``; docs/benchmarks.md, "Upright faces fitted upside down"). docs/training.md, "Harsh degradations", was measured with it.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT

sys.path.insert(0, str(ROOT / "src"))

from stn3dmm.photos.detect import turn_apart  # noqa: E402

WRONG = 20.0


def _rec(r) -> tuple:
    return float(r.mirror_gap), float(r.angle), np.asarray(r.points68, np.float32).copy()


class Recorder:
    """Wraps a fitter's sweep so that each face's cascade result, tries and final result are kept."""

    def __init__(self, fitter):
        self.fitter, self.tries, self.rows = fitter, [], []
        self._sweep, self._surest = fitter._sweep, fitter._surest_agreed
        fitter._sweep, fitter._surest_agreed = self.sweep, self.surest

    def surest(self, tries, first=None):
        self.tries.append([_rec(t) for t in tries])
        return self._surest(tries, first)

    def sweep(self, images, squares, angles, found, reframe=None):
        self.tries = []
        out = self._sweep(images, squares, angles, found, reframe)
        redo = [k for k, r in enumerate(found) if r.mirror_gap > self.fitter.sweep_gap]
        tries = dict(zip(redo, self.tries))
        self.rows += [(_rec(f), tries.get(k), _rec(o)) for k, (f, o) in enumerate(zip(found, out))]
        return out

    def run(self, images, squares=None, faces=None) -> list:
        self.rows = []
        for lo in range(0, len(images), 32):
            if faces is not None:
                self.fitter.from_faces(images[lo:lo + 32], faces[lo:lo + 32])
            else:
                self.fitter.from_squares(images[lo:lo + 32], squares[lo:lo + 32])
        return self.rows


def record_renders(rec: Recorder, root: Path) -> dict:
    from large_pose import SyntheticSet
    from localiser_roll import DEGRADED, degrade, detected_faces

    from stn3dmm.photos import read_photo
    from stn3dmm.photos.crop import landmark_square_of_box

    out = {}
    for folder in ("heads1_roll0_0", "heads1_roll-180_180"):
        data = SyntheticSet(root / folder)
        idx = np.arange(len(data))
        images = [read_photo(data.image_path(int(i))).image for i in idx]
        squares = [landmark_square_of_box(data.face_square(int(i)), "ibug68") for i in idx]
        out[f"{folder}/square"] = dict(recs=rec.run(images, squares=squares), truth=data.reannotated, yaw=data.abs_yaw)
        faces = detected_faces(rec.fitter, data, idx)
        keep = [k for k, f in enumerate(faces) if f is not None]
        out[f"{folder}/detect"] = dict(recs=rec.run([images[k] for k in keep], faces=[faces[k] for k in keep]),
                                       truth=data.reannotated[keep], yaw=data.abs_yaw[keep])
        if folder == "heads1_roll0_0":
            for how in DEGRADED[1:]:
                worse = [degrade(im, how, data.face_square(int(i))) for im, i in zip(images, idx)]
                out[f"{folder}/square/{how}"] = dict(recs=rec.run(worse, squares=squares), truth=data.reannotated,
                                                     yaw=data.abs_yaw)
        print(f"{folder}: recorded", flush=True)
    return out


def record_photos(rec: Recorder, lfw: Path, which: str) -> dict:
    from localiser_roll import DEGRADED, degrade

    from stn3dmm.photos import FaceDetector, detect_faces, read_photo
    from stn3dmm.training.data.fitted import held_out

    step, lo, hi = which.split(",")
    start, every = (int(v) for v in step.split("::"))
    people = sorted(p.name for p in lfw.iterdir() if p.is_dir())
    photos = [f for p, v in zip(people, held_out(people)) if v for f in sorted((lfw / p).glob("*.jpg"))]
    photos = photos[start::every][int(lo):int(hi)]
    detector, pairs = FaceDetector(landmarks=False), []
    for f in photos:
        image = read_photo(f).image
        found = [x for x in detect_faces(image, detector) if not x.tiny]
        pairs += [(image, found[0])] if found else []
    out = {}
    for how in DEGRADED:
        images = [degrade(image, how, face.bbox) for image, face in pairs]
        out[f"lfw/{how}"] = dict(recs=rec.run(images, faces=[face for _, face in pairs]), truth=None, yaw=None)
        print(f"lfw/{how}: {len(images)} photos recorded", flush=True)
    return out


def replay(first, tries, gap=0.02, sure=0.02, agree=20.0, far=None, near=None):
    """The record the sweep would keep under these settings: the fitter's own rule
    (:meth:`LocaliserFitter._surest_agreed`, with ``_sweep``'s gap trigger) run on the records.
    ``near`` (tried in the fifteenth session, not in the fitter): a try turning the face more than
    a quarter turn from the cascade's result must also have a gap below ``near`` times the best
    gap among the sure, agreed records within a quarter turn of it (the result included), where
    there are such; else the best of those is kept."""
    from types import SimpleNamespace

    from stn3dmm.fitting.localiser import LocaliserFitter

    if tries is None or not first[0] > gap:
        return first
    face = {id(r): SimpleNamespace(mirror_gap=r[0], angle=r[1], record=r) for r in (first, *tries)}
    rule = SimpleNamespace(sweep_sure=sure, sweep_agree=agree, sweep_far=far)
    best = LocaliserFitter._surest_agreed(rule, [face[id(t)] for t in tries], face[id(first)])
    best = first if best is None else best.record
    if near is None or best is first or turn_apart(best[1], first[1]) <= math.pi / 2:
        return best
    pool = [first] + [t for t in tries if turn_apart(t[1], first[1]) <= math.pi / 2]
    held = [r for r in pool if r[0] < sure and any(o is not r and o[0] < sure
                                                   and turn_apart(o[1], r[1]) <= math.radians(agree) for o in pool)]
    if held and not best[0] < near * min(r[0] for r in held):
        return min(held, key=lambda r: r[0])
    return best


def _nme(points: list, truth: np.ndarray) -> np.ndarray:
    """(n,) NME % of the protocol (:func:`stn3dmm.evaluation.protocol.nme`)."""
    import torch

    from stn3dmm.evaluation.protocol import nme

    t = torch.as_tensor(np.asarray(truth, np.float64))
    return nme(torch.as_tensor(np.stack(points), dtype=t.dtype), t, torch.ones(t.shape[:2], dtype=t.dtype)).numpy()


def _wrong(entry, kept) -> int:
    if entry["truth"] is None:     # real upright photos: wrong where the sweep turned the face
        return sum(turn_apart(k[1], f[1]) > math.radians(60) for k, (f, _, _) in zip(kept, entry["recs"]))
    return int((_nme([k[2] for k in kept], entry["truth"]) > WRONG).sum())


def score(files: list, fars: list, sures: list, nears: list = ()) -> None:
    sets = {}
    for f in files:
        with open(f, "rb") as fh:
            sets.update(pickle.load(fh))
    print(f"{'set':<36}{'faces':>7}{'swept':>7}  as recorded: NME bucket means (|yaw| 0-30 / 30-60 / 60+) = mean, wrong")
    for name, e in sets.items():
        final = [r[2] for r in e["recs"]]
        swept = sum(t is not None for _, t, _ in e["recs"])
        if e["truth"] is None:
            print(f"{name:<36}{len(final):>7}{swept:>7}  turned by the sweep: {_wrong(e, final)}")
            continue
        err = _nme([p[2] for p in final], e["truth"])
        b = [err[(e["yaw"] >= lo) & (e["yaw"] < hi)].mean() for lo, hi in ((0, 30), (30, 60), (60, 1e9))]
        print(f"{name:<36}{len(final):>7}{swept:>7}  {b[0]:.2f} / {b[1]:.2f} / {b[2]:.2f} = {np.mean(b):.2f}, "
              f"{_wrong(e, final)}")
    rules = [("sweep_far off", {})] + [(f"sweep_far {v}", {"far": v}) for v in fars]
    rules += [(f"sweep_sure {v}", {"sure": v}) for v in sures]
    from stn3dmm.fitting.localiser import SWEEP_FAR

    rules += [(f"near {v}", {"far": SWEEP_FAR, "near": v}) for v in nears]
    print(f"\nfaces wrong (renders) or turned (photos), the rules replayed\n{'rule':<20}"
          + "".join(f"{n.replace('heads1_', '')[-18:]:>19}" for n in sets))
    for title, kw in rules:
        cells = [_wrong(e, [replay(f, t, **kw) for f, t, _ in e["recs"]]) for e in sets.values()]
        print(f"{title:<20}" + "".join(f"{c:>19}" for c in cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["record", "score"])
    ap.add_argument("args", nargs="+", help="record: renders|photos OUT.pkl; score: record files")
    ap.add_argument("--weights", help="a package-format weights folder in place of the package's own")
    ap.add_argument("--out", default="/tmp/stn3dmm_large_pose", help="where large_pose.py wrote the head renders")
    ap.add_argument("--lfw", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--photos", default="1::3,0,200", help="START::STEP,LO,HI of the held-out LFW photos")
    ap.add_argument("--far", default="0.8,0.75,0.7,0.6,0.5", help="score: sweep_far values to replay")
    ap.add_argument("--sure", default="0.018,0.022", help="score: SWEEP_SURE values to replay")
    ap.add_argument("--near", default="", help="score: with sweep_far as shipped, far turns held to these shares "
                                               "of the near side's surest agreed gap (replay's near; e.g. 0.9,0.6,0)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.action == "score":
        score(a.args, [float(v) for v in a.far.split(",") if v], [float(v) for v in a.sure.split(",") if v],
              [float(v) for v in a.near.split(",") if v])
        return
    if len(a.args) != 2 or a.args[0] not in ("renders", "photos"):
        sys.exit("record needs: renders|photos OUT.pkl")
    import torch

    torch.set_num_threads(a.threads)
    if a.weights:
        import stn3dmm.nets.shipped as shipped

        shipped.WEIGHTS_DIR = Path(a.weights)
    from stn3dmm.fitting.localiser import load_localiser

    t0, rec = time.time(), Recorder(load_localiser())
    sets = record_renders(rec, Path(a.out)) if a.args[0] == "renders" else record_photos(rec, Path(a.lfw), a.photos)
    tmp = Path(a.args[1]).with_suffix(".part")
    with open(tmp, "wb") as fh:
        pickle.dump(sets, fh)
    tmp.replace(a.args[1])
    print(f"{a.args[1]}: {len(sets)} sets in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
