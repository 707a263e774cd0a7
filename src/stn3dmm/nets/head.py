"""The theta head of the localiser (:class:`ThetaHead`) and its optimiser groups (:func:`param_groups`).

This module owns the new fully connected layer the original puts on top of VGG-Face
(docs/paper.md, "The localiser and its training") and its initialisation, which makes an
untrained localiser output the mean face, frontal, centred, at the start scale:

* weights: Xavier-uniform times ``init_scale`` (0.001), so theta barely depends on the image;
* bias: zero except ``t`` = the image centre and ``logs`` = the log of the start scale ``s0``.

The start pose, in OUR conventions (:mod:`stn3dmm.core.conventions`):

* ``t = ((W - 1) / 2, (H - 1) / 2)``: the exact centre of the image with 0-based pixel centres
  (111.5 for 224). The original's ``t = (112, 112)`` was in its 1-based, y-up frame, which is
  ``(111, 112)`` in ours -- half a pixel off the centre in each axis (the 1-based centre is
  112.5). We use the exact centre, so the start pose is unchanged by the horizontal flip
  ``x -> W - 1 - x`` used for mirror pairs.
* ``s0 = min(H, W) / 224`` pixels per millimetre: the original starts at ``s = 1`` px/mm at its
  224 input (the paper; the released code's ``logs = 1`` with ``s = 0.99 ** logs`` is
  0.99); other input sizes scale it so that the mean face covers the same fraction of the
  crop. ``logs = log_from_scale(s0, scale_map)``, i.e. ``log(s0)`` under our default map
  ``s = exp(logs)``.
* ``r = 0`` and all shape coefficients 0: frontal mean face.

:func:`param_groups` gives the head's weights 4x and its bias 8x the base learning rate, and
no weight decay on the bias (the original's multipliers).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.conventions import DEFAULT_SCALE, LOGS_INDEX, N_POSE, T_SLICE, log_from_scale
from ..core.defaults import IMAGE_SIZE


def _size(image_size) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
    if h < 2 or w < 2:
        raise ValueError(f"image_size must be at least 2 x 2, got {image_size}")
    return h, w


def start_theta(n_id: int, n_exp: int, image_size=IMAGE_SIZE, scale_map: str = DEFAULT_SCALE,
                start_scale: float | None = None, dtype=None) -> torch.Tensor:
    """The start pose as a ``(6 + n_id + n_exp,)`` vector: ``r = 0``, ``t`` = the image centre,
    ``logs`` = log of ``start_scale`` (default ``min(H, W) / 224``), zero coefficients.
    ``image_size`` is ``S`` or ``(H, W)``."""
    h, w = _size(image_size)
    s0 = min(h, w) / IMAGE_SIZE if start_scale is None else float(start_scale)
    if not s0 > 0:
        raise ValueError(f"start_scale must be positive, got {start_scale}")
    th = torch.zeros(N_POSE + n_id + n_exp, dtype=dtype or torch.get_default_dtype())
    th[T_SLICE] = torch.tensor(((w - 1) / 2.0, (h - 1) / 2.0), dtype=th.dtype)
    th[LOGS_INDEX] = log_from_scale(torch.tensor(s0, dtype=torch.float64), scale_map).to(th.dtype)
    return th


def output_scales(n_id: int, n_exp: int, image_size=IMAGE_SIZE, mode="auto") -> torch.Tensor:
    """Per-parameter units of the head's weighted output: theta's parts live on very different
    scales (radians, pixels, log-scale, N(0, 1) coefficients), and an optimiser such as Adam
    moves every weight by about the same amount. ``"auto"``: r 1 rad, t S/8 px, logs 0.25,
    coefficients 1; ``None``: all 1 (a plain linear layer, as the original)."""
    p = N_POSE + n_id + n_exp
    if mode is None:
        return torch.ones(p)
    if mode != "auto":
        v = torch.as_tensor(mode, dtype=torch.float32)
        if v.shape != (p,) or not bool((v > 0).all()):
            raise ValueError(f"output_scale must be 'auto', None or {p} positive numbers")
        return v
    h, w = _size(image_size)
    v = torch.ones(p)
    v[T_SLICE] = min(h, w) / 8.0
    v[LOGS_INDEX] = 0.25
    return v


class ThetaHead(nn.Linear):
    """``nn.Linear(in_features, 6 + n_id + n_exp)`` initialised as the original's (module docstring).

    Args:
        in_features: width of the backbone's features.
        n_id, n_exp: identity and expression coefficients in theta.
        image_size: the localiser's input side ``S`` (or ``(H, W)``), for the start pose.
        init_scale: factor on the Xavier-uniform weights (the original's 0.001).
        scale_map: the map ``logs -> s`` the spatial transformer uses (``"exp"`` or ``"original"``).
        start_scale: the start scale in px/mm (default ``min(H, W) / 224``).
        output_scale: units of the weighted output per parameter (:func:`output_scales`).

    Its ``weight`` and ``bias`` keep :class:`torch.nn.Linear`'s names, so checkpoints hold
    ``head.weight`` / ``head.bias``. :meth:`reset_parameters` re-applies the initialisation.
    """

    def __init__(self, in_features: int, n_id: int, n_exp: int, image_size=IMAGE_SIZE, init_scale: float = 1e-3,
                 scale_map: str = DEFAULT_SCALE, start_scale: float | None = None, output_scale="auto"):
        if n_id < 0 or n_exp < 0:
            raise ValueError(f"n_id and n_exp must be >= 0, got {n_id}, {n_exp}")
        self._start = None          # nn.Linear.__init__ calls reset_parameters before we are set up
        super().__init__(in_features, N_POSE + n_id + n_exp)
        self.n_id, self.n_exp = int(n_id), int(n_exp)
        self.image_size = _size(image_size)
        self.init_scale = float(init_scale)
        self.scale_map = scale_map
        self._start = start_theta(n_id, n_exp, self.image_size, scale_map, start_scale)
        self.register_buffer("output_scale", output_scales(n_id, n_exp, self.image_size, output_scale),
                             persistent=False)
        self.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``theta = (x W^T) * output_scale + bias``: the bias is theta itself (the start pose at
        initialisation); the weights' output is measured in per-parameter units."""
        return torch.nn.functional.linear(x, self.weight) * self.output_scale + self.bias

    @property
    def n_params(self) -> int:
        """Width of theta, ``6 + n_id + n_exp``."""
        return self.out_features

    @property
    def start(self) -> torch.Tensor:
        """The start pose (the initial bias), ``(6 + n_id + n_exp,)``."""
        return self._start.clone()

    def reset_parameters(self) -> None:
        if self._start is None:
            return
        with torch.no_grad():
            nn.init.xavier_uniform_(self.weight)
            self.weight.mul_(self.init_scale)
            self.bias.copy_(self._start.to(self.bias.dtype))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, n_id={self.n_id}, n_exp={self.n_exp}, "
                f"image_size={self.image_size}, init_scale={self.init_scale}, scale_map={self.scale_map!r}")


