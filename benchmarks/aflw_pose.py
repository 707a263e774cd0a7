"""Pose MAE on AFLW2000-3D two ways, from the per-image poses of an `stn3dmm evaluate` JSON.

The field's pose protocol (FSA-Net, Yang et al. 2019; SynergyNet's benchmark after it) compares
Euler angles in the benchmark's own ``Pose_Para`` convention over the 1,969 faces whose labelled
angles all lie within 99 degrees. Our own convention decomposes the same rotations in another
factor order, so its yaw differs for a face that is also pitched or rolled. `evaluate` prints
both since the fourteenth session; this script re-scores a JSON written before it, with no
method run again (`stn3dmm.evaluation.aflw2000.pose_scores`).

    python benchmarks/aflw_pose.py aflw.json [--path ../shared/data/aflw2000-3d]

AFLW2000-3D is a test set: this only reports, it chooses nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from stn3dmm.evaluation.aflw2000 import BenchmarkError, default_aflw2000, load_aflw2000, pose_scores


def rescore(records: list, bench) -> dict:
    """``records``: one method's ``images_by_method`` list (``name``, ``pose``) -> pose_scores."""
    index = {n: i for i, n in enumerate(bench.names)}
    try:
        idx = np.array([index[r["name"]] for r in records])
    except KeyError as e:
        raise BenchmarkError(f"image {e} of the JSON is not in the benchmark") from None
    pose = np.array([r["pose"] if r.get("pose") is not None else [np.nan] * 3 for r in records], dtype=np.float64)
    return pose_scores(bench, idx, pose)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", type=Path, help="the JSON of `stn3dmm evaluate --out`")
    ap.add_argument("--path", type=Path, default=None, help="the benchmark folder (default: ../shared/data/...)")
    a = ap.parse_args(argv)
    try:
        data = json.loads(a.json.read_text())
        by_method = data["images_by_method"]
    except (OSError, ValueError, KeyError) as e:
        print(f"{a.json}: not an evaluate JSON with per-image records ({e})", file=sys.stderr)
        return 2
    try:
        bench = load_aflw2000(a.path or default_aflw2000())
        rows = [(name, rescore(recs, bench)) for name, recs in by_method.items()]
    except BenchmarkError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"{'method':48s} {'protocol':22s} {'faces':>5s} {'yaw':>6s} {'pitch':>6s} {'roll':>6s} {'mean':>6s}"
          f" {'|yaw| bias > 60':>16s}")
    for name, r in rows:
        for label, pm, bias in (("the field's (FSA-Net)", r["pose_mae_field_deg"], r["yaw_bias_above_60_field_deg"]),
                                ("ours, all faces", r["pose_mae_deg"], r["yaw_bias_above_60_deg"])):
            faces = pm.get("faces", len(by_method[name]))
            print(f"{name[:48]:48s} {label:22s} {faces:5d} {pm['yaw']:6.2f} {pm['pitch']:6.2f} {pm['roll']:6.2f}"
                  f" {pm['mean']:6.2f} {bias:+16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
