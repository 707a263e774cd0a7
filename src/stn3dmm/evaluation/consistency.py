"""Dense correspondence on real photos: how alike one person's flattened textures are, against different people's.

Owns :func:`consistency_people` (the held-out people and photos scored) and
:func:`texture_consistency` (``stn3dmm evaluate --data lfw-consistency``).

For each flattening method, every photo's main face is flattened (raw RGB, 0-255). Within:
the mean absolute difference between two photos of one person over the texels visible in both,
averaged over every pair of a person's photos and then over people. Between: the same for photo
``k`` of one person against photo ``k`` of another, over every pair of people. A method whose
textures are in better correspondence has a lower within/between ratio: identity explains more of
the difference. Photos whose face is not found are left out and counted.

People: those held out from training by :func:`stn3dmm.training.data.fitted.held_out` (every
10th name in sorted order) with at least ``photos`` photos, the first ``people`` of them in
sorted order, each with its first ``photos`` photos in sorted order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def consistency_people(root, people: int = 30, photos: int = 6) -> list[tuple[str, list[Path]]]:
    """[(name, photo paths)] of the people scored (module docstring)."""
    from ..photos.io import IMAGE_EXTENSIONS
    from ..training.data.fitted import held_out

    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder of people (one sub-folder of photos per person)")
    names = sorted(d.name for d in root.iterdir() if d.is_dir())
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    out = []
    for name, val in zip(names, held_out(names)):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in exts)
        if val and len(files) >= photos:
            out.append((name, files[:photos]))
        if len(out) == people:
            break
    if len(out) < 2:
        raise ValueError(f"{root}: fewer than 2 held-out people with {photos} photos each")
    return out


def _mad(a, ma, b, mb) -> float:
    both = (ma > 0.5) & (mb > 0.5)
    return float(np.abs(a[both] - b[both]).mean() * 255) if both.any() else float("nan")


def texture_consistency(flattener, people: list, progress: bool = True) -> dict:
    """Within / between mean absolute differences and their ratio for one :class:`Flattener`."""
    from tqdm import tqdm

    from ..flatten.pipeline import flatten_main_face
    from ..photos import read_photo

    tex = {}
    missing = []
    for name, files in tqdm(people, desc="flatten", unit="person", disable=not progress, dynamic_ncols=True):
        for k, f in enumerate(files):
            try:
                r = flatten_main_face(flattener, read_photo(f).image)
            except ValueError as e:
                missing.append((str(f), str(e)))
                continue
            tex[(name, k)] = (r.flattened, r.mask)
    within, between = [], []
    names = [n for n, _ in people]
    n_photos = len(people[0][1])
    for n in names:
        ks = [k for k in range(n_photos) if (n, k) in tex]
        pair = [_mad(*tex[(n, a)], *tex[(n, b)]) for i, a in enumerate(ks) for b in ks[i + 1:]]
        if pair:
            within.append(np.nanmean(pair))
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for k in range(n_photos):
                if (a, k) in tex and (b, k) in tex:
                    between.append(_mad(*tex[(a, k)], *tex[(b, k)]))
    w, b = float(np.nanmean(within)), float(np.nanmean(between))
    return {"within": w, "between": b, "ratio": w / b, "people": len(people), "photos": len(tex),
            "not_flattened": missing}


def format_consistency(results: dict) -> str:
    """A table of :func:`texture_consistency` results by method."""
    lines = [f"{'flattened textures, mean |diff| 0-255':40} {'within':>8} {'between':>8} {'ratio':>7} {'photos':>7}"]
    for name, r in results.items():
        lines.append(f"{name:40} {r['within']:8.2f} {r['between']:8.2f} {r['ratio']:7.3f} {r['photos']:7d}")
    return "\n".join(lines)


__all__ = ["consistency_people", "texture_consistency", "format_consistency"]
