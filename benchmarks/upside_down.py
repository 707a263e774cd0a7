"""Upright faces fitted upside down: how often, and whether the face mesh's second opinion helps.

    python benchmarks/upside_down.py [--out /tmp/stn3dmm_large_pose] [--sets renders,heads1_roll0_0,...]
        [--shares 1,0.8,0.6,0.4,0.2] [--records R.json]

The sets are held-out renders made by ``benchmarks/large_pose.py`` (never AFLW2000-3D): the
synthetic renders (``renders``: the default model textured with LFW faces, upright), the held-out
people's head renders upright (``heads1_roll0_0``) and at any roll (``heads1_roll-180_180``). For
each face our detector finds (its box holding the true box's centre), as ``flatten --method auto``
sees it: the localiser from the detector's face, after auto's upright step
(``Flattener._upright``). A fit counts as upside down where the direction from its eyes to its mouth
(the mean of the 68 points' eye and mouth points) lies more than 90 degrees from the truth's.

The second opinion tried: where the face mesh's turn (``Face.mesh_angle``) and the localiser's
(``face_turn``) lie more than a quarter turn apart and the localiser's |yaw| is below
``UPRIGHT_PROFILE``, localise again on the crop turned by the mesh's angle and framed by its 68
points, as auto's upright step does, and take that unless the first result's mirror gap is below
``share`` times the new one's. Printed per set: faces, upside-down fits, the candidates, and per
share the fits it puts right and those it puts wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from _common import ROOT

sys.path.insert(0, str(ROOT / "src"))

from stn3dmm.photos.crop import landmark_turn  # noqa: E402


def record(folder: Path, flattener) -> list[dict]:
    """One dict per face our detector finds: the truth's, the fit's and (for candidates) the
    second opinion's turns (``landmark_turn``), and the mirror gaps."""
    import torch

    from large_pose import SyntheticSet

    from stn3dmm.evaluation.methods import LocaliserMethod
    from stn3dmm.fitting.localiser import abs_yaw, face_turn
    from stn3dmm.flatten.pipeline import UPRIGHT_PROFILE
    from stn3dmm.photos import read_photo
    from stn3dmm.photos.detect import turn_apart

    data, rows = SyntheticSet(folder), []
    finder = LocaliserMethod(flattener.localiser, "detect", detector=flattener.detector)   # evaluate's own rule
    for i in range(len(data.names)):
        image = read_photo(data.image_path(i)).image
        face = finder._detected_face(image, data.face_square(i))
        if face is None:
            continue
        items = [(image, face)]
        r = flattener._upright(items, flattener.localiser.from_faces([image], [face]))[0]
        turn = face_turn(torch.as_tensor(r.theta[None]), [r.angle])[0]
        mesh = face.mesh_angle()
        row = dict(name=data.names[i], truth=landmark_turn(data.reannotated[i]), fit=landmark_turn(r.points68),
                   gap=float(r.mirror_gap), yaw=float(abs_yaw([r])[0]), mesh=mesh)
        if mesh is not None and turn_apart(mesh, turn) > math.pi / 2 and row["yaw"] < UPRIGHT_PROFILE:
            again = flattener.localised_in_mesh_frame(items)[0]
            row.update(again=landmark_turn(again.points68), again_gap=float(again.mirror_gap))
        rows.append(row)
    return rows


def report(name: str, rows: list[dict], shares: list[float]) -> None:
    from stn3dmm.photos.detect import turn_apart

    wrong = lambda a, r: turn_apart(a, r["truth"]) > math.pi / 2       # noqa: E731
    cand = [r for r in rows if "again" in r]
    print(f"\n== {name}: {len(rows)} faces found, {sum(wrong(r['fit'], r) for r in rows)} fitted upside down; "
          f"{len(cand)} where the face mesh and the localiser lie more than a quarter turn apart")
    print(f"{'take the mesh frame unless the first gap is below':<52}{'put right':>10}{'put wrong':>10}")
    for share in [None] + shares:
        taken = [r for r in cand if share is None or not r["gap"] < share * r["again_gap"]]
        right = sum(wrong(r["fit"], r) and not wrong(r["again"], r) for r in taken)
        worse = sum(wrong(r["again"], r) and not wrong(r["fit"], r) for r in taken)
        print(f"{'always' if share is None else f'{share:g} x its own':<52}{right:>10}{worse:>10}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/stn3dmm_large_pose", help="where large_pose.py wrote its renders")
    ap.add_argument("--sets", default="renders,heads1_roll0_0,heads1_roll-180_180")
    ap.add_argument("--shares", default="1,0.8,0.6,0.4,0.2")
    ap.add_argument("--records", help="also write every face's record to this JSON")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from stn3dmm.flatten import Flattener
    from stn3dmm.model import load_model

    flattener = Flattener(load_model(), method="auto")
    every = {}
    for name in args.sets.split(","):
        folder = Path(args.out) / name
        if not (folder / "done").exists():
            sys.exit(f"{folder}: not made yet (python benchmarks/large_pose.py, see its docstring)")
        every[name] = record(folder, flattener)
        report(name, every[name], [float(v) for v in args.shares.split(",")])
    if args.records:
        Path(args.records).write_text(json.dumps(every))


if __name__ == "__main__":
    main()
