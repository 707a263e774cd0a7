"""The training sample format shared by every reader (see :mod:`stn3dmm.training.data`)."""

from __future__ import annotations

import numpy as np
import torch

KEYS_REQUIRED = ("image", "landmarks", "visibility", "identity", "pose", "index")


def make_sample(image, landmarks, visibility=None, identity=-1, pose=None, index=0, theta=None) -> dict:
    """Build one sample dict with the right dtypes (missing landmarks: NaN, visibility 0)."""
    lm = torch.as_tensor(np.asarray(landmarks, dtype=np.float32))
    vis = torch.isfinite(lm).all(-1).float() if visibility is None else torch.as_tensor(
        np.asarray(visibility, dtype=np.float32))
    vis = torch.where(torch.isfinite(lm).all(-1), vis, torch.zeros_like(vis))
    img = torch.as_tensor(image, dtype=torch.float32)
    if img.ndim == 3 and img.shape[-1] == 3 and img.shape[0] != 3:
        img = img.permute(2, 0, 1)
    out = {"image": img.contiguous(), "landmarks": lm, "visibility": vis,
           "identity": torch.tensor(int(identity), dtype=torch.int64),
           "pose": torch.as_tensor(np.full(3, np.nan, np.float32) if pose is None else np.asarray(pose, np.float32)),
           "index": torch.tensor(int(index), dtype=torch.int64)}
    if theta is not None:
        out["theta"] = torch.as_tensor(np.asarray(theta, dtype=np.float32))
    return out


def collate(items: list[dict]) -> dict:
    """Stack sample dicts into a batch dict (keys present in every item)."""
    keys = set(items[0]).intersection(*items[1:]) if len(items) > 1 else set(items[0])
    return {k: torch.stack([it[k] for it in items]) for k in sorted(keys)
            if isinstance(items[0][k], torch.Tensor)}


def landmark_vertices(model, landmark_set) -> np.ndarray:
    """Model vertex indices (L,) of a data set's ``landmark_set`` (name or index array)."""
    if isinstance(landmark_set, str):
        if landmark_set not in model.landmarks:
            raise ValueError(f"the model has no landmark set {landmark_set!r} (it has {sorted(model.landmarks)})")
        return np.asarray(model.landmarks[landmark_set], dtype=np.int64)
    return np.asarray(landmark_set, dtype=np.int64)
