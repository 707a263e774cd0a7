"""Export of the synthetic data to disk in the landmark-folder format.

Owns :func:`item_name` (file stems) and :func:`export_synthetic` (``name.png`` + ``name.json``
pairs written through :func:`stn3dmm.training.data.folder.write_folder_item`, atomically, by background
threads, plus a ``synthetic.json`` manifest; an interrupted export resumes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .pose import POSE_CONVENTION, THETA_LAYOUT
from .synthetic import SyntheticConfig, SyntheticFaces
from ...core.defaults import LOCALISER_SIZE

def item_name(identity: int, view: int, prefix: str = "synth") -> str:
    """File stem of an exported item: ``<prefix>_<identity:06d>_<view:02d>``."""
    return f"{prefix}_{identity:06d}_{view:02d}"


def export_synthetic(out_dir, model, n_identities: int, views: int = 4, size: int = LOCALISER_SIZE, seed: int = 0,
                     landmark_set: str = "aflw21", progress: bool = True, *, identity_offset: int = 0,
                     batch_size: int = 32, overwrite: bool = False, prefix: str = "synth",
                     config: SyntheticConfig | None = None, device="cpu", writers: int = 4, log=None,
                     **options) -> dict:
    """Render a synthetic data set to ``out_dir`` in the landmark-folder format (:mod:`stn3dmm.training.data.folder`).

    Every item is written with :func:`~stn3dmm.training.data.folder.write_folder_item`: ``<name>.png``
    (RGB, 8 bit, the S x S STN input) and ``<name>.json`` with ``landmarks`` [[x, y], ...]
    (0-based px, y down), ``visibility`` [0/1, ...], ``identity`` (int), ``pose`` [yaw, pitch,
    roll] (degrees, :data:`POSE_CONVENTION`), ``landmark_set``, ``theta`` (:data:`THETA_LAYOUT`)
    and ``"cropped": true``; each file atomically (temporary file moved into place), by
    ``writers`` background threads while the next batch renders. ``<name>`` is :func:`item_name`. A manifest
    ``synthetic.json`` (no ``landmarks`` key, so readers ignore it) records the arguments and the
    configuration. Existing complete items are skipped unless ``overwrite`` (the output is
    deterministic, so an interrupted export resumes where it stopped). ``options`` override
    :class:`SyntheticConfig` fields.

    Returns:
        dict with ``written``, ``skipped``, ``seconds``, ``images_per_second``, ``out_dir``.
    """
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import asdict

    from tqdm import tqdm

    from ...core.paths import write_bytes_atomically
    from .folder import write_folder_item

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = SyntheticFaces(model, n_identities, views, size, seed, landmark_set, identity_offset=identity_offset,
                        config=config, batch_size=batch_size, device=device, log=log, **options)
    lset = landmark_set if isinstance(landmark_set, str) else [int(i) for i in ds.landmark_index]
    manifest = {"generator": "stn3dmm.training.data.synthetic_export.export_synthetic", "n_identities": int(n_identities),
                "views": int(views), "identity_offset": int(identity_offset), "size": int(size), "seed": int(seed),
                "landmark_set": lset, "items": len(ds), "name_pattern": f"{prefix}_<identity:06d>_<view:02d>",
                "model": str(model.source), "theta_layout": THETA_LAYOUT, "scale_map": "exp",
                "pose_convention": POSE_CONVENTION,
                "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(ds.config).items()}}
    write_bytes_atomically(out / "synthetic.json", json.dumps(manifest, separators=(",", ":")).encode())
    names = [item_name(*ds.identity_of(i), prefix=prefix) for i in range(len(ds))]
    todo = [i for i, n in enumerate(names)
            if overwrite or not ((out / f"{n}.png").exists() and (out / f"{n}.json").exists())]
    t0 = time.perf_counter()
    pending = []

    def write(items):
        for name, img, lm, vis, ident, pose, theta in items:
            write_folder_item(out, name, img, lm, vis, identity=ident, pose=pose, theta=theta, landmark_set=lset,
                              cropped=True)

    # the writer fsyncs every file: several threads overlap those waits (they release the GIL)
    with ThreadPoolExecutor(max_workers=writers) as pool, \
            tqdm(total=len(todo), desc="synthetic", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for lo in range(0, len(todo), batch_size):
            idx = todo[lo:lo + batch_size]
            b = ds.render_batch(idx)
            imgs = (b["image"].permute(0, 2, 3, 1) * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
            lms = np.round(b["landmarks"].double().cpu().numpy(), 4)
            vis = (b["visibility"].cpu().numpy() > 0.5).astype(np.float64)
            poses = np.round(b["pose"].double().cpu().numpy(), 4)
            thetas = b["theta"].double().cpu().numpy()
            items = [(names[i], imgs[k], lms[k], vis[k], int(b["identity"][k]), poses[k], thetas[k])
                     for k, i in enumerate(idx)]
            for w in range(writers):
                pending.append(pool.submit(write, items[w::writers]))
            while len(pending) > 2 * writers:
                pending.pop(0).result()
            bar.update(len(idx))
        for f in pending:
            f.result()
    dt = time.perf_counter() - t0
    return {"written": len(todo), "skipped": len(ds) - len(todo), "seconds": dt,
            "images_per_second": len(todo) / dt if dt > 0 else float("inf"), "out_dir": str(out)}


__all__ = ["item_name", "export_synthetic"]
