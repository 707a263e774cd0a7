"""The localiser: a CNN from face images to theta (docs/paper.md, "The localiser and its training").

This module owns :class:`Localiser` (backbone + input normalisation + :class:`ThetaHead`),
the registry of backbones :data:`LOCALISERS` with :func:`build_localiser` /
:func:`register_localiser`, and the loading of pretrained backbone weights. The networks
themselves live in :mod:`stn3dmm.nets` and are re-exported here::

    from stn3dmm.nets.localiser import Localiser, build_localiser, param_groups

    net = build_localiser("resnet18", n_id=10, n_exp=10, image_size=112, norm="group")
    theta = net(images)           # images (B, 3, 112, 112) RGB in [0, 1] -> (B, 6 + 10 + 10)
    opt = torch.optim.SGD(param_groups(net, base_lr=1e-3, weight_decay=5e-4), lr=1e-3, momentum=0.9)

Backbones (:data:`LOCALISERS`):

===========  ==========================  =====================  =================================
name         network                     norm                   pretrained weights
===========  ==========================  =====================  =================================
vggface16    :class:`VGGFace16` (orig.)  none                   ``vgg-face.mat`` or a state dict
resnet18     :class:`ResNet18`           batch / group / none   a state dict of the backbone
mobilenet    :class:`MobileNetV2Small`   batch / group / none   a state dict of the backbone
===========  ==========================  =====================  =================================

Aliases: ``vggface``, ``vgg16``, ``vgg-face`` -> ``vggface16``; ``mobilenetv2`` ->
``mobilenet``. The localiser takes RGB images in [0, 1] and normalises them itself (VGG-Face:
``255 x - mean pixel``; the others: ImageNet mean / std), so every backbone sees the input it
expects. Its output theta is in the conventions of :mod:`stn3dmm.core.conventions` and starts, before
training, at the start pose of :mod:`stn3dmm.nets.head`.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..core.conventions import DEFAULT_SCALE, SCALE_MAPS
from .head import ThetaHead, param_groups, start_theta
from .mobilenet import MobileNetV2Small
from .resnet import NORMS, ResNet18
from .vgg import (VGGFACE_MEAN_RGB, LoadReport, VGGFace16, WeightLoadError, load_vggface,
                       load_vggface_matconvnet, load_vggface_state_dict, read_state_dict, vggface_matconvnet_shapes)
from ..core.defaults import IMAGE_SIZE


def load_backbone_state_dict(net: nn.Module, path, *, strict: bool = True) -> LoadReport:
    """Load a state dict file into a backbone (ResNet18, MobileNetV2Small, ...).

    Prefixes ``module.`` (DDP) and ``backbone.`` (a whole :class:`Localiser` checkpoint) are
    stripped; in a whole-localiser checkpoint the ``head.*`` entries are ignored. With
    ``strict`` (default) missing or unexpected keys raise :class:`WeightLoadError` naming the
    file (nothing is copied); shape mismatches always raise.
    """
    sd, skipped = read_state_dict(path)
    report = LoadReport(source=str(path), ignored=[f"{k} (not a tensor)" for k in skipped])
    own = net.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        k = re.sub(r"^(module\.)+", "", key)
        if k.startswith("head."):
            report.ignored.append(key)
            continue
        k = k[len("backbone."):] if k.startswith("backbone.") else k
        if k not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[k].shape):
            raise WeightLoadError(f"{path}: {key} has shape {tuple(value.shape)}, expected {tuple(own[k].shape)} "
                                  f"for {type(net).__name__}")
        else:
            picked[k] = value
    report.missing = [k for k in own if k not in picked]
    if strict and not report.ok:
        raise report.error(type(net).__name__)
    net.load_state_dict(picked, strict=False)
    report.loaded = list(picked)
    if hasattr(net, "input_mean"):
        report.mean_rgb = tuple(float(v) for v in net.input_mean.flatten() * 255.0)
    return report


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackboneSpec:
    """How to build and load one backbone: ``build(norm=..., width=..., **options) -> nn.Module``
    with ``out_features``, ``normalize`` and ``forward``; ``load(net, path) -> LoadReport``."""

    name: str
    build: Callable[..., nn.Module]
    load: Callable[..., LoadReport]
    norms: tuple[str, ...]
    default_norm: str
    description: str = ""


def _build_vgg(norm="none", width=1.0, **options):
    if norm not in (None, "none"):
        raise ValueError(f"vggface16 has no normalisation layers (VGG-Face has none); got norm={norm!r}")
    return VGGFace16(width=width, **options)


def _build_resnet(norm="batch", width=1.0, **options):
    return ResNet18(width=width, norm=norm, **options)


def _build_mobilenet(norm="batch", width=1.0, **options):
    return MobileNetV2Small(width=width, norm=norm, **options)


#: name -> :class:`BackboneSpec`.
LOCALISERS: dict[str, BackboneSpec] = {}
ALIASES: dict[str, str] = {"vggface": "vggface16", "vgg16": "vggface16", "vgg-face": "vggface16",
                           "mobilenetv2": "mobilenet", "resnet": "resnet18"}


def register_localiser(name: str, build: Callable[..., nn.Module],
                       load: Callable[..., LoadReport] = load_backbone_state_dict, norms: tuple[str, ...] = NORMS,
                       default_norm: str = "batch", description: str = "") -> BackboneSpec:
    """Add a backbone to :data:`LOCALISERS` (replacing one of the same name)."""
    if default_norm not in norms:
        raise ValueError(f"default_norm {default_norm!r} is not one of norms {norms}")
    spec = BackboneSpec(name, build, load, tuple(norms), default_norm, description)
    LOCALISERS[name] = spec
    return spec


register_localiser("vggface16", _build_vgg, load_vggface, norms=("none",), default_norm="none",
                   description="VGG-16, VGG-Face layout (the original's backbone)")
register_localiser("resnet18", _build_resnet, description="ResNet-18 from scratch")
register_localiser("mobilenet", _build_mobilenet, description="reduced MobileNetV2 from scratch")


def backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of a registered name or alias (case-insensitive)."""
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in LOCALISERS:
        raise ValueError(f"unknown localiser backbone {name!r}; available: {', '.join(sorted(LOCALISERS))} "
                         f"(aliases: {', '.join(sorted(ALIASES))})")
    return LOCALISERS[key]


