"""``stn3dmm average``: the visibility-weighted mean of many flattened textures of one person,
or one such mean for each folder of a tree (``--by-folder``, one folder per person).

Reads RGBA texture PNGs written by ``stn3dmm flatten`` (alpha = visibility), averages them
with :func:`stn3dmm.stn.texture.weighted_average`, and writes the mean (RGBA, alpha = pixels seen
at least once) and a coverage map (how many photos saw each pixel).

:func:`average_folder` averages the textures of one folder into the files it is given.
:func:`average_tree` walks a tree (as ``stn3dmm flatten people/ --out flat`` writes it, one
folder per person) and writes, for each folder that holds textures itself, ``<folder>_mean.png``
and ``<folder>_mean_coverage.png`` into the output folder, under the same parent folders as in
the tree (so ``flat/Name/`` gives ``means/Name_mean.png``): the means of a whole data set lie
side by side, named after the people, as the original's teaser showed them. A folder is one
person, and in a photo of them with others their face is the main one, face 0; so the tree's
default pattern takes face 0 of each photo only (:data:`TREE_PATTERN`), keeping the faces of
people behind them out of their mean.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..stn.texture import weighted_average

#: What :func:`average_folder` averages by default: every texture in the folder.
FOLDER_PATTERN = "*_texture.png"
#: What :func:`average_tree` averages by default: face 0 (the main face) of each photo of the person.
TREE_PATTERN = "*_face0_texture.png"


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


def _coverage_path(out: Path) -> Path:
    return out.with_name(out.stem + "_coverage.png")


def _write_mean(paths, out: Path, log) -> tuple[int, int, np.ndarray] | None:
    """Average ``paths`` into ``out`` and its coverage map: (textures used, skipped, seen
    counts), or None when none is usable (nothing written; the skipped files logged)."""
    from ..photos import write_png_atomic

    cols, alphas, skipped = read_textures(paths)
    for p, why in skipped:
        log(f"skipped {p}: {why}")
    if len(cols) == 0:
        return None
    mean, _ = weighted_average(cols, alphas)
    seen = (alphas > 0.5).sum(0)[0].numpy()
    rgba = np.concatenate([mean.permute(1, 2, 0).numpy(), (seen > 0)[..., None].astype(np.float32)], -1)
    write_png_atomic(out, (rgba * 255 + 0.5).astype(np.uint8))
    write_png_atomic(_coverage_path(out), coverage_image(seen.astype(np.float64), len(cols)))
    return len(cols), len(skipped), seen


def average_folder(folder, out, pattern=FOLDER_PATTERN, overwrite=False, log=print) -> list[Path]:
    """The mean of the textures matching ``pattern`` directly in ``folder``, written to ``out``
    and ``<out stem>_coverage.png`` beside it; returns the two paths. ValueError when the folder
    holds no usable texture or an output exists without ``overwrite``."""
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    paths = sorted(folder.glob(pattern))
    if not paths:
        deeper = next(folder.rglob(pattern), None) is not None
        raise ValueError(f"{folder}: no files match {pattern!r} "
                         + ("in the folder itself, only in its sub-folders (use --by-folder for one mean per folder)"
                            if deeper else "(run stn3dmm flatten first)"))
    cov_path = _coverage_path(out)
    for p in (out, cov_path):
        if p.exists() and not overwrite:
            raise ValueError(f"{p} exists (use --overwrite)")
    done = _write_mean(paths, out, log)
    if done is None:
        raise ValueError(f"{folder}: none of the {len(paths)} files is a usable texture")
    n, n_skipped, seen = done
    log(f"averaged {n} textures ({n_skipped} skipped); pixels seen by every photo: "
        f"{100 * (seen == n).mean():.0f}%, by none: {100 * (seen == 0).mean():.0f}%")
    return [out, cov_path]


@dataclass
class TreeAverage:
    """What :func:`average_tree` did: the means written, those kept (they existed), and the
    folders whose textures were all unusable (folder, reason)."""

    written: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    textures: int = 0


def _texture_folders(root: Path, pattern: str) -> list:
    """(folder, sorted texture paths) for each folder under ``root`` (itself included, hidden
    ones not) that directly holds files matching ``pattern``, in sorted order."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = sorted(f for f in files if fnmatch.fnmatch(f, pattern) and not f.startswith("."))
        if names:
            found.append((Path(folder), [Path(folder) / f for f in names]))
    return found


def average_tree(root, out_dir, pattern=TREE_PATTERN, overwrite=False, log=print) -> TreeAverage:
    """One mean per folder of the tree under ``root`` that holds textures itself (see the
    module docstring for the names): ``out_dir/<parents>/<folder>_mean.png`` and its
    ``_mean_coverage.png``. Existing means are kept unless ``overwrite``; a folder without a
    usable texture is reported and skipped. ValueError when no folder holds a texture."""
    root, out_dir = Path(root), Path(out_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    folders = _texture_folders(root, pattern)
    if not folders:
        raise ValueError(f"{root}: no folder in this tree holds files matching {pattern!r} (run stn3dmm flatten first)")
    res, taken = TreeAverage(), set()
    for folder, paths in folders:
        rel = folder.relative_to(root)
        name = folder.name if rel.parts else (root.resolve().name or "root")
        out = out_dir / rel.parent / f"{name}_mean.png"
        k = 2
        while out in taken:                       # the root and a top folder of the same name
            out, k = out.with_name(f"{name}-{k}_mean.png"), k + 1
        taken.add(out)
        if not overwrite and out.exists() and _coverage_path(out).exists():
            res.kept.append(out)
            continue
        done = _write_mean(paths, out, log)
        if done is None:
            res.problems.append((folder, f"none of its {len(paths)} files is a usable texture"))
            continue
        res.written.append(out)
        res.textures += done[0]
    log(f"wrote {len(res.written)} mean(s) of {res.textures} textures, one per folder"
        + (f"; kept {len(res.kept)} that exist (--overwrite replaces them)" if res.kept else ""))
    for folder, why in res.problems:
        log(f"  {folder}: {why}")
    return res
