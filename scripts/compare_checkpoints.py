"""Held-out NME of several localiser checkpoints on one data set, in one table (for choosing).

    python scripts/compare_checkpoints.py A.pt B.pt ... [--set data.key=value ...] [--mirror]

Each of A, B, ... is a training checkpoint, a folder of shipped weights and card
(``localiser.pt`` + ``localiser.json``, as ``scripts/ship_localiser.py`` writes them), or
``shipped``: the localiser in the package.

The data set is built once from the first checkpoint's [data] section with the ``--set``
overrides (by default the fitted photos' held-out people: ``split=val``, the 68 points alone,
one real crop and two profiled renders per photo) and every checkpoint predicts theta for every
item. Printed per checkpoint: the NME (68 points, % of the labelled box's sqrt(w h)) of the
real crops against their pseudo-labels, of the renders by |yaw| bucket against their exact
labels, the selection score (the mean of the real crops' NME and the renders' bucket mean), and
the renders' |yaw| bias beyond 60 degrees (mean |predicted yaw| - |true yaw|, as the benchmark's).
No transformer sampling, no visibility: only theta and the projected landmarks. ``--mirror`` adds
a row per checkpoint with test-time mirror averaging, as the shipped fitter predicts
(:func:`stn3dmm.fitting.localiser.mirror_average`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VAL = ("split=val", "grid_step=0", "real_views=1", "profiled_views=2")


def _load(which: str):
    """(network, its training config) of a checkpoint, a shipped folder or ``shipped``."""
    from stn3dmm.evaluation.checkpoint import load_localiser
    from stn3dmm.nets.shipped import load_shipped

    if which == "shipped" or Path(which).is_dir():
        net, card = load_shipped(None if which == "shipped" else which)
        if not isinstance(card.get("config"), dict):
            raise SystemExit(f"{which}: its card holds no training config to build the held-out data from")
        return net, card["config"]
    return load_localiser(which)


def main(argv=None) -> int:
    from stn3dmm.evaluation.protocol import bucketed, nme
    from stn3dmm.evaluation.aflw2000 import yaw_bias
    from stn3dmm.fitting.localiser import mirror_average
    from stn3dmm.model.store import load_model
    from stn3dmm.stn import MorphableSTN
    from stn3dmm.stn.pose import pose_from_theta
    from stn3dmm.training.batches import build_dataset, fetch
    from stn3dmm.training.config import data_overrides

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", help="training checkpoints, shipped folders, or 'shipped'")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a [data] setting")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--mirror", action="store_true", help="also each checkpoint with test-time mirror averaging")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    loaded = [_load(c) for c in a.checkpoints]
    nets, cfg = [n for n, _ in loaded], loaded[0][1]
    spec = dict(cfg["data"], **data_overrides(None, None, list(VAL) + a.set))
    model = load_model(cfg["model"]["path"] or None)
    ds = build_dataset(spec, model, int(cfg["localiser"]["image_size"]), spec["landmark_set"], progress=False)
    stn = MorphableSTN(model, landmarks=None, n_id=int(cfg["model"]["n_id"]), n_exp=int(cfg["model"]["n_exp"]),
                       max_outside=None)
    verts = torch.as_tensor(np.asarray(ds.landmark_set), dtype=torch.long)
    labels = list(a.checkpoints) + [c + " + mirror" for c in a.checkpoints if a.mirror]
    errs, yaws, pred_yaws = [[] for _ in labels], [], [[] for _ in labels]
    with torch.no_grad():
        for lo in range(0, len(ds), a.batch):
            b = fetch(ds, range(lo, min(len(ds), lo + a.batch)))
            yaws.append(b["pose"][:, 0].numpy())
            x = b["image"]
            for k, net in enumerate(nets):
                theta = net.eval()(x).float()
                rows = [(k, theta)]
                if a.mirror:     # the plain prediction serves both rows
                    rows.append((len(nets) + k, mirror_average(theta, net(x.flip(-1)).float(), x.shape[-1])))
                for row, th in rows:
                    pts = stn.geometry(th).points[:, verts]
                    errs[row].append(nme(pts, b["landmarks"], b["visibility"]).numpy())
                    pred_yaws[row].append(pose_from_theta(th.double())[:, 0].numpy())
    yaw = np.concatenate(yaws)
    real = ~np.isfinite(yaw)
    print(f"{len(ds)} items: {int(real.sum())} real crops, {int((~real).sum())} renders ({spec['path']}, "
          f"split {spec['split']})")
    print(f"{'checkpoint':44} {'real':>6} {'0-30':>6} {'30-60':>6} {'60-90':>6} {'renders':>8} {'score':>6} {'yaw bias':>9}")
    for c, e, py in zip(labels, errs, pred_yaws):
        e, py = np.concatenate(e), np.concatenate(py)
        r = bucketed(e[~real], yaw[~real])
        score = 0.5 * (float(e[real].mean()) + r["bucket_mean"])
        print(f"{c:44} {e[real].mean():6.2f} {r['0-30']:6.2f} {r['30-60']:6.2f} {r['60-90']:6.2f} "
              f"{r['bucket_mean']:8.2f} {score:6.2f} {yaw_bias(py[~real], yaw[~real], np.abs(yaw[~real])):+9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
