"""Evaluating a trained localiser checkpoint: landmark NME by yaw, pose error, flattened consistency, symmetry.

Owns ``stn3dmm evaluate --checkpoint`` on a data set described like a ``[data]`` config section
(the NME and its buckets are :mod:`.protocol`'s):

* **NME** (%): mean distance of the predicted to the labelled landmarks over the visible
  ones, divided by sqrt(w h) of the labelled landmarks' bounding box, in |yaw| buckets
  [0, 30), [30, 60), [60, 90] degrees and the unweighted mean of the three buckets (the
  AFLW2000-3D protocol), and over all images;
* **pose MAE** (degrees) of yaw, pitch and roll against the data set's pose;
* **flattened consistency**: mean absolute difference (0-255) between the flattened
  textures of different views of one identity, over the pixels visible in both;
* **symmetry error**: the same between a flattened texture and its own mirror image;
* the same NME for two baselines: the **mean face** at the localiser's start pose (frontal,
  centred, s0) and the **mean landmark layout** of the evaluated images themselves.

Pose convention: the synthetic data's (:data:`stn3dmm.training.data.pose.POSE_CONVENTION`,
R = Rz(roll) Rx(pitch) Ry(yaw) in the model frame; positive yaw turns the nose towards image
+x). Real data sets define their angles in their own ways (signs, order); the |yaw| buckets
do not depend on that, the pitch and roll errors may.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .protocol import bucketed, nme, strict_json

def _mad_visible(a: torch.Tensor, b: torch.Tensor, ma: torch.Tensor, mb: torch.Tensor) -> float:
    both = (ma > 0.5) & (mb > 0.5)
    if not bool(both.any()):
        return float("nan")
    return float(255 * (a - b).abs().mean(0)[both[0]].mean())


@torch.no_grad()
def predict(net, stn, dataset, vertices: torch.Tensor, batch: int = 32, device="cpu"):
    """Run the localiser on every item: predicted landmarks, theta, flattened + masks, and labels."""
    from ..training.batches import fetch

    net.eval()
    device = torch.device(device)
    vidx = torch.as_tensor(vertices, dtype=torch.long, device=device)
    keep = {k: [] for k in ("pred", "target", "vis", "pose", "identity", "theta", "masked", "mask", "gt_theta")}
    for start in range(0, len(dataset), batch):
        idx = list(range(start, min(len(dataset), start + batch)))
        b = fetch(dataset, idx)
        images = b["image"].to(device)
        theta = net(images).float()
        out = stn(images, theta)
        keep["pred"].append(out["points"][:, vidx].float().cpu())
        keep["target"].append(b["landmarks"])
        keep["vis"].append(b["visibility"])
        keep["pose"].append(b["pose"])
        keep["identity"].append(b["identity"])
        keep["theta"].append(theta.cpu())
        keep["masked"].append(out["masked"].float().cpu())
        keep["mask"].append(out["mask"].float().cpu())
        if "theta" in b:
            keep["gt_theta"].append(b["theta"])
    return {k: torch.cat(v) for k, v in keep.items() if v}


def evaluate_predictions(p: dict, stn, vertices, image_size: int) -> dict:
    """All metrics from :func:`predict`'s output (see the module docstring)."""
    from ..nets.head import start_theta
    from ..training.data.pose import pose_from_theta

    yaw_gt = p["pose"][:, 0].numpy()
    pred_pose = pose_from_theta(p["theta"].double()).float()
    if not np.isfinite(yaw_gt).any() and "gt_theta" in p:
        yaw_gt = pose_from_theta(p["gt_theta"].double())[:, 0].numpy()
    res = {"images": int(len(p["pred"]))}
    res["nme"] = bucketed(nme(p["pred"], p["target"], p["vis"]).numpy(), yaw_gt)
    # baselines
    start = start_theta(stn.n_id, stn.n_exp, image_size, dtype=stn.mean.dtype)[None].to(stn.mean.device)
    vidx = torch.as_tensor(vertices, dtype=torch.long, device=stn.mean.device)
    mean_face = stn.geometry(start).points[0, vidx].float().cpu()
    res["nme_mean_face"] = bucketed(nme(mean_face.expand_as(p["pred"]), p["target"], p["vis"]).numpy(), yaw_gt)
    layout = torch.nanmean(torch.where(p["vis"][..., None] > 0, p["target"], torch.full_like(p["target"], float("nan"))), 0)
    res["nme_mean_layout"] = bucketed(nme(torch.nan_to_num(layout).expand_as(p["pred"]), p["target"],
                                          p["vis"]).numpy(), yaw_gt)
    gt_pose = p["pose"].numpy()
    if np.isfinite(gt_pose).all(1).any() or "gt_theta" in p:
        if not np.isfinite(gt_pose).all(1).any():
            gt_pose = pose_from_theta(p["gt_theta"].double()).numpy()
        err = np.abs(pred_pose.numpy() - gt_pose)
        err = np.minimum(err, 360 - err)
        ok = np.isfinite(err).all(1)
        res["pose_mae_deg"] = {k: float(err[ok, i].mean()) for i, k in enumerate(("yaw", "pitch", "roll"))}
        res["pose_mae_deg"]["mean"] = float(err[ok].mean())
    # flattened consistency across views of one identity (never a flip with an unflipped image:
    # p["group"], from batches.dataset_pair_groups), and symmetry
    ids = (p["group"] if "group" in p else p["identity"]).numpy()
    cons = []
    for i in np.unique(ids[ids >= 0]):
        js = np.where(ids == i)[0]
        for a in range(len(js)):
            for b in range(a + 1, len(js)):
                cons.append(_mad_visible(p["masked"][js[a]], p["masked"][js[b]], p["mask"][js[a]], p["mask"][js[b]]))
    res["flattened_consistency_mad"] = float(np.nanmean(cons)) if cons else float("nan")
    sym = [_mad_visible(p["masked"][k], p["masked"][k].flip(-1), p["mask"][k], p["mask"][k].flip(-1))
           for k in range(len(ids))]
    res["symmetry_mad"] = float(np.nanmean(sym))
    return res


