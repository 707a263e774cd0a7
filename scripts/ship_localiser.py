"""Put a trained localiser into the package: weights (state dict) + card (JSON).

    python scripts/ship_localiser.py runs/lfw_localiser_stage8/checkpoints/last.pt \
        [--refiner runs/lfw_localiser_refine/checkpoints/last.pt] [--scores aflw.json ...] \
        [--out src/stn3dmm/nets/weights]
    python scripts/ship_localiser.py shipped --refiner CKPT ...   # the package's localiser, a new refiner
    python scripts/ship_localiser.py CKPT --refiner shipped ...   # a new localiser, the package's refiner

Reads the checkpoint with ``weights_only=True``, keeps the network's weights only (float32), and
writes the card: what the network is, the model its theta is for, the face-box framing of its
first crop (calibrated on the training split of the fitted photos the run used: the detector's
box of each photo against the box of its fitted 68 points, medians), the data, the recipe, the
commit, the step, any ``--scores`` files (``stn3dmm evaluate --out`` JSON: their bucket table
only) and the licence terms that travel with the weights. ``--refiner``: a second checkpoint of the
same network for one more pass after the cascade (``refiner.pt``, and its own config, step and recipe on the
card); without it the package holds no refiner. ``shipped`` in place of the checkpoint keeps the
package's localiser and its card's provenance (config, step, recipe, data, box framing);
``--refiner shipped`` keeps the package's refiner and its card entry, and with 'shipped' as the
checkpoint also the card's scores unless ``--scores`` gives new ones (to export the ONNX graphs of
the same weights again). Each network's ONNX graph is written beside
its weights (:func:`stn3dmm.nets.runtime.export_onnx`; needs ``pip install -e ".[ship]"``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LICENCE = ("Research use only. The weights were learned from LFW photos (Labeled Faces in the Wild, "
           "deep-funnelled, Huang et al.: research use) through the 3DDFA release of the Basel Face Model 2009 (University of Basel: "
           "non-commercial research) with FaceWarehouse expressions (Zhejiang University: research use); "
           "these terms travel with the weights.")


def box_framing(data_path: str, photos: str | None, model) -> list[float]:
    """(k, fx, fy): the detector's face box (longer side d, centre c) -> the fitted 68 points' box
    (side k d, centre c + (fx, fy) d), medians over the training split."""
    import torch

    from stn3dmm.stn import MorphableSTN
    from stn3dmm.training.data.fitted import held_out, read_fits

    fits, _ = read_fits(data_path, photos)
    fits = [f for f, v in zip(fits, held_out([f.person for f in fits])) if not v]
    stn = MorphableSTN(model, landmarks="ibug68", max_outside=None)
    theta = torch.as_tensor(np.stack([f.theta for f in fits]), dtype=torch.float32)
    with torch.no_grad():
        pts = stn.geometry(theta).points[:, stn.landmark_index].double().numpy()
    rows = []
    for f, p in zip(fits, pts):
        box = np.asarray(json.loads(f.texture.with_name(f.texture.name.replace("_completed.png", ".json"))
                                    .read_text())["detection"]["bbox"], np.float64)
        a, b = f.matrix[:, :2], f.matrix[:, 2]
        q = (p - b) @ np.linalg.inv(a).T
        d = max(box[2] - box[0], box[3] - box[1])
        lo, hi = q.min(0), q.max(0)
        rows.append(((hi - lo).max() / d, *(((lo + hi) / 2 - (box[:2] + box[2:]) / 2) / d)))
    k, fx, fy = np.median(np.array(rows), 0)
    return [round(float(k), 4), round(float(fx), 4), round(float(fy), 4)]


INFERENCE = ("stn3dmm.fitting.localiser.LocaliserFitter: two passes, the second re-cropped from the first's 68 "
             "points and turned by its roll, the last averaged with its mirrored crop's theta; where the "
             "network is unsure (mirror gap above SWEEP_GAP) the first crop turned by each eighth of a turn, three "
             "passes each (SWEEP_PASSES), quarter turns from a face box framed by the detector's box in the photo "
             "so turned (redetect), the surest taken if sure (SWEEP_SURE) and another try agrees on its turn "
             "(SWEEP_AGREE){refiner}; the last pass also averaged over its crop shifted by SHIFT pixels each way "
             "for faces the pass before reads at SHIFT_YAW degrees of |yaw| or more (load_localiser's default); "
             "the scores were measured so")
PROVENANCE = ("name", "backbone", "image_size", "width", "norm", "n_id", "n_exp", "model", "framing", "box_framing",
              "data", "recipe", "config", "step")


def _step(checkpoint) -> int:
    import torch

    return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["step"])


def _refiner_entry(checkpoint, recipe: str, card: dict):
    """(state dict, card entry) of the refiner checkpoint, which must be the card's network."""
    from stn3dmm.evaluation.checkpoint import load_localiser

    net, cfg = load_localiser(checkpoint)
    loc = cfg["localiser"]
    mine = (loc["backbone"], int(loc["image_size"]), float(loc["width"]), loc["norm"],
            int(cfg["model"]["n_id"]), int(cfg["model"]["n_exp"]))
    if mine != tuple(card[k] for k in ("backbone", "image_size", "width", "norm", "n_id", "n_exp")):
        raise SystemExit(f"{checkpoint}: not the localiser's network ({mine}), so it cannot be its refiner")
    data = cfg["data"]
    entry = {"recipe": recipe, "step": _step(checkpoint), "config": cfg,
             "data": f"as the localiser's, framed as its final pass sees a face: centre jitter {data.get('shift')}, "
                     f"side {data.get('scale_jitter')}, roll up to {data.get('roll_range')} degrees"}
    return net.state_dict(), entry


