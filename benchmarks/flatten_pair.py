"""Flatten speed, this checkout against another, in pairs of fresh processes taking turns.

    python benchmarks/flatten_pair.py OTHER_CHECKOUT [--method auto] [--pairs 6] [--photos 40]

On a shared machine the speed drifts by tens of per cent within minutes, so a change is judged by
the ratio within each pair of runs, one of each code, made back to back in alternating order.
Each run is a fresh process that imports stn3dmm from its checkout's ``src`` (``PYTHONPATH``),
loads the model, flattens one warm-up photo, then times ``flatten_paths`` on the photos of
``benchmarks/flatten.py`` (the sample photos turned, scaled and shifted; made once, shared by both)
with all outputs. Prints photos/s per run, the ratio per pair (this checkout / the other) and the
median ratio. The other checkout: e.g. ``git worktree add /tmp/before <commit>``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _common import ROOT

_ONE_RUN = """
import sys, time, tempfile, shutil
from pathlib import Path
import torch
torch.set_num_threads(2)
from stn3dmm.flatten import Flattener, flatten_paths
from stn3dmm.model.store import load_model
photos = sorted(Path(sys.argv[1]).glob("*.jpg"))
flattener = Flattener(load_model(), method=sys.argv[2])
work = Path(tempfile.mkdtemp())
try:
    flatten_paths(photos[:1], work / "warm", flattener, progress=False)
    t = time.perf_counter()
    flatten_paths(photos, work / "out", flattener, progress=False)
    print(len(photos) / (time.perf_counter() - t))
finally:
    shutil.rmtree(work, ignore_errors=True)
"""


def one_run(src: Path, photos: Path, method: str) -> float:
    """photos/s of one fresh process importing stn3dmm from ``src``."""
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", _ONE_RUN, str(photos), method], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", help="the other checkout (its src/ is imported)")
    ap.add_argument("--method", default="auto", choices=["landmarks", "localiser", "auto"])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--photos", type=int, default=40)
    args = ap.parse_args()
    other = Path(args.other) / "src"
    if not (other / "stn3dmm").is_dir():
        sys.exit(f"{args.other}: no src/stn3dmm there (a checkout of this repository is needed)")
    sys.path.insert(0, str(ROOT / "src"))
    from flatten import make_photos

    with tempfile.TemporaryDirectory(prefix="stn3dmm-flatten-pair-") as folder:
        make_photos(args.photos, folder)
        codes = {"this": ROOT / "src", "other": other}
        ratios = []
        print(f"--method {args.method}, {args.photos} photos, all outputs (photos/s)")
        print(f"{'pair':>5}{'this':>8}{'other':>8}{'this / other':>14}")
        for k in range(args.pairs):
            order = ("other", "this") if k % 2 == 0 else ("this", "other")
            rate = {name: one_run(codes[name], Path(folder), args.method) for name in order}
            ratios.append(rate["this"] / rate["other"])
            print(f"{k + 1:>5}{rate['this']:>8.2f}{rate['other']:>8.2f}{ratios[-1]:>14.2f}", flush=True)
        print(f"median ratio {np.median(ratios):.2f}   (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
