"""Training data plumbing: data sets from a [data] section, identity pairing groups, the batch schedule.

Owns :func:`build_dataset` (every data kind; synthetic prerendering shared between DDP ranks),
:func:`dataset_identities` / :func:`dataset_pair_groups` (who may be paired: flipped copies only
with flipped images), :class:`IdentityGroups` (computed once) and :func:`batch_indices` (the
global batch of a step, a pure function of its arguments), and :func:`fetch` (a collated batch).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch.distributed as dist

from .config import check_data

def build_dataset(spec: dict, model, size: int, landmark_set: str, progress: bool = True, distributed: bool = False):
    """A training or validation data set from a [data]/[val] section. With ``distributed``
    (an initialised process group), the processes share the synthetic prerendering.

    Raises:
        ValueError: an unknown kind, a kind that reads files without a path
            (:func:`~.config.check_data`), or a data set without one usable item (a missing or
            empty folder, say), naming the files left out and why.
    """
    check_data(spec)
    with warnings.catch_warnings(record=True) as caught:   # "left out" warnings: shown unless all were
        ds = _build(spec, model, size, landmark_set, progress, distributed)
    if len(ds):
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    else:
        from .data.crop import describe_bad

        bad = list(getattr(ds, "excluded", None) or [])
        why = f"; left out:\n{describe_bad(bad)}" if bad else ""
        raise ValueError(f"data.kind = {spec['kind']!r}, data.path = {str(spec.get('path', ''))!r}: the data set "
                         f"has no usable items{why}")
    return ds


def _build(spec: dict, model, size: int, landmark_set: str, progress: bool, distributed: bool):
    kind = spec["kind"]
    if kind == "synthetic":
        from .data.synthetic import SyntheticFaces

        ds = SyntheticFaces(model, n_identities=int(spec["n_identities"]), views_per_identity=int(spec["views"]),
                            size=size, seed=int(spec["seed"]), landmark_set=landmark_set,
                            identity_offset=int(spec.get("identity_offset", 0)), **synthetic_options(spec))
        if not spec.get("prerender", True):
            return ds
        if distributed and dist.is_initialized() and dist.get_world_size() > 1:
            return ds.prerender(progress=progress, part=(dist.get_rank(), dist.get_world_size()),
                                gather=_gather_chunks)
        return ds.prerender(progress=progress)
    if kind == "demo":                                # the original demo's six photos (evaluation)
        from .data.demo_photos import DemoPhotos

        return DemoPhotos(spec.get("path") or None, size=size)
    from .data import readers

    if kind == "umdfaces":
        return readers.UMDFaces(spec["path"], spec["image_root"], size=size)
    if kind in ("300w-lp", "aflw2000-3d", "mat68"):     # AFLW2000-3D's 68-point protocol uses pt3d_68
        return readers.Mat68(spec["path"], size=size, points=spec.get("points") or
                             ("pt3d_68" if kind == "aflw2000-3d" else "pt2d"))
    if kind == "folder":
        return readers.LandmarkFolder(spec["path"], size=size)
    if kind == "photos":
        return readers.DetectedPhotos(spec["path"], model, size=size, identity_from="folder")
    if kind == "fitted":
        from .data.fitted import FittedPhotos

        yaw, roll = float(spec.get("yaw_range", -1)), float(spec.get("roll_range", -1))
        framing = {k: float(spec[k]) for k in ("shift", "scale_jitter") if float(spec.get(k, -1)) >= 0}
        return FittedPhotos(spec["path"], model, size, photos=spec.get("photos") or None, split=spec["split"],
                            real_views=int(spec["real_views"]), profiled_views=int(spec["profiled_views"]),
                            seed=int(spec["seed"]), yaw_range=yaw if yaw >= 0 else 90.0,
                            roll_range=roll if roll >= 0 else 25.0, grid_step=int(spec["grid_step"]),
                            head_share=float(spec["head_share"]), degrade=float(spec.get("degrade", 0.0)),
                            ibug_share=share if (share := float(spec.get("ibug_share", -1))) >= 0 else None,
                            progress=progress, **framing)
    raise ValueError(f"unknown data kind {kind!r} (synthetic, umdfaces, 300w-lp, aflw2000-3d, folder, photos, "
                     "fitted)")


def synthetic_options(spec: dict) -> dict:
    """SyntheticConfig overrides from a [data] section: ``textures`` (a folder of photos or
    flatten outputs), ``photo_fraction`` and ``yaw_range`` (degrees; negative: the defaults)."""
    out = {}
    if spec.get("textures"):
        out["textures"] = str(spec["textures"])
    for key in ("photo_fraction", "yaw_range"):
        if float(spec.get(key, -1)) >= 0:
            out[key] = float(spec[key])
    return out


def _gather_chunks(mine: dict) -> dict:
    """Every process's prerendered chunks, merged (over gloo: CPU tensors, also beside NCCL)."""
    group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, mine, group=group)
    return {lo: b for p in parts for lo, b in p.items()}


