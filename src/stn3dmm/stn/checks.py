"""Input checks at the front doors of the STN and the fitter: theta, images, labelled landmarks.

This module owns the validation that the layer functions of :mod:`stn3dmm.stn.layers` leave
out on purpose: the layers never look at values (on CUDA every look is a host sync), so
:class:`~stn3dmm.stn.MorphableSTN` and the fitter check their inputs once, here, and raise
:class:`ValueError` with a message that names the convention the input breaks.
"""

from __future__ import annotations

import torch

from ..core.conventions import N_POSE



def check_theta(theta, n_id: int, n_exp: int, *, batch: int | None = None, dtype=None, device=None) -> torch.Tensor:
    """Validate theta at a front door: raise :class:`ValueError` unless it is a finite floating
    ``(B, 6 + n_id + n_exp)`` tensor.

    The layer functions never look at values (that would cost a host sync per layer on CUDA), so
    the module and the fitter check theta once, here, with messages that name its layout.

    Args:
        theta: (B, 6 + n_id + n_exp) ``[r(3), t(2), logs(1), alpha_id(n_id), alpha_exp(n_exp)]``.
        n_id: number of identity coefficients.
        n_exp: number of expression coefficients.
        batch: if given, the batch size B theta must have.
        dtype: if given, the dtype theta must have.
        device: if given, the device theta must be on.

    Returns:
        ``theta`` itself.

    Examples:
        >>> check_theta(torch.zeros(2, 8), n_id=1, n_exp=1).shape
        torch.Size([2, 8])
        >>> check_theta(torch.zeros(2, 7), n_id=1, n_exp=1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: theta must have shape (B, 8) = (B, 6 + 1 identity + 1 expression) ...; got (2, 7)
    """
    if not isinstance(theta, torch.Tensor):
        raise ValueError(f"theta must be a torch.Tensor, got {type(theta).__name__}")
    if not theta.is_floating_point():
        raise ValueError(f"theta must be a floating-point tensor, got dtype {theta.dtype}")
    want = N_POSE + n_id + n_exp
    if theta.ndim != 2 or theta.shape[1] != want:
        raise ValueError(
            f"theta must have shape (B, {want}) = (B, 6 + {n_id} identity + {n_exp} expression) "
            f"in the order [r(3), t(2), logs(1), alpha_id, alpha_exp]; got {tuple(theta.shape)}")
    if batch is not None and theta.shape[0] != batch:
        raise ValueError(f"theta has batch size {theta.shape[0]} but the images have {batch}")
    if dtype is not None and theta.dtype != dtype:
        raise ValueError(f"theta has dtype {theta.dtype} but {dtype} is expected (convert with .to(dtype))")
    if device is not None and theta.device != torch.device(device):
        raise ValueError(f"theta is on {theta.device} but {device} is expected")
    bad = ~torch.isfinite(theta).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten().tolist()
        raise ValueError(f"theta contains NaN or infinity in row(s) {rows[:10]}{' ...' if len(rows) > 10 else ''}")
    return theta


def check_images(images, *, dtype=None, device=None) -> torch.Tensor:
    """Validate images at a front door: raise :class:`ValueError` unless they are a floating
    ``(B, C, H, W)`` tensor with ``H, W >= 2``.

    Bilinear sampling needs floating point and at least two pixels a side (``align_corners=True``
    maps the first and last pixel centres to -1 and 1). Optionally also checks dtype and device.

    Args:
        images: (B, C, H, W).
        dtype: if given, the dtype the images must have.
        device: if given, the device the images must be on.

    Returns:
        ``images`` itself.

    Examples:
        >>> check_images(torch.zeros(1, 3, 4, 4)).shape
        torch.Size([1, 3, 4, 4])
        >>> check_images(torch.zeros(3, 4, 4))
        Traceback (most recent call last):
            ...
        ValueError: images must have shape (B, C, H, W), got (3, 4, 4)
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point (e.g. images.float()), got dtype {images.dtype}")
    if images.shape[-1] < 2 or images.shape[-2] < 2:
        raise ValueError(f"images must be at least 2 x 2 pixels, got {tuple(images.shape[-2:])}")
    if dtype is not None and images.dtype != dtype:
        raise ValueError(f"images have dtype {images.dtype} but the module's dtype is {dtype} "
                         f"(convert the images or call module.to({images.dtype}))")
    if device is not None and images.device != torch.device(device):
        raise ValueError(f"images are on {images.device} but the module is on {device}")
    return images


def check_landmarks(landmarks, visibility=None, *, image_size=None, margin: float = 0.5):
    """Validate labelled landmarks ``(B, L, 2)`` (ours: 0-based, y down) and their visibility ``(B, L)``.

    Missing landmarks have visibility 0 and may be NaN. Visible landmarks must be finite, and,
    when ``image_size = (H, W)`` is given, lie at most ``margin * W`` (``margin * H``) outside
    the image; otherwise :class:`ValueError`, because they are then almost surely in another
    convention (1-based, y up, or another image's pixels).

    Args:
        landmarks: (B, L, 2) pixels.
        visibility: (B, L) weights >= 0, 0 = missing (default: 1 where the landmark is finite).
        image_size: ``(H, W)`` for the outside-the-image test, or None to skip it.
        margin: how far outside the image, in image sizes, a visible landmark may lie.

    Returns:
        ``(landmarks, visibility)``, visibility in the landmarks' dtype.

    Examples:
        >>> nan = float("nan")
        >>> lm, vis = check_landmarks(torch.tensor([[[10.0, 20.0], [nan, nan]]]), image_size=(64, 64))
        >>> vis
        tensor([[1., 0.]])
    """
    if not isinstance(landmarks, torch.Tensor) or not landmarks.is_floating_point():
        raise ValueError("landmarks must be a floating-point torch.Tensor of shape (B, L, 2)")
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks must have shape (B, L, 2), got {tuple(landmarks.shape)}")
    finite = torch.isfinite(landmarks).all(-1)
    if visibility is None:
        visibility = finite.to(landmarks.dtype)
    if not isinstance(visibility, torch.Tensor):
        visibility = torch.as_tensor(visibility, dtype=landmarks.dtype, device=landmarks.device)
    if visibility.shape != landmarks.shape[:2]:
        raise ValueError(f"visibility must have shape {tuple(landmarks.shape[:2])}, got {tuple(visibility.shape)}")
    visibility = visibility.to(landmarks.dtype)
    if not bool(torch.isfinite(visibility).all()) or bool((visibility < 0).any()):
        raise ValueError("visibility must be finite and non-negative (0 = missing)")
    vis = visibility > 0
    if bool((vis & ~finite).any()):
        raise ValueError("landmarks marked visible contain NaN or infinity (give missing ones visibility 0)")
    if image_size is not None:
        h, w = image_size
        x, y = landmarks[..., 0], landmarks[..., 1]
        far = vis & ((x < -margin * w) | (x > (w - 1) + margin * w) | (y < -margin * h) | (y > (h - 1) + margin * h))
        if bool(far.any()):
            b, l = torch.nonzero(far)[0].tolist()
            rows = torch.nonzero(far.any(1)).flatten().tolist()
            raise ValueError(
                f"image(s) {rows[:20]} have landmarks far outside the {h} x {w} image (first: landmark {l} of image "
                f"{b} at {landmarks[b, l].tolist()}); landmarks must be 0-based pixels with y down (convert the "
                "original's labels with stn3dmm.core.conventions.points_from_original)")
    return landmarks, visibility


__all__ = ["check_theta", "check_images", "check_landmarks"]