# ----------------------------------------------------------------------------------------------
# the localiser
# ----------------------------------------------------------------------------------------------

class Localiser(nn.Module):
    """Images ``(B, 3, S, S)`` RGB in [0, 1] -> theta ``(B, 6 + n_id + n_exp)``.

    Args:
        backbone: a name in :data:`LOCALISERS` (or an alias): ``"resnet18"`` (default),
            ``"mobilenet"`` or ``"vggface16"``.
        n_id, n_exp: identity and expression coefficients in theta (the default model's 10 + 10).
        image_size: input side ``S`` (or ``(H, W)``); inputs of another size are refused,
            because the head's start pose (t at the centre, s0 = S / 224) depends on it.
        pretrained: a weight file for the backbone (``.mat`` or a state dict for vggface16,
            a state dict for the others), loaded strictly; ``None`` / ``""`` for none.
        norm: ``"batch"``, ``"group"`` or ``"none"`` (the backbone's default when ``None``;
            vggface16 accepts only ``"none"``). Use ``"group"`` (or ``"none"``) for
            distributed training with small per-process batches.
        width: the backbone's width multiplier.
        scale_map: the spatial transformer's map ``logs -> s`` (``"exp"`` default, or ``"original"``).
        init_scale, start_scale: see :class:`ThetaHead`.
        backbone_options: further keyword arguments for the backbone (e.g. ``dropout`` for
            vggface16, ``blocks`` for resnet18).

    Attributes: ``backbone``, ``head`` (:class:`ThetaHead`), ``n_params`` (the width of theta,
    ``6 + n_id + n_exp``, as :attr:`MorphableSTN.n_params`), ``n_weights`` (the number of
    learnable parameters), ``config`` (a dict for :meth:`from_config`), ``load_report`` (what
    loading ``pretrained`` did, or ``None``).
    """

    def __init__(self, backbone: str = "resnet18", n_id: int = 10, n_exp: int = 10, image_size=IMAGE_SIZE,
                 pretrained=None, norm: str | None = None, *, width: float = 1.0, scale_map: str = DEFAULT_SCALE,
                 init_scale: float = 1e-3, start_scale: float | None = None, backbone_options: dict | None = None):
        super().__init__()
        spec = backbone_spec(backbone)
        norm = norm or spec.default_norm
        if norm not in spec.norms:
            raise ValueError(f"backbone {spec.name!r} accepts norm in {spec.norms}, got {norm!r}")
        if scale_map not in SCALE_MAPS:
            raise ValueError(f"scale_map must be one of {SCALE_MAPS}, got {scale_map!r}")
        options = dict(backbone_options or {})
        self.backbone = spec.build(norm=norm, width=width, **options)
        self.load_report = spec.load(self.backbone, pretrained) if pretrained else None
        self.head = ThetaHead(self.backbone.out_features, n_id, n_exp, image_size, init_scale=init_scale,
                              scale_map=scale_map, start_scale=start_scale)
        self.image_size = self.head.image_size
        self.n_id, self.n_exp = int(n_id), int(n_exp)
        self.n_params = self.head.n_params
        self.n_weights = sum(p.numel() for p in self.parameters() if p.requires_grad)
        self.config = {"backbone": spec.name, "n_id": self.n_id, "n_exp": self.n_exp,
                       "image_size": image_size if isinstance(image_size, int) else list(self.image_size),
                       "pretrained": str(pretrained) if pretrained else None, "norm": norm, "width": float(width),
                       "scale_map": scale_map, "init_scale": float(init_scale), "start_scale": start_scale,
                       "backbone_options": options}

    @classmethod
    def from_config(cls, config: dict) -> Localiser:
        """Build from a dict of the constructor's arguments (e.g. ``net.config``); unknown keys
        raise :class:`ValueError`. Pass ``pretrained=None`` when you will load a checkpoint."""
        allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        bad = sorted(set(config) - set(allowed))
        if bad:
            raise ValueError(f"unknown localiser option(s) {bad}; allowed: {allowed}")
        return cls(**config)

    def check_images(self, images: torch.Tensor) -> None:
        """Raise :class:`ValueError` unless ``images`` is a floating ``(B, 3, H, W)`` tensor of the input size."""
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            raise ValueError(f"images must be a floating-point tensor, got "
                             f"{getattr(images, 'dtype', type(images).__name__)}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != tuple(self.image_size):
            raise ValueError(f"this localiser takes {self.image_size[0]} x {self.image_size[1]} images (its start "
                             f"pose depends on the size), got {tuple(images.shape[-2:])}; resize or build one for "
                             f"that size")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's features ``(B, F)`` of images in [0, 1]."""
        self.check_images(images)
        return self.backbone(self.backbone.normalize(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    @property
    def start_theta(self) -> torch.Tensor:
        """theta before training (the head's bias at initialisation), ``(n_params,)``."""
        return self.head.start

    def extra_repr(self) -> str:
        return f"backbone={self.config['backbone']!r}, n_params={self.n_params}, n_weights={self.n_weights}"


def build_localiser(name: str = "resnet18", **kw) -> Localiser:
    """``Localiser(backbone=name, **kw)``; ``width`` / ``norm`` / ``pretrained`` as there
    (``pretrained=""`` means none)."""
    return Localiser(name, **kw)


def build_backbone(name: str, norm: str | None = None, width: float = 1.0, **options) -> nn.Module:
    """Just the backbone of :data:`LOCALISERS` ``name``."""
    spec = backbone_spec(name)
    return spec.build(norm=norm or spec.default_norm, width=width, **options)


__all__ = [
    "Localiser", "build_localiser", "build_backbone", "register_localiser", "backbone_spec", "BackboneSpec",
    "LOCALISERS", "ALIASES", "ThetaHead", "param_groups", "start_theta",
    "VGGFace16", "ResNet18", "MobileNetV2Small", "NORMS", "VGGFACE_MEAN_RGB",
    "load_vggface", "load_vggface_matconvnet", "load_vggface_state_dict", "load_backbone_state_dict",
    "read_state_dict", "vggface_matconvnet_shapes", "LoadReport", "WeightLoadError",
]
