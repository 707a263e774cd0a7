"""The localiser's cascade at any roll: derolling and the turn sweep, chosen on held-out head renders.

The shipped localiser learned faces rolled within a few tens of degrees. A face lying on its side
or upside down in a photo is beyond that. Two parts of :class:`~stn3dmm.fitting.localiser.LocaliserFitter`
deal with it, and this benchmark sets them:

- ``deroll``: each pass after the first crops the face turned by the roll the pass before
  predicted (off: the first crop's turn throughout, as up to the eighth session);
- ``sweep`` turns where the final mirror gap is above ``sweep_gap``, the surest taken where its
  gap is below ``sweep_sure`` and another try as sure ends within ``sweep_agree`` degrees of it,
  each turned try taking ``sweep_passes`` passes; ``redetect``: from a
  detector's box, the tries at quarter turns start from the detector's box in the photo so turned.

The data are the held-out LFW people (never trained on). First their head renders of
``benchmarks/large_pose.py --set heads``, as they are (rolled within 25 degrees) and each turned
by its own angle ~ U(-180, 180). Every face is localised from its true 68 points' square, as
``stn3dmm evaluate`` does from a benchmark box, and (``--start detect``) from our detector's box
of it, as ``stn3dmm flatten --method localiser`` does (faces it misses: from the true square, and
counted). The table gives the NME (% of the box's
sqrt(w h)) by added roll and by |yaw|, the share of faces fitted wrongly (NME above 20 %), the
share swept and the time per face, against the cascade without either (the baseline). Then
their real photos, upright, from our detector's box, as they are and blurred, shrunk, half
hidden and darkened: the network is unsure of those at every turn, so they count the faces the
sweep turns by more than 60 degrees, every one of them wrongly. In one run:

    python benchmarks/large_pose.py --set heads --views 1 --variants "" --roll=-180,180   # makes the sets
    python benchmarks/localiser_roll.py [--gaps 0.015,0.02] [--sures 0.01,0.012,1] [--turns 8]
        [--agrees none,20] [--sweep-passes 2,3] [--redetect 0,1] [--start square,detect] [--every 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from _common import ROOT

sys.path.insert(0, str(ROOT / "src"))

ROLL_BINS = ((0, 30), (30, 60), (60, 120), (120, 181))
YAW_BINS = ((0, 30), (30, 60), (60, 91))


def detected_faces(fitter, data, idx) -> list:
    """Our detector's main face of each image ``idx`` of ``data``, or None where it finds none
    holding the true box's centre: ``stn3dmm evaluate``'s own rule (``LocaliserMethod`` from our detector)."""
    from stn3dmm.evaluation.methods import LocaliserMethod
    from stn3dmm.photos import read_photo

    method = LocaliserMethod(fitter, "detect")
    return [method._detected_face(read_photo(data.image_path(int(i))).image, data.face_square(int(i))) for i in idx]


def localise_all(fitter, data, idx, faces=None, batch: int = 32) -> tuple[np.ndarray, float]:
    """(n, 68, 2) points for the faces ``idx`` of ``data`` from their true squares (or from the
    detected ``faces`` where not None), and the seconds taken."""
    from stn3dmm.photos import read_photo
    from stn3dmm.photos.crop import landmark_square_of_box

    faces = [None] * len(idx) if faces is None else faces
    out, spent = [], 0.0
    for lo in range(0, len(idx), batch):
        part, found_part = idx[lo:lo + batch], faces[lo:lo + batch]
        images = [read_photo(data.image_path(int(i))).image for i in part]
        squares = [landmark_square_of_box(data.face_square(int(i)), "ibug68") for i in part]
        t0 = time.perf_counter()
        by_square = [k for k, f in enumerate(found_part) if f is None]
        by_face = [k for k, f in enumerate(found_part) if f is not None]
        found = dict(zip(by_square, fitter.from_squares([images[k] for k in by_square], [squares[k] for k in by_square])))
        found.update(zip(by_face, fitter.from_faces([images[k] for k in by_face], [found_part[k] for k in by_face])))
        spent += time.perf_counter() - t0
        out += [found[k].points68 for k in range(len(part))]
    return np.stack(out), spent


def nme(data, idx, points: np.ndarray) -> np.ndarray:
    """(n,) NME % of the 68 points, the protocol's (:func:`stn3dmm.evaluation.protocol.nme`)."""
    import torch

    from stn3dmm.evaluation.protocol import nme as protocol_nme

    truth = torch.as_tensor(data.reannotated[idx])
    return protocol_nme(torch.as_tensor(points), truth, torch.ones(truth.shape[:2], dtype=truth.dtype)).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/stn3dmm_large_pose", help="where large_pose.py wrote the head renders")
    ap.add_argument("--gaps", default="0.015,0.02", help="sweep_gap values to score")
    ap.add_argument("--turns", default="8", help="sweep turn counts to score")
    ap.add_argument("--sures", default="0.01,0.012,0.015,1", help="sweep_sure values to score (1: any)")
    ap.add_argument("--agrees", default="20", help="sweep_agree values to score, degrees (none: the surest alone)")
    ap.add_argument("--sweep-passes", default="3", help="passes of each turned try, values to score")
    ap.add_argument("--redetect", default="1", help="0 and/or 1: the sweep's quarter turns from a re-detected box")
    ap.add_argument("--start", default="square", help="square (the true 68 points' square) and/or detect (our detector's box)")
    ap.add_argument("--lfw", default=str(ROOT.parent / "shared" / "data" / "lfw"))
    ap.add_argument("--photos", type=int, default=200, help="real held-out photos for the turn count")
    ap.add_argument("--every", type=int, default=1, help="score every k-th face (1: all)")
    ap.add_argument("--wrong", type=float, default=20.0, help="NME %% above which a fit counts as wrong")
    ap.add_argument("--checkpoint", help="a training checkpoint's localiser in place of the shipped one")
    ap.add_argument("--refiner", help="one more pass after the cascade: a training checkpoint, or none (default: the "
                                      "package's refiner for the shipped localiser, none for a --checkpoint)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from large_pose import SyntheticSet

    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.model import load_model

    sets = {name: Path(args.out) / folder for name, folder in
            (("upright", "heads1_roll0_0"), ("any roll", "heads1_roll-180_180"))}
    for name, folder in sets.items():
        if not (folder / "done").exists():
            sys.exit(f"{folder}: no head renders; make them first (see this script's docstring)")
    model = load_model()
    from stn3dmm.evaluation.checkpoint import checkpoint_fitter, refiner_option

    if args.checkpoint:
        fitter = checkpoint_fitter(args.checkpoint, model, "cpu", 2, refiner=refiner_option(args.refiner))
    else:
        fitter = load_localiser(model=model, refiner=refiner_option(args.refiner))
    sweep = fitter._sweep

    def counted(images, squares, angles, found, reframe=None):      # how many faces the sweep takes on
        fitter.swept += sum(r.mirror_gap > fitter.sweep_gap for r in found)
        return sweep(images, squares, angles, found, reframe)

    fitter._sweep = counted
    settings = [("baseline (no deroll, no sweep)", False, 1, math.inf, 0.0, 1, False, None),
                ("deroll", True, 1, math.inf, 0.0, 1, False, None)]
    settings += [(f"sweep {t} > {g}, sure < {k}" + (f", agree {a}" if a != "none" else "") + f", {p} passes"
                  + (", redetect" if r == "1" else ""), True, int(t), float(g), float(k), int(p), r == "1",
                  None if a == "none" else float(a))
                 for t in args.turns.split(",") for g in args.gaps.split(",") for k in args.sures.split(",")
                 for a in args.agrees.split(",") for p in args.sweep_passes.split(",") for r in args.redetect.split(",")]
    for (name, folder), start in ((s, x) for s in sets.items() for x in args.start.split(",")):
        data = SyntheticSet(folder)
        idx = np.arange(0, len(data), args.every)
        roll = np.abs(data.roll_added[idx])
        faces = detected_faces(fitter, data, idx) if start == "detect" else None
        missed = f", our detector missed {sum(f is None for f in faces)}" if faces else ""
        print(f"\n== {name}: {len(idx)} held-out head renders ({folder}), from the {start}{missed}")
        yaw = np.asarray(data.abs_yaw)[idx]
        head = "".join(f"{f'roll {lo}-{hi}':>13}" for lo, hi in ROLL_BINS)
        head += "".join(f"{f'yaw {lo}-{hi}':>11}" for lo, hi in YAW_BINS)
        print(f"{'setting':<60}{'mean':>7}{'wrong %':>9}{head}{'swept %':>9}{'ms/face':>9}")
        for title, deroll, turns, gap, sure, passes, redetect, agree in settings:
            fitter.deroll, fitter.sweep, fitter.sweep_gap, fitter.sweep_sure = deroll, turns, gap, sure
            fitter.sweep_passes, fitter.redetect, fitter.sweep_agree, fitter.swept = passes, redetect, agree, 0
            pts, spent = localise_all(fitter, data, idx, faces)
            e = nme(data, idx, pts)
            cells = "".join(f"{e[(roll >= lo) & (roll < hi)].mean():>13.2f}" if ((roll >= lo) & (roll < hi)).any()
                            else f"{'-':>13}" for lo, hi in ROLL_BINS)
            cells += "".join(f"{e[(yaw >= lo) & (yaw < hi)].mean():>11.2f}" for lo, hi in YAW_BINS)
            print(f"{title:<60}{e.mean():>7.2f}{100 * (e > args.wrong).mean():>9.1f}{cells}"
                  f"{100 * fitter.swept / len(idx) if turns > 1 else 0.0:>9.1f}{1000 * spent / len(idx):>9.1f}",
                  flush=True)
    real_turns(fitter, Path(args.lfw), args.photos, [s for s in settings if s[2] > 1])


DEGRADED = ("as taken", "blurred", "shrunk", "half hidden", "dark")


def degrade(image: np.ndarray, how: str, box) -> np.ndarray:
    """``image`` (H, W, 3) in [0, 1] made harder: a Gaussian blur of 4 px, shrunk 5 times and
    blown up again, the lower half of the face ``box`` grey, or darkened (x 0.25, gamma 1.5)."""
    from PIL import Image, ImageFilter

    if how == "as taken":
        return image
    if how == "half hidden":
        out = image.copy()
        x0, y0, x1, y1 = np.asarray(box, int)
        out[(y0 + y1) // 2:y1, max(x0, 0):x1] = 0.5
        return out
    if how == "dark":
        return np.clip(image * 0.25, 0, 1) ** 1.5
    im = Image.fromarray((image * 255 + 0.5).astype(np.uint8))
    if how == "blurred":
        im = im.filter(ImageFilter.GaussianBlur(4))
    else:
        im = im.resize((im.width // 5, im.height // 5)).resize(im.size)
    return np.asarray(im, np.float32) / 255


def real_turns(fitter, lfw: Path, n: int, settings: list) -> None:
    """Print how many upright real faces (held-out LFW photos, as taken and degraded) each sweep
    setting turns by more than 60 degrees from where the cascade alone leaves them."""
    from stn3dmm.photos import FaceDetector, detect_faces, read_photo
    from stn3dmm.training.data.fitted import held_out

    if not lfw.is_dir():
        print(f"\n{lfw}: no LFW, no real photos")
        return
    people = sorted(p.name for p in lfw.iterdir() if p.is_dir())
    photos = [f for p, v in zip(people, held_out(people)) if v for f in sorted((lfw / p).glob("*.jpg"))][1::3][:n]
    detector, faces = FaceDetector(landmarks=False), []
    for f in photos:
        image = read_photo(f).image
        found = [x for x in detect_faces(image, detector) if not x.tiny]
        faces += [(image, found[0])] if found else []
    print(f"\n== real upright faces turned by the sweep (> 60 degrees): {len(faces)} held-out LFW photos")
    print(f"{'setting':<60}" + "".join(f"{h:>13}" for h in DEGRADED))
    counts = {s[0]: [] for s in settings}
    for how in DEGRADED:
        images = [degrade(image, how, face.bbox) for image, face in faces]
        fitter.sweep = 1
        first = fitter.from_faces(images, [face for _, face in faces])
        for title, deroll, turns, gap, sure, passes, redetect, agree in settings:
            fitter.deroll, fitter.sweep, fitter.sweep_gap, fitter.sweep_sure = deroll, turns, gap, sure
            fitter.sweep_passes, fitter.redetect, fitter.sweep_agree = passes, redetect, agree
            found = fitter.from_faces(images, [face for _, face in faces])
            counts[title].append(sum(abs(math.remainder(a.angle - b.angle, 2 * math.pi)) > math.radians(60)
                                     for a, b in zip(found, first)))
    for title, c in counts.items():
        print(f"{title:<60}" + "".join(f"{v:>13}" for v in c))


if __name__ == "__main__":
    main()
