"""The landmark-alignment protocol of the field (AFLW2000-3D's): NME, |yaw| buckets, pose error.

* **NME** (%): the mean over the landmarks of the 2-D distance between predicted and labelled
  points, divided by sqrt(w h) of the labelled landmarks' bounding box (:func:`nme`).
* **Buckets** of |yaw| in degrees: [0, 30), [30, 60) and [60, inf): faces turned beyond 90
  degrees count in the last bucket, as the published AFLW2000-3D numbers count them; the
  protocol's headline is the unweighted mean of the three buckets (:func:`bucketed`).
* **Pose error**: absolute differences of yaw, pitch and roll, wrapped to [0, 180] degrees
  (:func:`angle_error`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: |yaw| buckets in degrees; the last one is open: |yaw| > 90 counts in 60-90.
BUCKETS = ((0, 30), (30, 60), (60, math.inf))


def _name(lo, hi) -> str:
    return f"{lo}-{90 if math.isinf(hi) else int(hi)}"


def nme(pred: torch.Tensor, target: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """(B,) normalised mean error in % (see the module docstring); NaN with < 2 visible points."""
    used = (vis > 0) & torch.isfinite(target).all(-1)
    big = torch.where(used[..., None], target, torch.full_like(target, float("inf")))
    small = torch.where(used[..., None], target, torch.full_like(target, float("-inf")))
    wh = (small.amax(1) - big.amin(1)).clamp_min(1e-6)
    norm = wh.prod(-1).sqrt()
    d = torch.where(used, (pred - torch.nan_to_num(target)).norm(dim=-1), torch.zeros_like(vis))
    n = used.sum(1)
    out = 100 * d.sum(1) / n.clamp_min(1) / norm
    return torch.where(n >= 2, out, torch.full_like(out, float("nan")))


def bucketed(values: np.ndarray, yaw: np.ndarray) -> dict:
    """Mean of ``values`` per |yaw| bucket, their unweighted mean, and the overall mean.

    An empty bucket is NaN (``n_<bucket>`` = 0) and so is ``bucket_mean`` then: the
    protocol's mean needs all three buckets (``empty_buckets`` lists the empty ones)."""
    out = {}
    for lo, hi in BUCKETS:
        m = (np.abs(yaw) >= lo) & (np.abs(yaw) < hi) & np.isfinite(values)
        out[_name(lo, hi)] = float(values[m].mean()) if m.any() else float("nan")
        out[f"n_{_name(lo, hi)}"] = int(m.sum())
    b = [out[k] for k in bucket_names()]
    out["empty_buckets"] = [k for k in bucket_names() if not out[f"n_{k}"]]
    out["bucket_mean"] = float(np.mean(b)) if not out["empty_buckets"] else float("nan")
    out["all"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out


def bucket_names() -> list[str]:
    """["0-30", "30-60", "60-90"]: the buckets' names in results (the last is open above)."""
    return [_name(lo, hi) for lo, hi in BUCKETS]


def angle_error(pred, target) -> np.ndarray:
    """|pred - target| in degrees, wrapped into [0, 180] (359 and 1 are 2 apart)."""
    d = np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(target, dtype=np.float64)) % 360.0
    return np.minimum(d, 360.0 - d)


def strict_json(x):
    """NaN and inf (an empty yaw bucket, an undefined mean) become null: strict JSON for scripts."""
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
