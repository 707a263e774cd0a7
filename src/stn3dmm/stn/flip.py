"""Left-right flip augmentation (SPEC section 5): images, landmarks, landmark order, and theta.

This module owns mirroring in our image convention (0-based, y down, pixel centres at
integers): a point ``x`` maps to ``x' = W - 1 - x`` (the original's 1-based ``W + 1 - x``), and
the left-right landmark permutations of AFLW-21 and iBUG-68 that re-order a mirrored label set
so that left and right points swap. Missing landmarks (NaN, visibility 0) stay missing.

``new = old[:, perm]`` everywhere: entry ``i`` of a flipped set is the mirror of old point ``perm[i]``.

Mirroring theta (:func:`flip_theta`) is exact for a mirror-symmetric model whose identity and
expression components are each mirror-symmetric (the synthetic test models, and to first order
a PCA model of symmetric data): ``r -> (r_x, -r_y, -r_z)``, ``t_x -> W - 1 - t_x``, the rest
unchanged. The flipped image's flattened output is then the original's flipped left-right.
"""

from __future__ import annotations

import torch

from ..core.conventions import R_SLICE, T_SLICE
from ..model.morphable import SETS_BY_COUNT

# AFLW-21, 1-based new order from SPEC section 5: 6 5 4 3 2 1 12 11 10 9 8 7 17 16 15 14 13 20 19 18 21
AFLW21_FLIP = (5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 16, 15, 14, 13, 12, 19, 18, 17, 20)


def _ibug68_flip() -> tuple:
    """The standard iBUG-68 mirror permutation (0-based), from the 68-point layout."""
    pairs = []  # 1-based mirror pairs
    pairs += [(i, 18 - i) for i in range(1, 9)]                            # jaw 1-17 (9 = chin)
    pairs += [(18, 27), (19, 26), (20, 25), (21, 24), (22, 23)]            # brows
    pairs += [(32, 36), (33, 35)]                                          # nose base (28-31, 34 central)
    pairs += [(37, 46), (38, 45), (39, 44), (40, 43), (41, 48), (42, 47)]  # eyes
    pairs += [(49, 55), (50, 54), (51, 53), (56, 60), (57, 59)]            # outer lip (52, 58 central)
    pairs += [(61, 65), (62, 64), (66, 68)]                                # inner lip (63, 67 central)
    perm = list(range(68))
    for a, b in pairs:
        perm[a - 1], perm[b - 1] = b - 1, a - 1
    return tuple(perm)


IBUG68_FLIP = _ibug68_flip()

FLIP_PERMUTATIONS = {"aflw21": AFLW21_FLIP, "ibug68": IBUG68_FLIP}


def flip_permutation(landmark_set: str | int) -> torch.Tensor:
    """The left-right permutation of a landmark set (name or size 21 / 68) as a long tensor."""
    if isinstance(landmark_set, int):
        landmark_set = SETS_BY_COUNT.get(landmark_set, landmark_set)
    if landmark_set not in FLIP_PERMUTATIONS:
        raise ValueError(f"no flip permutation for landmark set {landmark_set!r} (known: {sorted(FLIP_PERMUTATIONS)})")
    return torch.tensor(FLIP_PERMUTATIONS[landmark_set], dtype=torch.long)


def flip_images(images: torch.Tensor) -> torch.Tensor:
    """Mirror ``(..., H, W)`` images left-right."""
    return images.flip(-1)


def flip_landmarks(landmarks: torch.Tensor, width: int, visibility: torch.Tensor | None = None,
                   permutation: str | torch.Tensor | None = None):
    """Mirror landmarks ``(B, L, 2)`` (ours) in an image of width ``width`` and re-order them.

    ``x' = W - 1 - x``, ``y' = y``; then ``new = old[:, perm]`` with ``perm`` the set's flip
    permutation (default: from ``L``: 21 -> AFLW-21, 68 -> iBUG-68; pass a tensor for others).
    Returns ``landmarks'`` or ``(landmarks', visibility')`` when ``visibility (B, L)`` is given.
    """
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks must be (B, L, 2), got {tuple(landmarks.shape)}")
    if permutation is None or isinstance(permutation, (str, int)):
        perm = flip_permutation(permutation if permutation is not None else landmarks.shape[1])
    else:
        perm = torch.as_tensor(permutation, dtype=torch.long)
    if perm.numel() != landmarks.shape[1]:
        raise ValueError(f"permutation of length {perm.numel()} for {landmarks.shape[1]} landmarks")
    perm = perm.to(landmarks.device)
    out = torch.stack(((width - 1) - landmarks[..., 0], landmarks[..., 1]), -1)[:, perm]
    if visibility is None:
        return out
    return out, visibility[:, perm]


def flip_theta(theta: torch.Tensor, width: int) -> torch.Tensor:
    """Mirror theta ``(B, 6 + D)`` for a left-right flipped image of width ``width`` (symmetric model):
    ``r -> (r_x, -r_y, -r_z)``, ``t_x -> W - 1 - t_x``; ``t_y``, ``logs`` and ``alpha`` unchanged."""
    out = theta.clone()
    r = theta[..., R_SLICE]
    out[..., R_SLICE] = torch.stack((r[..., 0], -r[..., 1], -r[..., 2]), -1)
    out[..., T_SLICE.start] = (width - 1) - theta[..., T_SLICE.start]
    return out


def mirror_augment(images: torch.Tensor, landmarks: torch.Tensor, visibility: torch.Tensor | None = None,
                   permutation=None):
    """The original's batch doubling: ``[images; mirrored images]`` and likewise for landmarks and
    visibility (image ``B + i`` is the mirror of image ``i``). Returns ``(images, landmarks, visibility)``."""
    w = images.shape[-1]
    if visibility is None:
        visibility = torch.isfinite(landmarks).all(-1).to(landmarks.dtype)
    fl, fv = flip_landmarks(landmarks, w, visibility, permutation)
    return (torch.cat((images, flip_images(images)), 0), torch.cat((landmarks, fl), 0), torch.cat((visibility, fv), 0))


__all__ = ["AFLW21_FLIP", "IBUG68_FLIP", "FLIP_PERMUTATIONS", "flip_permutation", "flip_images", "flip_landmarks",
           "flip_theta", "mirror_augment"]
