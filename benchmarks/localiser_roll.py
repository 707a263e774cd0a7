"""The localiser's cascade at any roll: derolling and the turn sweep, chosen on held-out head renders.

The shipped localiser learned faces rolled within a few tens of degrees. A face lying on its side
or upside down in a photo is beyond that. Two parts of :class:`~stn3dmm.fitting.localiser.LocaliserFitter`
deal with it, and this benchmark sets them:

- ``deroll``: each pass after the first crops the face turned upright by the roll the pass
  before read (off: the first crop's turn throughout, as up to the eighth session);
- ``sweep`` turns where the final mirror gap is above ``sweep_gap``, the surest taken where its
  gap is below ``sweep_keep`` times the first's.

The data are the held-out LFW people's head renders of ``benchmarks/large_pose.py --set heads``
(which the localiser never trained on), as they are (rolled within 25 degrees) and each turned
by its own angle ~ U(-180, 180). Every face is localised from its true 68 points' square, as
``stn3dmm evaluate`` does from a benchmark box. The table gives the NME (% of the box's
sqrt(w h)) by added roll, the share of faces fitted wrongly (NME above 20 %), the share swept
and the time per face, against the cascade without either (the baseline), in one run:

    python benchmarks/large_pose.py --set heads --views 1 --variants "" --roll=-180,180   # makes the sets
    python benchmarks/localiser_roll.py [--gaps 0.02,0.03] [--turns 4,8] [--keeps 1,0.6] [--every 1]
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


def localise_all(fitter, data, idx, batch: int = 32) -> tuple[np.ndarray, float]:
    """(n, 68, 2) points for the faces ``idx`` of ``data`` from their true squares, and the seconds taken."""
    from stn3dmm.photos import read_photo
    from stn3dmm.photos.crop import landmark_square_of_box

    out, spent = [], 0.0
    for lo in range(0, len(idx), batch):
        part = idx[lo:lo + batch]
        images = [read_photo(data.image_path(int(i))).image for i in part]
        squares = [landmark_square_of_box(data.face_square(int(i)), "ibug68") for i in part]
        t0 = time.perf_counter()
        found = fitter.from_squares(images, squares)
        spent += time.perf_counter() - t0
        out += [f.points68 for f in found]
    return np.stack(out), spent


def nme(data, idx, points: np.ndarray) -> np.ndarray:
    """(n,) NME %: mean point error over the sqrt of the true box's area."""
    truth = data.reannotated[idx]
    lo, hi = truth.min(1), truth.max(1)
    return 100 * np.linalg.norm(points - truth, axis=-1).mean(-1) / np.sqrt(np.prod(hi - lo, axis=-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/stn3dmm_large_pose", help="where large_pose.py wrote the head renders")
    ap.add_argument("--gaps", default="0.02,0.025,0.03,0.04", help="sweep_gap values to score")
    ap.add_argument("--turns", default="8", help="sweep turn counts to score")
    ap.add_argument("--keeps", default="1,0.6", help="sweep_keep shares to score")
    ap.add_argument("--every", type=int, default=1, help="score every k-th face (1: all)")
    ap.add_argument("--wrong", type=float, default=20.0, help="NME %% above which a fit counts as wrong")
    ap.add_argument("--checkpoint", help="a training checkpoint's localiser in place of the shipped one")
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
    if args.checkpoint:
        from stn3dmm.evaluation.checkpoint import checkpoint_fitter

        fitter = checkpoint_fitter(args.checkpoint, model, "cpu", 2)
    else:
        fitter = load_localiser(model=model)
    sweep = fitter._sweep

    def counted(images, squares, angles, found):      # how many faces the sweep takes on
        fitter.swept += sum(r.mirror_gap > fitter.sweep_gap for r in found)
        return sweep(images, squares, angles, found)

    fitter._sweep = counted
    settings = [("baseline (no deroll, no sweep)", False, 1, math.inf, 1.0), ("deroll", True, 1, math.inf, 1.0)]
    settings += [(f"deroll, sweep {t} > {g}, keep {k}", True, int(t), float(g), float(k))
                 for t in args.turns.split(",") for g in args.gaps.split(",") for k in args.keeps.split(",")]
    for name, folder in sets.items():
        data = SyntheticSet(folder)
        idx = np.arange(0, len(data), args.every)
        roll = np.abs([_roll_added(data, int(i)) for i in idx])
        print(f"\n== {name}: {len(idx)} held-out head renders ({folder})")
        head = "".join(f"{f'roll {lo}-{hi}':>13}" for lo, hi in ROLL_BINS)
        print(f"{'setting':<40}{'mean':>7}{'wrong %':>9}{head}{'swept %':>9}{'ms/face':>9}")
        for title, deroll, turns, gap, keep in settings:
            fitter.deroll, fitter.sweep, fitter.sweep_gap, fitter.sweep_keep = deroll, turns, gap, keep
            fitter.swept = 0
            pts, spent = localise_all(fitter, data, idx)
            e = nme(data, idx, pts)
            cells = "".join(f"{e[(roll >= lo) & (roll < hi)].mean():>13.2f}" if ((roll >= lo) & (roll < hi)).any()
                            else f"{'-':>13}" for lo, hi in ROLL_BINS)
            print(f"{title:<40}{e.mean():>7.2f}{100 * (e > args.wrong).mean():>9.1f}{cells}"
                  f"{100 * fitter.swept / len(idx) if turns > 1 else 0.0:>9.1f}{1000 * spent / len(idx):>9.1f}",
                  flush=True)


def _roll_added(data, i: int) -> float:
    import json

    return float(json.loads((data.folder / data.names[i]).with_suffix(".json").read_text()).get("roll_added", 0.0))


if __name__ == "__main__":
    main()
