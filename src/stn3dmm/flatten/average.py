"""``stn3dmm average``: the visibility-weighted mean of many flattened textures of one person.

Reads RGBA texture PNGs written by ``stn3dmm flatten`` (alpha = visibility), averages them
with :func:`stn3dmm.stn.texture.weighted_average`, and writes the mean (RGBA, alpha = pixels seen
at least once) and a coverage map (how many photos saw each pixel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..stn.texture import weighted_average


def read_textures(paths) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(N, 3, R, R) colours, (N, 1, R, R) alphas in [0, 1], and the list of skipped files
    (path, reason); all kept textures must share one size."""
    from PIL import Image

    cols, alphas, skipped, size = [], [], [], None
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                if im.mode != "RGBA":
                    skipped.append((p, f"mode {im.mode}, expected an RGBA texture from stn3dmm flatten"))
                    continue
                a = np.asarray(im, dtype=np.float32) / 255.0
        except (OSError, ValueError) as e:
            skipped.append((p, f"unreadable ({e})"))
            continue
        if size is None:
            size = a.shape
        if a.shape != size:
            skipped.append((p, f"size {a.shape[1]}x{a.shape[0]} differs from {size[1]}x{size[0]}"))
            continue
        cols.append(torch.from_numpy(a[..., :3]).permute(2, 0, 1))
        alphas.append(torch.from_numpy(a[..., 3:]).permute(2, 0, 1))
    if not cols:
        return torch.zeros(0), torch.zeros(0), skipped
    return torch.stack(cols), torch.stack(alphas), skipped


def coverage_image(cov: np.ndarray, n: int) -> np.ndarray:
    """(R, R) counts -> (R, R, 3) uint8 colour map (viridis), 0 = never seen."""
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    rgb = cmap(np.clip(cov / max(n, 1), 0, 1))[..., :3]
    rgb[cov <= 0] = 0
    return (rgb * 255 + 0.5).astype(np.uint8)


def average_folder(folder, out, pattern="*_texture.png", overwrite=False, log=print) -> list[Path]:
    from ..photos import write_png_atomic

    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    paths = sorted(folder.glob(pattern))
    if not paths:
        raise ValueError(f"{folder}: no files match {pattern!r} (run stn3dmm flatten first)")
    cov_path = out.with_name(out.stem + "_coverage.png")
    for p in (out, cov_path):
        if p.exists() and not overwrite:
            raise ValueError(f"{p} exists (use --overwrite)")
    cols, alphas, skipped = read_textures(paths)
    for p, why in skipped:
        log(f"skipped {p}: {why}")
    if len(cols) == 0:
        raise ValueError(f"{folder}: none of the {len(paths)} files is a usable texture")
    mean, cov = weighted_average(cols, alphas)
    seen = (alphas > 0.5).sum(0)[0].numpy()
    rgba = np.concatenate([mean.permute(1, 2, 0).numpy(), (seen > 0)[..., None].astype(np.float32)], -1)
    write_png_atomic(out, (rgba * 255 + 0.5).astype(np.uint8))
    write_png_atomic(cov_path, coverage_image(seen.astype(np.float64), len(cols)))
    log(f"averaged {len(cols)} textures ({len(skipped)} skipped); pixels seen by every photo: "
        f"{100 * (seen == len(cols)).mean():.0f}%, by none: {100 * (seen == 0).mean():.0f}%")
    return [out, cov_path]
