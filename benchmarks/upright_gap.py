"""How auto's second opinion on the face mesh's turn was chosen: the localiser's mirror gap, replayed.

``flatten --method auto`` localises a face again on a crop turned upright by its face mesh where
the mesh sees it turned in the photo by over ``UPRIGHT_ROLL`` degrees (``flatten.pipeline``). At
profile the mesh can misread an upright face as turned, so the crop first seen is kept where the
localiser agrees with its own mirror image there clearly better than on the turned crop: its
mirror gap (``LocaliserFitter.mirror_gap``) below ``UPRIGHT_KEEP_GAP`` times the turned crop's.

This runs the detector and the localiser once on every face of the held-out head renders (upright
and at any roll, as ``benchmarks/large_pose.py`` left them), keeps both candidates of every face
the mesh turns, and prints, per share, the faces fitted wrongly (NME over 20 %) among those turned,
and their mean NME; share 0 is the face mesh alone, "oracle" the better candidate each time.

    python benchmarks/upright_gap.py [--out /tmp/stn3dmm_large_pose]
"""

from __future__ import annotations

import sys

import numpy as np

from _common import ROOT
from upright import arguments, head_sets

sys.path.insert(0, str(ROOT / "src"))

SHARES = (0.0, 0.4, 0.5, 0.6, 0.8, 1.0)


def nme(points: np.ndarray, truth: np.ndarray) -> float:
    """NME % of one face's 68 points, the protocol's (:func:`stn3dmm.evaluation.protocol.nme`)."""
    import torch

    from stn3dmm.evaluation.protocol import nme as protocol_nme

    t = torch.as_tensor(truth)[None]
    return float(protocol_nme(torch.as_tensor(points)[None], t, torch.ones(t.shape[:2], dtype=t.dtype))[0])


def candidates(items, flattener):
    """(NME, mirror gap) of the crop first seen and of the mesh's upright crop, per face turned
    (``Flattener.upright_candidates``, as auto finds them)."""
    out = []
    for img, truth in items:
        img = np.asarray(img, np.float32) / 255   # as the benchmark harness reads a render
        faces = [f for f in flattener.detect(img) if not f.tiny][:1]
        if not faces:
            continue
        first = flattener.localiser.from_faces([img], faces)
        for k, again in zip(*flattener.upright_candidates([(img, faces[0])], first)):
            out.append((nme(first[k].points68, truth), first[k].mirror_gap, nme(again.points68, truth),
                        again.mirror_gap))
    return np.array(out).reshape(-1, 4)


def main():
    from stn3dmm.flatten.pipeline import Flattener
    from stn3dmm.model.store import load_model

    args = arguments(__doc__)
    flattener = Flattener(load_model(), method="auto")
    print(f"{'set':28s} {'turned':>6s}  " + "  ".join(f"{s:>9}" for s in SHARES) + "  oracle")
    for title, items in head_sets(args.out, truth=lambda lm: lm):
        c = candidates(items, flattener)
        cells = []
        for share in SHARES:
            picked = np.where(c[:, 1] < share * c[:, 3], c[:, 0], c[:, 2])
            cells.append(f"{int((picked > 20).sum()):3d} {picked.mean() if len(c) else float('nan'):5.2f}")
        oracle = int((np.minimum(c[:, 0], c[:, 2]) > 20).sum())
        print(f"{title:28s} {len(c):6d}  " + "  ".join(cells) + f"  {oracle:6d}")
    print("cells: faces wrong (NME > 20 %) among those the face mesh turns, and their mean NME %")


if __name__ == "__main__":
    main()
