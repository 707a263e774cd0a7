"""ResNet-18 for the localiser (:class:`ResNet18`), and the normalisation-layer choice of the small nets.

This module owns a from-scratch ResNet-18 (He et al. 2016: BasicBlock, stages of 2, 2, 2, 2
blocks, 7x7 stride-2 stem and 3x3 max-pool, global average pooling; no classifier) with a
width multiplier, and :func:`make_norm`, which the small backbones share:

* ``"batch"``: :class:`torch.nn.BatchNorm2d` -- the usual choice on one big batch;
* ``"group"``: :class:`torch.nn.GroupNorm` -- statistics per sample, so the output for an image
  does not depend on the rest of the batch. Use it for distributed training with a few images
  per process: a run on N processes then computes exactly what one process computes on the
  global batch (BatchNorm would normalise over each process's share instead);
* ``"none"``: no normalisation layer (convs get biases). Also per-sample.

Initialisation: He-normal with fan-in (the forward scale is kept), and each residual branch's
last conv scaled by ``1 / sqrt(number of residual blocks)`` (as in Fixup), so that the sum of
the branches does not grow the activations' scale through the stack. This matters without
normalisation, and for BatchNorm in eval mode before any training (its running statistics are
then the identity); in training mode batch / group norm are invariant to that scale.

Input: normalised images ``(B, 3, H, W)``, any size >= 32 (64 or more is sensible: the map
before pooling is ``ceil(S / 32)`` square). Output ``(B, out_features)``, 512 at ``width=1``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Normalisation layers the small backbones accept.
NORMS = ("batch", "group", "none")
#: ImageNet statistics; the default input normalisation of the from-scratch backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_norm(norm: str | None) -> str:
    """``None`` -> ``"batch"``; raise :class:`ValueError` for names outside :data:`NORMS`."""
    norm = "batch" if norm is None else norm
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def group_count(channels: int, max_groups: int = 32, min_group_channels: int = 4) -> int:
    """GroupNorm groups for ``channels``: at most ``max_groups``, at least ``min_group_channels``
    channels per group where possible, and a divisor of ``channels``."""
    g = max(1, min(max_groups, channels // min_group_channels))
    while channels % g:
        g -= 1
    return g


def make_norm(norm: str, channels: int) -> nn.Module:
    """A normalisation layer for ``channels`` feature maps (see :data:`NORMS`)."""
    norm = check_norm(norm)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(group_count(channels), channels)
    return nn.Identity()


def scaled_channels(c: int, width: float, divisor: int = 8) -> int:
    """``c * width`` rounded to a multiple of ``divisor`` (at least ``divisor``, and never more
    than 10% below ``c * width``)."""
    v = max(divisor, int(c * width + divisor / 2) // divisor * divisor)
    if v < 0.9 * c * width:
        v += divisor
    return v


def _input_norm(module: nn.Module, mean, std) -> None:
    module.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
    module.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))


def init_weights(module: nn.Module, residual_scale: float | None = None) -> None:
    """He-normal convs (fan-in: the forward scale is kept, also without normalisation), unit / zero
    norm affine parameters, zero conv biases; with ``residual_scale`` the last conv of every
    residual branch (``.last_conv``) is scaled by it."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if residual_scale is not None:
        with torch.no_grad():
            for m in module.modules():
                last = getattr(m, "last_conv", None)
                if isinstance(last, nn.Conv2d):
                    last.weight.mul_(residual_scale)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a shortcut (a strided 1x1 conv + norm when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, norm: str = "batch"):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=bias)
        self.norm1 = make_norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=bias)
        self.norm2 = make_norm(norm, cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=bias), make_norm(norm, cout))
                         if stride != 1 or cin != cout else nn.Identity())

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.conv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 feature extractor: normalised images ``(B, 3, H, W)`` -> ``(B, out_features)``.

    Args:
        width: multiplier of the stage widths 64, 128, 256, 512 (rounded to multiples of 8).
        norm: ``"batch"`` (default), ``"group"`` or ``"none"`` (see the module docstring).
        blocks: residual blocks per stage (``(2, 2, 2, 2)`` is ResNet-18).
        zero_init_residual: start each block's last norm at zero gain (with batch / group norm),
            so every block starts as the identity. Off by default: the backbone's parameters
            then get no gradient on the first step.
    """

    min_size = 32

    def __init__(self, width: float = 1.0, norm: str | None = "batch", blocks=(2, 2, 2, 2),
                 zero_init_residual: bool = False):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        self.norm = norm = check_norm(norm)
        self.width = float(width)
        widths = [scaled_channels(c, width) for c in (64, 128, 256, 512)]
        bias = norm == "none"
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=bias), make_norm(norm, widths[0]),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, cin = [], widths[0]
        for i, (c, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(cin if j == 0 else c, c, stride if j == 0 else 1, norm)
                                          for j in range(n)]))
            cin = c
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = cin
        _input_norm(self, IMAGENET_MEAN, IMAGENET_STD)
        init_weights(self, residual_scale=1.0 / math.sqrt(sum(blocks)))
        if zero_init_residual and norm != "none":
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.norm2.weight)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images in [0, 1] -> the network's input (ImageNet mean / std)."""
        return (images - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < self.min_size or x.shape[-2] < self.min_size:
            raise ValueError(f"ResNet18 needs inputs of at least {self.min_size} x {self.min_size}, "
                             f"got {tuple(x.shape[-2:])}")
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)

    def extra_repr(self) -> str:
        return f"width={self.width}, norm={self.norm!r}, out_features={self.out_features}"


__all__ = ["NORMS", "IMAGENET_MEAN", "IMAGENET_STD", "check_norm", "group_count", "make_norm", "scaled_channels",
           "init_weights", "BasicBlock", "ResNet18"]