def format_table(res: dict) -> str:
    """A human-readable table of :func:`evaluate_predictions`' result."""
    rows = [("", "0-30", "30-60", "60-90", "bucket mean", "all")]
    for name, key in (("NME % (localiser)", "nme"), ("NME % (mean face, start pose)", "nme_mean_face"),
                      ("NME % (mean landmark layout)", "nme_mean_layout")):
        r = res[key]
        rows.append((name,) + tuple(f"{r[k]:.2f}" if np.isfinite(r[k]) else "n/a"
                                    for k in ("0-30", "30-60", "60-90", "bucket_mean", "all")))
    r = res["nme"]
    rows.append(("images",) + tuple(str(r[f"n_{k}"]) for k in ("0-30", "30-60", "60-90")) + ("", str(res["images"])))
    w = [max(len(x[i]) for x in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(row)) for row in rows]
    if r.get("empty_buckets"):
        lines.append(f"n/a: no images with |yaw| in {', '.join(r['empty_buckets'])} degrees; the bucket mean "
                     "(AFLW2000-3D protocol) needs all three")
    if "pose_mae_deg" in res:
        pm = res["pose_mae_deg"]
        lines.append(f"pose MAE: yaw {pm['yaw']:.2f}, pitch {pm['pitch']:.2f}, roll {pm['roll']:.2f}, "
                     f"mean {pm['mean']:.2f} degrees")
    lines.append(f"flattened consistency across views (mean |diff|, 0-255): {res['flattened_consistency_mad']:.2f}")
    lines.append(f"symmetry error (mean |flattened - mirror|, 0-255): {res['symmetry_mad']:.2f}")
    return "\n".join(lines)


