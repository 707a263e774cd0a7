"""Backbone networks and the theta head of the localiser (docs/paper.md, "The localiser and its training").

This package owns the network building blocks that :mod:`stn3dmm.nets.localiser` composes:

==========================  ===============================================================
module                      contents
==========================  ===============================================================
:mod:`.vgg`                 :class:`VGGFace16` (VGG-16, VGG-Face layout) and its weight loaders
                            for the MatConvNet ``vgg-face.mat`` and PyTorch state dicts
:mod:`.resnet`              :class:`ResNet18` (BasicBlock, width multiplier) and the choice of
                            normalisation layer (batch / group / none) shared by the small nets
:mod:`.mobilenet`           :class:`MobileNetV2Small` (inverted residuals, width multiplier)
:mod:`.head`                :class:`ThetaHead` (the new fully connected layer with the original's
                            initialisation) and :func:`param_groups` (its learning-rate multipliers)
:mod:`.shipped`             the trained localiser that ships in the package (``weights/``): its
                            weights, ONNX graphs and card, :func:`~.shipped.load_shipped`
:mod:`.inference`           :func:`~.inference.fold_batch_norm` (a copy with batch normalisation
                            folded into the convolutions, for a faster forward pass)
:mod:`.runtime`             :class:`~.runtime.OnnxNetwork` (a network's ONNX graph run by
                            onnxruntime: the shipped localiser on the CPU) and
                            :func:`~.runtime.export_onnx`
:mod:`.upright`             :class:`~.upright.UprightNet`, the up-direction network that checks
                            the localiser's results (which way is up in a face crop, over the
                            whole circle), and its shipped weights (:func:`~.upright.load_upright`)
==========================  ===============================================================

Every backbone maps normalised images ``(B, 3, H, W)`` to features ``(B, out_features)`` and
carries its input normalisation as buffers ``input_mean`` / ``input_std`` (``(1, 3, 1, 1)``,
for images in [0, 1]) with a ``normalize(images)`` method; the localiser calls it in ``forward``.
Nothing here depends on torchvision.

May import: :mod:`stn3dmm.core` only.
"""

from .head import ThetaHead, param_groups, start_theta
from .inference import fold_batch_norm
from .mobilenet import InvertedResidual, MobileNetV2Small
from .resnet import NORMS, BasicBlock, ResNet18, make_norm
from .vgg import (VGGFACE_CONV_NAMES, VGGFACE_MEAN_RGB, LoadReport, VGGFace16, WeightLoadError,
                  load_vggface, load_vggface_matconvnet, load_vggface_state_dict, matconvnet_to_torch,
                  read_state_dict, vggface_matconvnet_shapes)

__all__ = [
    "VGGFace16", "ResNet18", "MobileNetV2Small", "BasicBlock", "InvertedResidual", "ThetaHead",
    "param_groups", "start_theta", "make_norm", "NORMS", "fold_batch_norm",
    "load_vggface", "load_vggface_matconvnet", "load_vggface_state_dict", "matconvnet_to_torch",
    "read_state_dict", "vggface_matconvnet_shapes", "LoadReport", "WeightLoadError",
    "VGGFACE_CONV_NAMES", "VGGFACE_MEAN_RGB",
]
