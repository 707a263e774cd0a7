"""The original demo's six photos: reading ``demodata.mat`` and serving it as a data set.

Owns :func:`default_demo_data` (where the file is looked for), :func:`read_demodata`
(``Images`` 224x224x3xB float 0..255, ``Labels`` 1x2x21xB as (x, y_up), 1-based; see
docs/paper.md, "The fitting demo"; returned in our convention) and :class:`DemoPhotos` (the
photos in the training sample format, for ``stn3dmm evaluate --data demo``). ``stn3dmm demo`` reads the file
through here too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ...core.conventions import points_from_original
from ...core.defaults import IMAGE_SIZE


def default_demo_data() -> Path:
    """``$STN3DMM_SHARED/data/demodata.mat``, else ``../shared/data/demodata.mat``."""
    shared = os.environ.get("STN3DMM_SHARED")
    return Path(shared) / "data" / "demodata.mat" if shared else Path("../shared/data/demodata.mat")


def read_demodata(path) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (B, 3, 224, 224) float in [0, 1], landmarks (B, 21, 2) ours: 0-based, y down)."""
    import scipy.io

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file (the original demo's demodata.mat: Images 224x224x3xB, "
                         "Labels 1x2x21xB); pass --data")
    try:
        d = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for non-.mat input
        raise ValueError(f"{path}: not a readable MATLAB file ({e})") from None
    for k in ("Images", "Labels"):
        if k not in d:
            raise ValueError(f"{path}: no variable {k!r} (found {sorted(x for x in d if not x.startswith('__'))})")
    img, lab = np.asarray(d["Images"], np.float32), np.asarray(d["Labels"], np.float64)
    if img.ndim != 4 or img.shape[2] != 3 or lab.shape[:3] != (1, 2, 21) or lab.shape[3] != img.shape[3]:
        raise ValueError(f"{path}: Images {img.shape} / Labels {lab.shape}; expected (H, W, 3, B) and (1, 2, 21, B)")
    images = torch.from_numpy(img.transpose(3, 2, 0, 1) / 255.0)
    labels = torch.from_numpy(lab[0].transpose(2, 1, 0).copy())     # (B, 21, 2) as (x, y_up), 1-based
    labels[~np.isfinite(labels.numpy()).all(-1)] = float("nan")
    return images, points_from_original(labels, img.shape[0])


class DemoPhotos(torch.utils.data.Dataset):
    """The demo's photos as a data set of the training sample format, cropped like the other
    readers (a square around the labelled AFLW-21 landmarks, :func:`stn3dmm.training.data.crop.landmark_square`),
    for ``stn3dmm evaluate --data demo``. Landmarks keep NaN where unlabelled."""

    landmark_set = "aflw21"
    identities = None

    def __init__(self, path=None, size: int = IMAGE_SIZE):
        from ...photos import crop_square
        from .crop import landmark_square
        from .sample import make_sample

        images, labels = read_demodata(path or default_demo_data())
        self.items = []
        for k in range(len(images)):
            lm = labels[k].numpy()
            centre, side = landmark_square(lm, "aflw21")
            crop, tr = crop_square(images[k], centre, side, size)
            self.items.append(make_sample(crop, tr.apply(lm), index=k))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


__all__ = ["default_demo_data", "read_demodata", "DemoPhotos"]
