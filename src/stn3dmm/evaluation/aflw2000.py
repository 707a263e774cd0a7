"""AFLW2000-3D, the field's standard benchmark of 3-D face alignment, scored as the papers score it.

AFLW2000-3D (Zhu et al., CVPR 2016) is 2,000 photos with 68 landmarks and a fitted pose. It is
a test set: stn3dmm never trains, tunes or selects anything on it. This module owns reading
its files (:func:`load_aflw2000`), scoring predictions on all of its faces (:func:`score`),
the published numbers (:data:`PUBLISHED`) and the table that puts ours beside them
(:func:`format_table`). The protocol itself is :mod:`.protocol`'s.

Pixel conventions: our predictions are 0-based (pixel centres at integers). The original
fitted landmarks (``pt3d_68``) are 1-based and are shifted by one pixel here, and so are the
face boxes, which 3DDFA computed from them (a square of sqrt(2) times the longer side of the
landmarks' box, on the same centre); the re-annotated landmarks, which the published numbers
use, are taken as they are, as 0-based.

Faces not found count: every face gets a prediction. A method that does not find a face by
itself scores it from the benchmark's own face box (``AFLW2000-3D_crop.roi_box.npy``, the box
3DDFA crops with), as the published methods are scored, and the table reports how many faces
each bucket found.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .protocol import angle_error, bucket_names, bucketed, nme

#: NME % on AFLW2000-3D (68 points, re-annotated), |yaw| buckets 0-30, 30-60, 60-90 and their
#: mean, as the papers report them.
PUBLISHED = {
    "3DDFA_V2 (Guo et al. 2020)": (2.63, 3.42, 4.48, 3.51),
    "SynergyNet (Wu et al. 2021)": (2.65, 3.30, 4.27, 3.41),
    "PRNet (Feng et al. 2018)": (2.75, 3.51, 4.61, 3.62),
    "3DSTN (Bhagavatula et al. 2017)": (3.15, 4.33, 5.98, 4.49),
}
#: The field's pose protocol (FSA-Net, Yang et al. 2019) scores the faces whose labelled pitch, yaw
#: and roll all lie within this many degrees (1,969 of the 2,000).
FIELD_POSE_LIMIT = 99.0
#: 3DDFA's face box is a square of sqrt(2) times the longer side of the landmarks' box.
ROI_TO_FACE = 1.0 / math.sqrt(2.0)


class BenchmarkError(ValueError):
    """The benchmark's files are missing or malformed."""


@dataclass
class Aflw2000:
    """The benchmark's ground truth, in our pixel convention (x right, y down, 0-based).

    Attributes:
        root: the folder (``images/``, ``gt/``).
        names: (N,) image file names.
        reannotated: (N, 68, 2) the re-annotated landmarks the published numbers use.
        original: (N, 68, 2) the original fitted landmarks (``pt3d_68``'s x, y).
        abs_yaw: (N,) |yaw| in degrees, for the buckets.
        roi: (N, 4) 3DDFA's face boxes, x0, y0, x1, y1 (0-based like the rest).
    """

    root: Path
    names: list
    reannotated: np.ndarray
    original: np.ndarray
    abs_yaw: np.ndarray
    roi: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def image_path(self, i: int) -> Path:
        return self.root / "images" / self.names[i]

    def pose_para(self, i: int) -> np.ndarray:
        """(3,) the image's labelled ``Pose_Para`` angles as they are: pitch, yaw, roll in degrees."""
        import scipy.io

        mat = self.image_path(i).with_suffix(".mat")
        try:
            p = np.asarray(scipy.io.loadmat(mat)["Pose_Para"], dtype=np.float64).reshape(-1)[:3]
        except (OSError, KeyError, ValueError) as e:
            raise BenchmarkError(f"{mat}: cannot read Pose_Para ({e})") from None
        if p.shape != (3,):
            raise BenchmarkError(f"{mat}: Pose_Para has {p.size} values, expected at least 3")
        return np.degrees(p)

    def pose(self, i: int) -> np.ndarray:
        """(3,) yaw, pitch, roll in degrees, in our convention, from the image's ``Pose_Para``."""
        from ..stn.pose import pose_from_pose_para

        return pose_from_pose_para(*np.radians(self.pose_para(i))).numpy().reshape(3)

    def face_square(self, i: int) -> np.ndarray:
        """(4,) the face's own square inside the benchmark box: the box shrunk about its centre
        by :data:`ROI_TO_FACE`."""
        b = self.roi[i].astype(np.float64)
        c, half = (b[:2] + b[2:]) / 2, (b[2:] - b[:2]).max() / 2 * ROI_TO_FACE
        return np.concatenate([c - half, c + half])


def default_aflw2000() -> Path:
    """``$STN3DMM_SHARED/data/aflw2000-3d``, else ``../shared/data/aflw2000-3d`` (not shipped)."""
    shared = os.environ.get("STN3DMM_SHARED")
    return (Path(shared) / "data" if shared else Path("../shared/data")) / "aflw2000-3d"