def param_groups(model: nn.Module, base_lr: float, weight_decay: float = 0.0, *, head_lr_weight: float = 4.0,
                 head_lr_bias: float = 8.0) -> list[dict]:
    """Optimiser parameter groups for a model with a :class:`ThetaHead`, with the original's multipliers.

    Returns (omitting empty groups) ``[{"name": "backbone", lr = base_lr, weight_decay},
    {"name": "head.weight", lr = base_lr * head_lr_weight, weight_decay},
    {"name": "head.bias", lr = base_lr * head_lr_bias, weight_decay = 0}]``; each group also
    has ``"lr_mult"`` (its multiplier, for schedulers that set ``lr`` themselves). Only
    parameters with ``requires_grad`` are included; each appears exactly once.
    """
    heads = [m for m in model.modules() if isinstance(m, ThetaHead)]
    if not heads:
        raise ValueError(f"{type(model).__name__} has no ThetaHead, so there is no head to give learning-rate "
                         f"multipliers to")
    head_w = [h.weight for h in heads if h.weight.requires_grad]
    head_b = [h.bias for h in heads if h.bias.requires_grad]
    special = {id(p) for p in head_w + head_b}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in special]
    groups = [
        {"name": "backbone", "params": rest, "lr": base_lr, "weight_decay": weight_decay, "lr_mult": 1.0},
        {"name": "head.weight", "params": head_w, "lr": base_lr * head_lr_weight, "weight_decay": weight_decay,
         "lr_mult": float(head_lr_weight)},
        {"name": "head.bias", "params": head_b, "lr": base_lr * head_lr_bias, "weight_decay": 0.0,
         "lr_mult": float(head_lr_bias)},
    ]
    return [g for g in groups if g["params"]]


__all__ = ["ThetaHead", "param_groups", "start_theta"]