def dataset_identities(ds):
    """(n,) identity of every item, or None when the data set does not know them."""
    ids = getattr(ds, "identities", None)
    if ids is None and hasattr(ds, "identity_of"):
        ids = np.array([ds.identity_of(i)[0] for i in range(len(ds))])
    return None if ids is None else np.asarray(ids)


def dataset_pair_groups(ds):
    """(n,) pairing group of every item, or None: items of one group are different images of
    one person whose flattened textures should agree (identity pairs, the consistency metric).

    The group is the identity, split further by the data set's optional ``mirrored`` (n,)
    flags: a horizontally flipped copy (300W-LP's ``*_Flip`` folders) flattens to the MIRROR
    of its person's texture, so it is only ever paired with other flipped images -- never with
    an unflipped image, in particular never with the unflipped image it was made from."""
    ids = dataset_identities(ds)
    mirrored = getattr(ds, "mirrored", None)
    if ids is None or mirrored is None:
        return ids
    m = np.asarray(mirrored, dtype=bool)
    if m.shape != ids.shape:
        raise ValueError(f"data set: mirrored has shape {m.shape}, identities {ids.shape}")
    return np.where(ids >= 0, 2 * ids + m, -1)


class IdentityGroups:
    """The items of each identity seen at least twice, computed once (stable argsort).

    ``keys`` (G,) the sorted identities; ``members[g]`` the ascending item indices of
    identity ``keys[g]`` (exactly ``np.where(ids == keys[g])[0]``)."""

    def __init__(self, identities):
        ids = np.asarray(identities).reshape(-1)
        order = np.argsort(ids, kind="stable")
        uniq, start, count = np.unique(ids[order], return_index=True, return_counts=True)
        ok = (uniq >= 0) & (count >= 2)
        self.keys = uniq[ok]
        self.members = {k: order[s:s + c] for k, s, c in zip(uniq[ok], start[ok], count[ok])}
        self.n = len(ids)


def fetch(ds, indices) -> dict:
    """A collated batch of items ``indices`` (batched rendering / reading when offered)."""
    from .data.sample import collate

    many = getattr(ds, "__getitems__", None)
    return collate(many([int(i) for i in indices]) if many else [ds[int(i)] for i in indices])


def batch_indices(n: int, batch: int, step: int, seed: int, identities=None) -> np.ndarray:
    """The global batch of ``step``: a pure function of (n, batch, step, seed[, identities]),
    so every process, and every resumed run, sees the same batches. With ``identities`` ((n,)
    array or an :class:`IdentityGroups` of it), the batch is batch/2 pairs of different items
    of one identity (consecutive entries); pass the groups to avoid regrouping every step."""
    if identities is None:
        per_epoch = max(1, n // batch)
        epoch, k = divmod(step, per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        return perm[k * batch:(k + 1) * batch]
    groups = identities if isinstance(identities, IdentityGroups) else IdentityGroups(identities)
    if not len(groups.keys):
        raise ValueError("train.pairs = 'identity' needs a data set with at least one identity seen twice")
    rng = np.random.default_rng([seed, step, 7])
    out = []
    for g in rng.choice(groups.keys, size=batch // 2, replace=len(groups.keys) < batch // 2):
        out += list(rng.choice(groups.members[g], size=2, replace=False))
    return np.array(out)


__all__ = ["build_dataset", "synthetic_options", "dataset_identities", "dataset_pair_groups", "IdentityGroups",
           "fetch", "batch_indices"]