def _load(path: Path, shape_tail: tuple, n: int | None = None) -> np.ndarray:
    if not path.is_file():
        raise BenchmarkError(f"{path}: missing (see the benchmark's README for its files)")
    a = np.load(path, allow_pickle=False)
    if a.shape[1:] != shape_tail or (n is not None and len(a) != n):
        raise BenchmarkError(f"{path}: shape {a.shape}, expected ({n or 'N'}, {', '.join(map(str, shape_tail))})")
    return a


def load_aflw2000(root) -> Aflw2000:
    """Read the benchmark's ground truth from ``root`` (``images/`` and ``gt/``)."""
    root = Path(root)
    names_file = root / "gt" / "image_names.txt"
    if not names_file.is_file():
        raise BenchmarkError(f"{root}: not an AFLW2000-3D folder (no gt/image_names.txt); name it with --path "
                             "(the data are not shipped with stn3dmm)")
    names = names_file.read_text().split()
    n = len(names)
    re68 = _load(root / "gt" / "AFLW2000-3D-Reannotated.pts68.npy", (2, 68), n)
    orig = _load(root / "gt" / "AFLW2000-3D.pts68.npy", (3, 68), n)
    yaw = _load(root / "gt" / "AFLW2000-3D.pose.npy", (), n)
    roi = _load(root / "gt" / "AFLW2000-3D_crop.roi_box.npy", (4,), n)
    return Aflw2000(root=root, names=names, reannotated=re68.transpose(0, 2, 1).astype(np.float64),
                    original=orig[:, :2].transpose(0, 2, 1).astype(np.float64) - 1.0,
                    abs_yaw=np.abs(yaw.astype(np.float64)), roi=roi.astype(np.float64) - 1.0)


def spread_subset(bench: Aflw2000, per_bucket: int) -> np.ndarray:
    """Indices of ``per_bucket`` images from each |yaw| bucket, evenly spread through the file
    order (a fixed subset for quick runs and tests; no image is chosen by its score)."""
    out = []
    for k, name in enumerate(bucket_names()):
        lo, hi = (0, 30, 60)[k], (30, 60, math.inf)[k]
        idx = np.nonzero((bench.abs_yaw >= lo) & (bench.abs_yaw < hi))[0]
        take = np.linspace(0, len(idx) - 1, min(per_bucket, len(idx))).round().astype(int)
        out.append(idx[take])
    return np.sort(np.concatenate(out))


