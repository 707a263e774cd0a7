"""Left-right flip augmentation: images, landmarks, landmark order, and theta.

The original's augmentation and how ours compares: docs/paper.md, "Losses and the flip augmentation".

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

# AFLW-21, the original's 1-based new order: 6 5 4 3 2 1 12 11 10 9 8 7 17 16 15 14 13 20 19 18 21
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
    """The left-right permutation of a landmark set (name or size 21 / 68) as a long tensor.

    Mirroring an image turns the left eye into a right eye; the permutation re-orders a
    mirrored label set so that each entry is again the landmark its index names.

    Args:
        landmark_set: ``"aflw21"``, ``"ibug68"``, or the set's size (21, 68).

    Returns:
        (L,) long: entry ``i`` of a flipped set is the mirror of old point ``perm[i]``.

    Examples:
        >>> flip_permutation("aflw21")[:6]  # the brows, right to left
        tensor([5, 4, 3, 2, 1, 0])
    """
    if isinstance(landmark_set, int):
        landmark_set = SETS_BY_COUNT.get(landmark_set, landmark_set)
    if landmark_set not in FLIP_PERMUTATIONS:
        raise ValueError(f"no flip permutation for landmark set {landmark_set!r} (known: {sorted(FLIP_PERMUTATIONS)})")
    return torch.tensor(FLIP_PERMUTATIONS[landmark_set], dtype=torch.long)


def flip_images(images: torch.Tensor) -> torch.Tensor:
    """Mirror images ``(..., H, W)`` left-right.

    The image half of the flip augmentation; pixel ``x`` moves to ``W - 1 - x``.

    Args:
        images: (..., H, W), e.g. (B, C, H, W).

    Returns:
        the same shape, mirrored.

    Examples:
        >>> flip_images(torch.arange(3.0).view(1, 1, 1, 3))
        tensor([[[[2., 1., 0.]]]])
    """
    return images.flip(-1)


def flip_landmarks(landmarks: torch.Tensor, width: int, visibility: torch.Tensor | None = None,
                   permutation: str | torch.Tensor | None = None):
    """Mirror landmarks ``(B, L, 2)`` (ours) in an image of width ``width`` and re-order them.

    The landmark half of the flip augmentation: ``x' = W - 1 - x``, ``y' = y``; then
    ``new = old[:, perm]`` with ``perm`` the set's flip permutation, so that a mirrored left eye
    is labelled as a right eye. Missing landmarks (NaN) stay missing.

    Args:
        landmarks: (B, L, 2) pixels (0-based, y down).
        width: image width W.
        visibility: (B, L), re-ordered alike if given.
        permutation: a set name, or an (L,) tensor; default from ``L`` (21 -> AFLW-21,
            68 -> iBUG-68).

    Returns:
        ``landmarks'`` (B, L, 2), or ``(landmarks', visibility')`` when ``visibility`` is given.

    Examples:
        >>> lm = torch.tensor([[[10.0, 5.0], [30.0, 5.0]]])  # a left and a right point, 100 px wide image
        >>> flip_landmarks(lm, 100, permutation=torch.tensor([1, 0]))
        tensor([[[69.,  5.],
                 [89.,  5.]]])
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
    """Mirror theta ``(B, 6 + D)`` for a left-right flipped image of width ``width`` (symmetric model).

    The theta that flattens the mirrored image to the mirrored texture:
    ``r -> (r_x, -r_y, -r_z)``, ``t_x -> W - 1 - t_x``; ``t_y``, ``logs`` and ``alpha`` unchanged
    (exact for a mirror-symmetric model; see the module docstring).

    Args:
        theta: (B, 6 + D).
        width: image width W.

    Returns:
        (B, 6 + D), a new tensor.

    Examples:
        >>> flip_theta(torch.tensor([[0.1, 0.2, 0.3, 40.0, 50.0, 0.0, 1.5]]), width=100)
        tensor([[ 0.1000, -0.2000, -0.3000, 59.0000, 50.0000,  0.0000,  1.5000]])
    """
    out = theta.clone()
    r = theta[..., R_SLICE]
    out[..., R_SLICE] = torch.stack((r[..., 0], -r[..., 1], -r[..., 2]), -1)
    out[..., T_SLICE.start] = (width - 1) - theta[..., T_SLICE.start]
    return out


def mirror_augment(images: torch.Tensor, landmarks: torch.Tensor, visibility: torch.Tensor | None = None,
                   permutation=None):
    """The original's batch doubling: ``[images; mirrored images]``, likewise for landmarks and visibility.

    Each image and its mirror go through the network in one batch, so the siamese loss can
    compare their flattened outputs. Image ``B + i`` is the mirror of image ``i``.

    Args:
        images: (B, C, H, W).
        landmarks: (B, L, 2) pixels.
        visibility: (B, L) (default: 1 where the landmark is finite).
        permutation: as for :func:`flip_landmarks`.

    Returns:
        ``(images (2B, C, H, W), landmarks (2B, L, 2), visibility (2B, L))``.

    Examples:
        >>> images, landmarks, vis = mirror_augment(torch.zeros(2, 3, 8, 8), torch.ones(2, 21, 2))
        >>> images.shape, landmarks.shape, vis.shape
        (torch.Size([4, 3, 8, 8]), torch.Size([4, 21, 2]), torch.Size([4, 21]))
    """
    w = images.shape[-1]
    if visibility is None:
        visibility = torch.isfinite(landmarks).all(-1).to(landmarks.dtype)
    fl, fv = flip_landmarks(landmarks, w, visibility, permutation)
    return (torch.cat((images, flip_images(images)), 0), torch.cat((landmarks, fl), 0), torch.cat((visibility, fv), 0))


__all__ = ["AFLW21_FLIP", "IBUG68_FLIP", "FLIP_PERMUTATIONS", "flip_permutation", "flip_images", "flip_landmarks",
           "flip_theta", "mirror_augment"]