def load_localiser(checkpoint, device="cpu"):
    """(localiser, config) from a training checkpoint (``weights_only=True``). A damaged
    checkpoint (missing keys, weights that do not fit the network its configuration describes)
    raises ValueError naming the file and the problem."""
    from ..nets.localiser import build_localiser
    from ..training.checkpoints import load_checkpoint, load_weights
    from ..training.config import config_from_checkpoint

    ck = load_checkpoint(checkpoint)
    cfg = config_from_checkpoint(ck["config"], str(checkpoint))
    loc = cfg["localiser"]
    try:
        net = build_localiser(loc["backbone"], n_id=int(cfg["model"]["n_id"]), n_exp=int(cfg["model"]["n_exp"]),
                              image_size=int(loc["image_size"]), norm=loc["norm"] or None, width=loc["width"],
                              pretrained=None)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{checkpoint}: its configuration does not describe a localiser ({e})") from None
    load_weights(net, ck["model"], checkpoint, what=f"the {loc['backbone']} localiser its configuration describes")
    return net.to(device).eval(), cfg


def checkpoint_fitter(checkpoint, model, device="cpu", passes: int = 2, mirror: bool = True, shift: int = 0,
                      refiner=None):
    """A training checkpoint's localiser as a :class:`~stn3dmm.fitting.localiser.LocaliserFitter`
    (read with ``weights_only=True``; no face-box calibration, which only a shipped card has);
    ``refiner``: a network for one more pass after the cascade (:func:`refiner_option`; True or False:
    none, a checkpoint has no package refiner)."""
    from ..fitting.localiser import LocaliserFitter

    net, cfg = load_localiser(checkpoint, device)
    return LocaliserFitter(net, model, int(cfg["model"]["n_id"]), int(cfg["model"]["n_exp"]), passes=passes,
                           mirror=mirror, shift=shift, device=device,
                           refiner=None if isinstance(refiner, bool) else refiner)


def refiner_option(value: str | None, device="cpu"):
    """The refiner a ``--refiner`` option names: None or ``""``: True (the package's, where it
    holds one); ``"none"``: False (the localiser alone); else a training checkpoint's
    network (read with ``weights_only=True``)."""
    if not value:
        return True
    if value.lower() == "none":
        return False
    return load_localiser(value, device)[0]


def evaluate_checkpoint(checkpoint, data_spec: dict, out=None, batch=32, device="auto", log=print,
                        progress: bool = True) -> dict:
    """Evaluate a checkpoint on a data set described like a [data] config section, on ``device``
    (``"auto"``: CUDA when available); ``progress``: progress bars while the data set is built."""
    from ..model.store import load_model
    from ..stn import MorphableSTN
    from ..training.batches import build_dataset, dataset_pair_groups
    from ..training.data.sample import landmark_vertices
    from ..training.config import check_data
    from ..training.loop import resolve_device

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"--batch (images per forward pass) must be at least 1, got {batch!r}")
    device = resolve_device(device)
    net, cfg = load_localiser(checkpoint, device)
    spec = dict(cfg["data"], **data_spec)
    check_data(spec, path_option="--path")
    model = load_model(cfg["model"]["path"] or None, log=log)
    size = int(cfg["localiser"]["image_size"])
    ds = build_dataset(spec, model, int(spec.get("size") or 0) or size, spec.get("landmark_set", "aflw21"),
                       progress=progress)
    verts = torch.as_tensor(landmark_vertices(model, ds.landmark_set), dtype=torch.long)
    stn = MorphableSTN(model, visibility=cfg["stn"]["visibility"], landmarks=None, n_id=int(cfg["model"]["n_id"]),
                       n_exp=int(cfg["model"]["n_exp"]), max_outside=None).to(device)
    p = predict(net, stn, ds, verts, batch=batch, device=device)
    groups = dataset_pair_groups(ds)
    if groups is not None:
        p["group"] = torch.as_tensor(np.asarray(groups, dtype=np.int64))
    res = evaluate_predictions(p, stn, verts, size)
    res["checkpoint"], res["data"] = str(checkpoint), {k: v for k, v in spec.items()}
    if out:
        from ..core.paths import write_bytes_atomically

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(Path(out), json.dumps(strict_json(res), indent=1, allow_nan=False).encode())
    return res