def _nme(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    t = torch.as_tensor(target, dtype=torch.float64)
    return nme(torch.as_tensor(pred, dtype=torch.float64), t, torch.ones(t.shape[:2], dtype=torch.float64)).numpy()


def score(bench: Aflw2000, idx, pred: np.ndarray, found: np.ndarray, pose: np.ndarray | None = None) -> dict:
    """The protocol's figures for predictions on the images ``idx``.

    Args:
        bench: the benchmark.
        idx: (M,) image indices.
        pred: (M, 68, 2) predicted landmarks, photo pixels, 0-based.
        found: (M,) whether the method found the face by itself.
        pose: (M, 3) predicted yaw, pitch, roll in degrees (our convention), or None.

    Returns:
        dict with ``nme`` (re-annotated) and ``nme_original`` (:func:`.protocol.bucketed`), the
        same over the found faces only (``nme_found``), ``found`` per bucket (count and total),
        and :func:`pose_scores`'s figures when ``pose`` is given.
    """
    idx = np.asarray(idx)
    yaw = bench.abs_yaw[idx]
    e_re = _nme(pred, bench.reannotated[idx])
    res = {"images": int(len(idx)), "nme": bucketed(e_re, yaw),
           "nme_original": bucketed(_nme(pred, bench.original[idx]), yaw),
           "nme_found": bucketed(np.where(found, e_re, np.nan), yaw),
           "found": bucketed(found.astype(np.float64), yaw), "per_image_nme": e_re.tolist()}
    if pose is not None:
        res.update(pose_scores(bench, idx, pose))
    return res


def pose_scores(bench: Aflw2000, idx, pose: np.ndarray) -> dict:
    """Pose MAE and the |yaw| bias beyond 60 degrees of predicted poses ``(M, 3)`` (yaw, pitch,
    roll in degrees, our convention) on the images ``idx``, two ways:

    - ``pose_mae_field_deg``, ``yaw_bias_above_60_field_deg``: as the published pose MAEs are
      computed (FSA-Net, Yang et al. 2019, and SynergyNet's benchmark after it): the angles in the
      benchmark's own ``Pose_Para`` convention (ours converted by
      :func:`~stn3dmm.stn.pose.pose_para_from_pose`), plain differences, over the faces whose three
      labelled angles all lie within :data:`FIELD_POSE_LIMIT` degrees (``faces``: how many);
    - ``pose_mae_deg``, ``yaw_bias_above_60_deg``: both sides in our convention
      (:data:`~stn3dmm.stn.pose.POSE_CONVENTION`), differences wrapped, over every face.

    ``bench`` gives ``pose_para(i)`` (AFLW2000-3D's labels) or only ``pose(i)`` in our
    convention (a set of renders; its field angles are converted from those).
    """
    from ..stn.pose import pose_from_pose_para, pose_para_from_pose

    idx, pose = np.asarray(idx), np.asarray(pose, dtype=np.float64)
    yaw = bench.abs_yaw[idx]
    if hasattr(bench, "pose_para"):           # AFLW2000-3D's labels as they are
        labelled = np.stack([bench.pose_para(int(i)) for i in idx]).reshape(-1, 3)
        gt = pose_from_pose_para(*torch.as_tensor(np.radians(labelled)).unbind(-1)).numpy()
    else:                                     # a set labelled in our convention (renders)
        gt = np.stack([bench.pose(int(i)) for i in idx]).reshape(-1, 3)
        labelled = pose_para_from_pose(gt).numpy()
    res = {"pose_mae_deg": _mae(angle_error(pose, gt), ("yaw", "pitch", "roll")),
           "yaw_bias_above_60_deg": yaw_bias(pose[:, 0], gt[:, 0], yaw)}
    theirs = pose_para_from_pose(pose).numpy()                    # pitch, yaw, roll
    keep = np.all(np.abs(labelled) <= FIELD_POSE_LIMIT, axis=1)
    res["pose_mae_field_deg"] = _mae(np.abs(theirs - labelled)[keep], ("pitch", "yaw", "roll"))
    res["pose_mae_field_deg"]["faces"] = int(keep.sum())
    res["yaw_bias_above_60_field_deg"] = yaw_bias(theirs[:, 1], labelled[:, 1], np.where(keep, yaw, np.nan))
    return res


def _mae(err: np.ndarray, names: tuple) -> dict:
    out = {k: float(np.nanmean(err[:, j])) for j, k in enumerate(names)}
    out["mean"] = float(np.mean(list(out.values())))
    return out


def yaw_bias(pred_yaw: np.ndarray, gt_yaw: np.ndarray, abs_yaw: np.ndarray) -> float:
    """Mean of |predicted yaw| - |true yaw| over faces turned more than 60 degrees (negative:
    the fit turns them too little)."""
    m = (abs_yaw >= 60) & np.isfinite(pred_yaw)
    return float(np.mean(np.abs(pred_yaw[m]) - np.abs(gt_yaw[m]))) if m.any() else float("nan")


def _row(name: str, values) -> tuple:
    return (name,) + tuple("n/a" if not np.isfinite(v) else f"{v:.2f}" for v in values)


def _bucket_values(r: dict) -> list:
    return [r[k] for k in bucket_names()] + [r["bucket_mean"]]


def format_table(results: dict) -> str:
    """Ours (``results``: method name -> :func:`score` result) beside the published numbers."""
    rows = [("NME %, 68 points, re-annotated",) + tuple(bucket_names()) + ("mean",)]
    for name, r in results.items():
        rows.append(_row(name, _bucket_values(r["nme"])))
    for name, v in PUBLISHED.items():
        rows.append(_row(f"published: {name}", v))
    for name, r in results.items():
        f = r["found"]
        rows.append((f"faces found: {name}",) + tuple(
            f"{round(f[k] * f['n_' + k])}/{f['n_' + k]}" for k in bucket_names()) + (f"{r['images']} faces",))
    for name, r in results.items():
        rows.append(_row(f"{name}, vs original landmarks", _bucket_values(r["nme_original"])))
        rows.append(_row(f"{name}, found faces only", _bucket_values(r["nme_found"])))
    w = [max(len(x[i]) for x in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(row)) for row in rows]
    for name, r in results.items():
        if "pose_mae_deg" in r:
            lines.append(_pose_line(f"{name}, the field's protocol ({r['pose_mae_field_deg']['faces']} faces)",
                                    r["pose_mae_field_deg"], r["yaw_bias_above_60_field_deg"]))
            lines.append(_pose_line(f"{name}, our convention (all faces)", r["pose_mae_deg"],
                                    r["yaw_bias_above_60_deg"]))
    return "\n".join(lines)


def _pose_line(name: str, pm: dict, bias: float) -> str:
    return (f"{name}: pose MAE yaw {pm['yaw']:.2f}, pitch {pm['pitch']:.2f}, roll {pm['roll']:.2f}, "
            f"mean {pm['mean']:.2f} degrees; |yaw| bias above 60 degrees {bias:+.2f}")


__all__ = ["FIELD_POSE_LIMIT", "PUBLISHED", "ROI_TO_FACE", "Aflw2000", "BenchmarkError", "default_aflw2000",
           "format_table", "yaw_bias", "load_aflw2000", "pose_scores", "score", "spread_subset"]
