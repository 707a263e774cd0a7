"""A small MobileNetV2-like backbone for CPU (:class:`MobileNetV2Small`).

This module owns the inverted-residual block (Sandler et al. 2018: 1x1 expansion, 3x3
depthwise conv, linear 1x1 projection, a shortcut when the shape is kept; ReLU6) and a
reduced MobileNetV2 built from it, written from scratch (no torchvision):

===========  =======  =========  ======  ========
stage        expand   channels   blocks  stride
===========  =======  =========  ======  ========
stem conv    -        32         1       2
1            1        16         1       1
2            6        24         2       2
3            6        32         2       2
4            6        64         3       2
5            6        96         2       1
6            6        160        2       2
head conv    -        640        1       1
===========  =======  =========  ======  ========

(MobileNetV2 proper has 1, 2, 3, 4, 3, 3 blocks, a 320-channel stage and a 1280-channel head
conv.) Every width except the expansion ratios scales with ``width`` (rounded to multiples of
8). Total stride 32, then global average pooling, so any input >= 32 works (64 or more is
sensible). Normalisation (``"batch"``, ``"group"`` or ``"none"``) and initialisation (fan-in,
residual branches scaled by ``1 / sqrt(number of residual blocks)``) as in
:mod:`stn3dmm.nets.resnet`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .resnet import IMAGENET_MEAN, IMAGENET_STD, _input_norm, check_norm, init_weights, make_norm, scaled_channels

#: ``(expand, channels, blocks, stride)`` per stage of :class:`MobileNetV2Small`.
SMALL_CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 3, 2), (6, 96, 2, 1), (6, 160, 2, 2))


def _conv_norm_act(cin: int, cout: int, k: int, stride: int, norm: str, groups: int = 1, act: bool = True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=norm == "none"), make_norm(norm, cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidual(nn.Module):
    """1x1 expand (ratio ``expand``) -> 3x3 depthwise (``stride``) -> 1x1 linear projection,
    plus the input when ``stride == 1`` and ``cin == cout``."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, norm: str = "batch"):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = cin * expand
        layers = [] if expand == 1 else _conv_norm_act(cin, hidden, 1, 1, norm)
        layers += _conv_norm_act(hidden, hidden, 3, stride, norm, groups=hidden)
        layers += _conv_norm_act(hidden, cout, 1, 1, norm, act=False)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    @property
    def last_conv(self) -> nn.Conv2d | None:
        # the projection conv; only residual blocks get the residual-branch init scaling
        return self.block[-2] if self.residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV2Small(nn.Module):
    """A reduced MobileNetV2: normalised images ``(B, 3, H, W)`` -> ``(B, out_features)``.

    Args:
        width: width multiplier (channels rounded to multiples of 8).
        norm: ``"batch"`` (default), ``"group"`` or ``"none"``.
        config: ``(expand, channels, blocks, stride)`` per stage (default :data:`SMALL_CONFIG`).
        last_channels: channels of the final 1x1 conv (scaled by ``width`` when ``width > 1``).
    """

    min_size = 32

    def __init__(self, width: float = 1.0, norm: str | None = "batch", config=SMALL_CONFIG, last_channels: int = 640):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        self.norm = norm = check_norm(norm)
        self.width = float(width)
        cin = scaled_channels(32, width)
        layers = _conv_norm_act(3, cin, 3, 2, norm)
        n_res = 0
        for expand, c, n, s in config:
            cout = scaled_channels(c, width)
            for j in range(n):
                block = InvertedResidual(cin, cout, s if j == 0 else 1, expand, norm)
                n_res += block.residual
                layers.append(block)
                cin = cout
        last = scaled_channels(last_channels, max(1.0, width))
        layers += _conv_norm_act(cin, last, 1, 1, norm)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = last
        _input_norm(self, IMAGENET_MEAN, IMAGENET_STD)
        init_weights(self, residual_scale=1.0 / math.sqrt(max(1, n_res)))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images in [0, 1] -> the network's input (ImageNet mean / std)."""
        return (images - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < self.min_size or x.shape[-2] < self.min_size:
            raise ValueError(f"MobileNetV2Small needs inputs of at least {self.min_size} x {self.min_size}, "
                             f"got {tuple(x.shape[-2:])}")
        return torch.flatten(self.pool(self.features(x)), 1)

    def extra_repr(self) -> str:
        return f"width={self.width}, norm={self.norm!r}, out_features={self.out_features}"


__all__ = ["SMALL_CONFIG", "InvertedResidual", "MobileNetV2Small"]