def main(argv=None) -> int:
    from stn3dmm.evaluation.checkpoint import load_localiser
    from stn3dmm.nets.shipped import export_shipped, load_shipped

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="the localiser's training checkpoint, or 'shipped' (the package's)")
    ap.add_argument("--refiner", help="a training checkpoint of the same network for one more pass after the "
                                      "cascade, or 'shipped' (the package's, with 'shipped' as the checkpoint)")
    ap.add_argument("--refiner-recipe", default="stn3dmm train --config configs/lfw_localiser_refine.toml "
                                                "(2,500 steps from the localiser's weights)",
                    help="how the refiner was made, for the card")
    ap.add_argument("--scores", nargs="*", default=[], help="stn3dmm evaluate --out JSON files")
    ap.add_argument("--out", help="folder (default: the package's nets/weights)")
    ap.add_argument("--recipe", default="stn3dmm train --config configs/lfw_localiser.toml (stage 1, 6,500 steps), "
                                        "then, each from the last checkpoint of the stage before, "
                                        "configs/lfw_localiser_head.toml (stage 2, 4,000 steps), "
                                        "configs/lfw_localiser_stage3.toml (stage 3, 2,500 steps), "
                                        "configs/lfw_localiser_stage4.toml (stage 4, 6,000 steps), "
                                        "configs/lfw_localiser_stage5.toml (stage 5, 10,000 steps), "
                                        "configs/lfw_localiser_stage6.toml (stage 6, 2,000 steps), "
                                        "configs/lfw_localiser_stage7.toml (stage 7, 5,000 steps) and "
                                        "configs/lfw_localiser_stage8.toml (stage 8, 2,000 steps)",
                    help="how the weights were made, for the card")
    a = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    scores = {}
    for p in a.scores:
        res = json.loads(Path(p).read_text())
        scores[Path(p).name] = {name: {"nme": r["nme"], "found": r.get("found"), "pose_mae_deg": r.get("pose_mae_deg"),
                                       "pose_mae_field_deg": r.get("pose_mae_field_deg")}
                                for name, r in res.get("methods", {}).items()}
    if a.checkpoint == "shipped":
        net, old = load_shipped()
        card = {k: old[k] for k in PROVENANCE if k in old}
    else:
        from stn3dmm.nets.shipped import load_card

        net, cfg = load_localiser(a.checkpoint)
        card = _card(cfg, a.recipe, _step(a.checkpoint))
        old = load_card() if a.refiner == "shipped" else {}      # the package's card, for its refiner
    refiner = None
    if a.refiner == "shipped":
        from stn3dmm.nets.shipped import load_shipped_refiner

        kept = load_shipped_refiner(card=old) if "refiner" in old else None
        if kept is None:
            raise SystemExit("--refiner shipped keeps the package's refiner, and this package holds none")
        refiner, card["refiner"] = kept.state_dict(), old["refiner"]
    elif a.refiner:
        refiner, card["refiner"] = _refiner_entry(a.refiner, a.refiner_recipe, card)
    if a.checkpoint == a.refiner == "shipped" and not a.scores:
        scores = old.get("scores", {})              # the same two networks: their scores still hold
    by_refiner = ("; then one more pass, the refiner's (refiner.pt), on the crop re-framed from the result, "
                  "mirror-averaged, after one more pass of the localiser where that re-framing moved the face's "
                  "square further than the refiner learned (REFINER_FRAMING); the mirror gap stays the localiser's")
    card.update({"inference": INFERENCE.format(refiner=by_refiner if refiner else ""),
                 "commit": commit, "exported": time.strftime("%Y-%m-%d"), "scores": scores, "licence": LICENCE})
    path = export_shipped(net.state_dict(), card, a.out, refiner=refiner)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)" + (" and refiner.pt" if refiner else "")
          + f", their ONNX graphs and the card; box framing {card['box_framing']['mediapipe']}")
    return 0


def _card(cfg: dict, recipe: str, step: int) -> dict:
    """The card's provenance for a training checkpoint's localiser of configuration ``cfg``."""
    from stn3dmm.model.store import load_model

    model = load_model(cfg["model"]["path"] or None)
    loc, data = cfg["localiser"], cfg["data"]
    return {
        "name": f"stn3dmm localiser ({loc['backbone']} x{loc['width']}, {loc['image_size']} px)",
        "backbone": loc["backbone"], "image_size": int(loc["image_size"]), "width": float(loc["width"]),
        "norm": loc["norm"], "n_id": int(cfg["model"]["n_id"]), "n_exp": int(cfg["model"]["n_exp"]),
        "model": {"source": str(model.source)},
        "framing": "the square of stn3dmm.photos.crop.landmark_square(68 iBUG points, 'ibug68')",
        "box_framing": {"mediapipe": box_framing(data["path"], data["photos"] or None, model)},
        "data": (f"LFW ({data['path']}: stn3dmm flatten fits as pseudo-labels), split {data['split']}, "
                 f"{data['real_views']} real crop(s) + {data['profiled_views']} profiled render(s) per photo"
                 + (f", {data.get('head_share', 0.0):.0%} of them head renders" if data.get("head_share") else "")),
        "recipe": recipe, "config": cfg, "step": step,
    }


if __name__ == "__main__":
    raise SystemExit(main())
