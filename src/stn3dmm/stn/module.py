"""The 3DMM spatial transformer as one ``nn.Module``: :class:`MorphableSTN`, and its output :class:`STNOutput`.

This module owns the thin module wrapper that composes the pure layers of
:mod:`stn3dmm.stn.layers` and :mod:`stn3dmm.stn.visibility` into the paper's network block::

    stn = MorphableSTN(model, out_res=None, visibility="depth", landmarks="aflw21", scale="exp")
    out = stn(images, theta)   # images (B, C, H, W), C = 1 or 3; theta (B, 6 + K + E)
    out.masked                 # an STNOutput: attribute access ...
    out["masked"]              # ... or key access, as for the dict it replaces

It holds the model's tensors as (non-persistent) buffers, smplx style, so ``.to(device)``,
``.double()`` and ``.cuda()`` move/convert them, and checkpoints stay small. ``forward``
returns an :class:`STNOutput` (a dataclass, like smplx's ``ModelOutput``), so the outputs
are named, typed and documented in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..core.conventions import DEFAULT_SCALE, GRID_CONVENTIONS, N_POSE, SCALE_MAPS
from ..model.morphable import landmark_indices
from .checks import check_images, check_theta
from .layers import (Projection, bilinear_sampler, grid_generator, inside_image, masking, sampling_grid,
                     select_landmarks)
from .visibility import original_grid_faces, visibility_backface, visibility_backface_original, visibility_depth

VISIBILITY_MODES = ("depth", "backface", "backface-original", "none")


@dataclass(eq=False)
class STNOutput:
    """What :meth:`MorphableSTN.forward` returns: the outputs of every layer a caller may need.

    A dataclass (like smplx's ``ModelOutput``): read a field as an attribute (``out.masked``)
    or, as from the dict it replaces, by key (``out["masked"]``; an unknown key raises
    :class:`KeyError`). Every field is computed on every forward (none is ever None).
    B images, N = R * R vertices, L landmarks, C channels, R' = ``out_res``:

    =============  ===================  ====================================================
    field          shape                meaning
    =============  ===================  ====================================================
    points         (B, N, 2)            projected vertices, image px (0-based, y down)
    landmarks      (B, L, 2)            projected landmark vertices, image px
    grid           (B, R', R', 2)       sampling grid, normalised (align_corners=True)
    flattened      (B, C, R', R')       bilinear samples of the images (0 outside)
    mask           (B, 1, R', R')       1 = visible and inside the image (no gradient)
    masked         (B, C, R', R')       flattened * mask
    visibility     (B, N) bool          vertex visibility by the chosen rule (no image test;
                                        all True for ``visibility="none"``)
    shape          (B, N, 3)            model instance X (mm, y up)
    posed          (B, N, 3)            X' = X R^T (mm, model frame)
    rotation       (B, 3, 3)            R
    scale          (B,)                 s, px per mm
    =============  ===================  ====================================================
    """

    points: torch.Tensor
    landmarks: torch.Tensor
    grid: torch.Tensor
    flattened: torch.Tensor
    mask: torch.Tensor
    masked: torch.Tensor
    visibility: torch.Tensor
    shape: torch.Tensor
    posed: torch.Tensor
    rotation: torch.Tensor
    scale: torch.Tensor

    def __getitem__(self, key: str) -> torch.Tensor:
        """``out["masked"]`` is ``out.masked``: key access for callers written against the dict."""
        if key not in _OUTPUT_FIELDS:
            raise KeyError(key)
        return getattr(self, key)


_OUTPUT_FIELDS = frozenset(f.name for f in fields(STNOutput))


class MorphableSTN(nn.Module):
    """A 3D morphable model as a spatial transformer (Bas et al. 2017), batched and device-agnostic.

    Args:
        model: a grid :class:`~stn3dmm.model.MorphableModel` (``model.res = R > 0``; vertices
            row-major on the R x R UV grid, row 0 at the top of the face).
        out_res: side of the output (flattened) image; default ``R``. Other sizes resample the
            grid of projected points bilinearly with the UV square's corners fixed
            (``align_corners=True``), and the vertex visibility mask likewise (threshold 0.5).
        visibility: ``"depth"`` (rule (b): depth test and back-face, default), ``"backface"``
            (rule (a): a back-face test with angle-weighted unit normals), ``"backface-original"``
            (the original's back-face test exactly, on its triangulation of the grid:
            :func:`~stn3dmm.stn.visibility.visibility_backface_original`) or ``"none"`` /
            ``None`` (only the outside-image mask).
        landmarks: a landmark set of the model (``"aflw21"``, ``"ibug68"``), an index sequence,
            or ``None`` for no landmarks.
        scale: scale map for ``logs``: ``"exp"`` (``s = exp(logs)``, default) or ``"original"``
            (``s = 0.99 ** logs``).
        grid_convention: ``"ours"`` (default: the sampler reads the image at the projected
            points) or ``"original"`` (the original's normalisation, up to a pixel away; see
            :func:`~stn3dmm.stn.layers.sampling_grid`).
        n_id, n_exp: how many identity / expression coefficients theta carries (default: all
            of the model's). Fewer use the LEADING components of the model's bases, e.g.
            ``n_id=5, n_exp=5`` gives the original's D = 10 on a bigger model. theta must then
            have ``6 + n_id + n_exp`` columns.
        max_outside: if a projected landmark lies more than ``max_outside`` image sizes outside
            the image, ``forward`` raises ``ValueError`` (a theta in another convention, or a
            diverged localiser); ``None`` disables the check (and its host sync).
        depth_options: keyword arguments for :func:`~stn3dmm.stn.visibility.visibility_depth`.
        channels: image channel counts ``forward`` accepts: default ``(1, 3)`` (grey and RGB;
            every channel is sampled alike, so the outputs keep the input's C); an int for
            exactly that many; ``None`` for any (e.g. feature maps). Others raise ValueError.
        check_finite: raise ValueError when the flattened output has NaN or infinity (NaN
            pixels in the input where the face is sampled, e.g. unfilled padding). On CUDA a
            check costs a host sync; this one shares the sync of the ``max_outside`` check (one
            per forward), so the default (True) adds no sync unless ``max_outside=None``. Pass
            ``check_finite=False, max_outside=None`` for a sync-free forward.

    ``forward(images, theta)`` returns an :class:`STNOutput` (see there for its fields). theta is
    ``[r(3), t(2), logs(1), alpha_id(n_id), alpha_exp(n_exp)]``: axis-angle rotation, translation
    in image pixels (0-based, y down), log scale (px per mm) and the shape coefficients.

    Examples:
        A flat 20 mm x 20 mm square on a 3 x 3 grid, facing the camera, one identity component:

        >>> import numpy as np
        >>> import torch
        >>> from stn3dmm.model import MorphableModel
        >>> jj, ii = np.meshgrid(np.arange(3), np.arange(3))            # row 0 = top of the face
        >>> mean = np.stack((10.0 * (jj - 1), 10.0 * (1 - ii), 0.0 * ii), -1).reshape(9, 3)
        >>> faces = [f for i in range(2) for j in range(2) for a in [3 * i + j]
        ...          for f in ((a, a + 3, a + 1), (a + 1, a + 3, a + 4))]  # counter-clockwise seen from +z
        >>> model = MorphableModel(mean, np.ones((1, 9, 3)), np.zeros((0, 9, 3)), faces, res=3)
        >>> stn = MorphableSTN(model, landmarks=None)
        >>> theta = torch.tensor([[0.0, 0.0, 0.0, 15.0, 15.0, 0.0, 0.0]])  # r = 0, t = (15, 15), s = 1, alpha = 0
        >>> out = stn(torch.ones(1, 3, 31, 31), theta)
        >>> out.flattened.shape, out["mask"].shape
        (torch.Size([1, 3, 3, 3]), torch.Size([1, 1, 3, 3]))
        >>> out.points[0, [0, 4]].tolist()                               # top-left and centre vertex, image px
        [[5.0, 5.0], [15.0, 15.0]]
        >>> out.mask.sum().item()                                         # all 9 visible and inside the image
        9.0
    """

    def __init__(self, model, out_res: int | None = None, visibility: str | None = "depth",
                 landmarks="aflw21", scale: str = DEFAULT_SCALE, *, n_id: int | None = None,
                 n_exp: int | None = None, max_outside: float | None = 1.0, depth_options: dict | None = None,
                 channels: int | tuple | None = (1, 3), check_finite: bool = True, grid_convention: str = "ours"):
        super().__init__()
        if not getattr(model, "res", 0):
            raise ValueError("MorphableSTN needs a grid model (model.res > 0): its vertices must be a regular "
                             "R x R UV grid")
        if visibility is None:
            visibility = "none"
        if visibility not in VISIBILITY_MODES:
            raise ValueError(f"visibility must be one of {VISIBILITY_MODES}, got {visibility!r}")
        if scale not in SCALE_MAPS:
            raise ValueError(f"scale must be one of {SCALE_MAPS}, got {scale!r}")
        if grid_convention not in GRID_CONVENTIONS:
            raise ValueError(f"grid_convention must be one of {GRID_CONVENTIONS}, got {grid_convention!r}")
        self.grid_convention = grid_convention
        self.res = int(model.res)
        self.out_res = int(out_res) if out_res is not None else self.res
        if self.out_res < 2:
            raise ValueError(f"out_res must be at least 2, got {out_res}")
        self.n_id = model.n_id if n_id is None else int(n_id)
        self.n_exp = model.n_exp if n_exp is None else int(n_exp)
        if not (0 <= self.n_id <= model.n_id and 0 <= self.n_exp <= model.n_exp):
            raise ValueError(f"n_id={self.n_id}, n_exp={self.n_exp}: the model has {model.n_id} identity and "
                             f"{model.n_exp} expression components")
        self.visibility = visibility
        self.scale_map = scale
        self.max_outside = max_outside
        self.channels = (int(channels),) if isinstance(channels, int) else (
            tuple(int(c) for c in channels) if channels is not None else None)
        self.check_finite = bool(check_finite)
        self.depth_options = dict(depth_options or {})
        if landmarks is None:
            idx = torch.zeros(0, dtype=torch.long)
            self.landmark_set = None
        else:
            idx, self.landmark_set = landmark_indices(model.landmarks, landmarks)
            idx = torch.as_tensor(idx, dtype=torch.long)
        n = model.n_vertices
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"landmark indices must lie in [0, {n})")
        buffers = {
            "mean": torch.as_tensor(model.mean, dtype=torch.float32),
            "basis_id": torch.as_tensor(model.basis_id[: self.n_id], dtype=torch.float32),
            "basis_exp": torch.as_tensor(model.basis_exp[: self.n_exp], dtype=torch.float32),
            "faces": torch.as_tensor(model.faces, dtype=torch.long),
            "landmark_index": idx,
            "mirror": torch.as_tensor(model.mirror, dtype=torch.long),
            # the original's triangulation, for its back-face test only (empty otherwise)
            "faces_original": (original_grid_faces(self.res) if visibility == "backface-original"
                               else torch.zeros(0, 3, dtype=torch.long)),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.clone(), persistent=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs) -> "MorphableSTN":
        """Build from a model ``.npz`` (see :func:`stn3dmm.model.load_model_file`)."""
        from ..model import load_model_file

        return cls(load_model_file(path), **kwargs)

    @property
    def n_params(self) -> int:
        """Width of theta: ``6 + n_id + n_exp``."""
        return N_POSE + self.n_id + self.n_exp

    def extra_repr(self) -> str:
        return (f"res={self.res}, out_res={self.out_res}, n_id={self.n_id}, n_exp={self.n_exp}, "
                f"visibility={self.visibility!r}, landmarks={self.landmark_set!r} ({self.landmark_index.numel()}), "
                f"scale={self.scale_map!r}, grid_convention={self.grid_convention!r}")

    # -- pieces other tools can use without images --------------------------------------------

    def geometry(self, theta: torch.Tensor, check: bool = True) -> Projection:
        """Grid generator only: ``theta (B, n_params) ->`` :class:`~stn3dmm.stn.layers.Projection`.

        ``check=True`` validates theta first (:func:`~stn3dmm.stn.checks.check_theta`: shape,
        dtype, device, finite; the last costs a host sync on CUDA).
        """
        if check:
            check_theta(theta, self.n_id, self.n_exp, dtype=self.mean.dtype, device=self.mean.device)
        return self._project(theta)

    def _project(self, theta: torch.Tensor) -> Projection:
        """The grid generator on the model's buffers, theta unchecked (the caller has checked it)."""
        return grid_generator(theta, self.mean, self.basis_id, self.basis_exp, self.n_id, self.n_exp, self.scale_map)

    def _check_theta(self, theta, batch: int) -> None:
        """The one theta check of a forward: a (B, n_params) tensor of the images' batch size and the
        module's dtype and device, finite; otherwise ValueError. A wrong column count gets this
        module's advice (n_id / n_exp) before :func:`~stn3dmm.stn.checks.check_theta` does the rest."""
        if isinstance(theta, torch.Tensor) and theta.ndim == 2 and theta.shape[1] != self.n_params:
            raise ValueError(
                f"theta has {theta.shape[1]} columns but this MorphableSTN expects {self.n_params} = 6 + "
                f"{self.n_id} identity + {self.n_exp} expression coefficients ([r(3), t(2), logs(1), alpha_id, "
                "alpha_exp]); for fewer coefficients build it with MorphableSTN(model, n_id=..., n_exp=...), "
                "which uses the model's leading components")
        check_theta(theta, self.n_id, self.n_exp, batch=batch, dtype=self.mean.dtype, device=self.mean.device)

    def vertex_visibility(self, posed: torch.Tensor) -> torch.Tensor | None:
        """``(B, N, 3)`` posed vertices -> ``(B, N)`` bool by this module's rule (None for ``"none"``)."""
        if self.visibility == "none":
            return None
        if self.visibility == "backface":
            return visibility_backface(posed, self.faces)
        if self.visibility == "backface-original":
            return visibility_backface_original(posed, self.faces_original)
        return visibility_depth(posed, self.faces, **self.depth_options)

    def _far_rows(self, landmarks: torch.Tensor, height: int, width: int) -> torch.Tensor | None:
        """(B,) bool: projected landmarks more than ``max_outside`` image sizes outside (or not finite)."""
        if self.max_outside is None or landmarks.shape[1] == 0:
            return None
        with torch.no_grad():
            x, y = landmarks[..., 0], landmarks[..., 1]
            dx = torch.maximum(-x, x - (width - 1)) / width
            dy = torch.maximum(-y, y - (height - 1)) / height
            return (~(torch.maximum(dx, dy) <= self.max_outside)).any(1)  # also catches NaN

    def _check_output(self, far: torch.Tensor | None, flattened: torch.Tensor, height: int, width: int) -> None:
        """Both checks with one host sync (one ``bool()``) per forward."""
        nonfinite = None
        if self.check_finite:
            with torch.no_grad():
                nonfinite = ~torch.isfinite(flattened).flatten(1).all(1)
        checks = [c for c in (far, nonfinite) if c is not None]
        if not checks or not bool(torch.stack(checks).any()):
            return
        if far is not None and bool(far.any()):
            rows = torch.nonzero(far).flatten().tolist()
            raise ValueError(
                f"projected landmarks of image(s) {rows[:10]} lie more than {self.max_outside} image sizes outside "
                f"the {height} x {width} image (or are not finite); check theta's convention "
                "([r, t, logs, alpha], t in 0-based y-down pixels, scale map "
                f"{self.scale_map!r}; see stn3dmm.core.conventions.theta_from_original) or pass max_outside=None")
        rows = torch.nonzero(nonfinite).flatten().tolist()
        raise ValueError(f"image(s) {rows[:10]} have NaN or infinite pixels where the face is sampled (the "
                         "flattened output would not be finite); fill them, or pass check_finite=False")

    # -- forward -------------------------------------------------------------------------------

    def forward(self, images: torch.Tensor, theta: torch.Tensor) -> STNOutput:
        """Flatten ``images (B, C, H, W)`` at ``theta (B, n_params)``: see :class:`STNOutput`.

        Raises ValueError for images or theta of the wrong shape, dtype, device or channel
        count, non-finite theta, landmarks projected far outside the image (``max_outside``)
        and non-finite flattened output (``check_finite``).
        """
        dtype, device = self.mean.dtype, self.mean.device
        check_images(images, dtype=dtype, device=device)
        b, c, h, w = images.shape
        if self.channels is not None and c not in self.channels:
            raise ValueError(f"images have {c} channels; this MorphableSTN takes {' or '.join(map(str, self.channels))} "
                             "(grey or RGB by default; build it with channels=C or channels=None for others)")
        self._check_theta(theta, b)
        proj = self._project(theta)
        lms = select_landmarks(proj.points, self.landmark_index)
        far = self._far_rows(lms, h, w)
        grid = sampling_grid(proj.points, self.res, h, w, self.out_res, self.grid_convention)
        flattened = bilinear_sampler(images, grid)
        self._check_output(far, flattened, h, w)
        mask = inside_image(grid)
        vis = self.vertex_visibility(proj.posed)
        if vis is not None:
            vm = vis.view(b, 1, self.res, self.res).to(dtype)
            if self.out_res != self.res:
                vm = F.interpolate(vm, size=(self.out_res, self.out_res), mode="bilinear", align_corners=True)
                vm = (vm >= 0.5).to(dtype)
            mask = mask * vm
        if vis is None:
            vis = torch.ones(proj.points.shape[:2], dtype=torch.bool, device=device)
        return STNOutput(points=proj.points, landmarks=lms, grid=grid, flattened=flattened, mask=mask,
                         masked=masking(flattened, mask), visibility=vis, shape=proj.shape, posed=proj.posed,
                         rotation=proj.rotation, scale=proj.scale)


__all__ = ["MorphableSTN", "STNOutput", "VISIBILITY_MODES"]
