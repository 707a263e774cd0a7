"""VGG-16 with the VGG-Face layout (:class:`VGGFace16`) and its weight loaders.

This module owns the original localiser's backbone (docs/paper.md, "The localiser and its
training") and the conversion of
user-supplied VGG-Face weights onto it:

* :func:`load_vggface_matconvnet` reads the MatConvNet ``vgg-face.mat`` ("simplenn" format, as
  published by the VGG group; DagNN files are read too);
* :func:`load_vggface_state_dict` reads a PyTorch state dict in one of the common key layouts;
* :func:`load_vggface` picks one of the two by the file's suffix.

Layout (names as in the MatConvNet file)::

    conv1_1 conv1_2                  64   3x3, pad 1, ReLU      then 2x2 max-pool, stride 2
    conv2_1 conv2_2                 128
    conv3_1 conv3_2 conv3_3         256
    conv4_1 conv4_2 conv4_3         512
    conv5_1 conv5_2 conv5_3         512
    (adaptive average pool to 7x7)
    fc6    4096  (a 7x7x512 conv in MatConvNet, a Linear on the flattened (C, H, W) map here)
    fc7    4096  (a 1x1 conv in MatConvNet)
    fc8    2622  identities: the classifier, REMOVED (its weights are ignored when loading)

ReLU follows fc6 and fc7, then dropout (as in VGG-Face; ``dropout=0`` disables it), so the
features are ``relu(fc7)``: ``(B, 4096)``.

Input sizes: at 224 x 224 the last pool gives exactly 7 x 7 x 512 and the adaptive pooling is
skipped, so the network is VGG-Face exactly. Other sizes (>= 32) give an ``S // 32`` square map
that :class:`torch.nn.AdaptiveAvgPool2d` resamples to 7 x 7 (for 112: 3 x 3 -> 7 x 7, i.e.
each 7 x 7 cell averages one or two of the 3 x 3 cells), so fc6 keeps its shape and pretrained
weights load unchanged; they then see features at another scale, so expect to fine-tune.

Weights in MatConvNet: filters are ``(h, w, in, out)`` (``h`` the image row) and
``vl_nnconv`` is a correlation like :func:`torch.nn.functional.conv2d`, so a filter becomes
``filters.permute(3, 2, 0, 1)`` -- ``(out, in, h, w)`` -- with no flip. fc6's
``(7, 7, 512, 4096)`` becomes ``(4096, 512, 7, 7)`` and is flattened in (C, H, W) order, which
is the order of ``torch.flatten`` on the ``(B, 512, 7, 7)`` map.

Input normalisation: MatConvNet's VGG-Face expects RGB images in 0..255 minus the mean pixel
``VGGFACE_MEAN_RGB`` (no division). The network stores it as ``input_mean = mean / 255`` and
``input_std = 1 / 255`` so that ``normalize(x) = (x - input_mean) / input_std = 255 x - mean``
for images ``x`` in [0, 1]. The MatConvNet loader reads ``meta.normalization.averageImage``
when the file has it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Output channels of the 13 conv layers, block by block.
VGGFACE_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
#: Their names in the MatConvNet file (and here).
VGGFACE_CONV_NAMES = tuple(f"conv{b + 1}_{i + 1}" for b, block in enumerate(VGGFACE_BLOCKS) for i in range(len(block)))
#: Width of fc6 and fc7.
VGGFACE_FC = 4096
#: Spatial size of the map fc6 reads (7 x 7 at 224 input).
VGGFACE_POOL = 7
#: Number of identities of the removed classifier fc8.
VGGFACE_CLASSES = 2622
#: The mean pixel VGG-Face subtracts, RGB in 0..255 (the published ``averageImage``).
VGGFACE_MEAN_RGB = (129.186279296875, 104.76238250732422, 93.59396362304688)
#: The smallest input side: five 2x2 pools must leave at least one pixel.
VGG_MIN_SIZE = 32

_LAYERS = VGGFACE_CONV_NAMES + ("fc6", "fc7")


class WeightLoadError(ValueError):
    """A weight file that cannot be read, or does not fit the network; the message names the file."""


def _scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def _channels(width: float) -> list[int]:
    return [_scaled(c, width) for block in VGGFACE_BLOCKS for c in block]


def vggface_matconvnet_shapes(width: float = 1.0) -> dict[str, tuple[tuple[int, ...], tuple[int]]]:
    """The ``(filters, biases)`` shapes a MatConvNet file must have for :class:`VGGFace16` of
    this width: ``{"conv1_1": ((3, 3, 3, 64), (64,)), ..., "fc6": ((7, 7, 512, 4096), (4096,)),
    "fc7": ((1, 1, 4096, 4096), (4096,))}`` at ``width=1``. Filters are ``(h, w, in, out)``."""
    shapes, cin = {}, 3
    for name, c in zip(VGGFACE_CONV_NAMES, _channels(width)):
        shapes[name] = ((3, 3, cin, c), (c,))
        cin = c
    fc = _scaled(VGGFACE_FC, width)
    shapes["fc6"] = ((VGGFACE_POOL, VGGFACE_POOL, cin, fc), (fc,))
    shapes["fc7"] = ((1, 1, fc, fc), (fc,))
    return shapes


class VGGFace16(nn.Module):
    """VGG-16 in the VGG-Face layout, classifier removed: images ``(B, 3, H, W)`` -> ``(B, fc)``.

    Args:
        width: multiplier of every layer's width (``1.0`` is VGG-Face; smaller values give a
            thin copy with the same structure, e.g. for tests or CPU runs).
        dropout: dropout probability after fc6 and fc7 (VGG-Face: 0.5).

    ``forward`` expects NORMALISED images (see :meth:`normalize`), any size >= 32.
    ``out_features`` is the feature width (4096 at ``width=1``).
    """

    min_size = VGG_MIN_SIZE

    def __init__(self, width: float = 1.0, dropout: float = 0.5):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        self.width = float(width)
        cin = 3
        for name, c in zip(VGGFACE_CONV_NAMES, _channels(width)):
            setattr(self, name, nn.Conv2d(cin, c, 3, padding=1))
            cin = c
        fc = _scaled(VGGFACE_FC, width)
        self.fc6 = nn.Linear(cin * VGGFACE_POOL * VGGFACE_POOL, fc)
        self.fc7 = nn.Linear(fc, fc)
        self.dropout = nn.Dropout(dropout)
        self.out_features = fc
        self.register_buffer("input_mean", torch.tensor(VGGFACE_MEAN_RGB).view(1, 3, 1, 1) / 255.0)
        self.register_buffer("input_std", torch.full((1, 3, 1, 1), 1.0 / 255.0))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal convs and N(0, 0.01) fully connected layers, zero biases (training from scratch)."""
        for name in VGGFACE_CONV_NAMES:
            conv = getattr(self, name)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for fc in (self.fc6, self.fc7):
            nn.init.normal_(fc.weight, 0.0, 0.01)
            nn.init.zeros_(fc.bias)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images in [0, 1] -> the network's input (``255 x - mean`` for VGG-Face)."""
        return (images - self.input_mean) / self.input_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < self.min_size or x.shape[-2] < self.min_size:
            raise ValueError(f"VGGFace16 needs inputs of at least {self.min_size} x {self.min_size}, "
                             f"got {tuple(x.shape[-2:])}")
        i = 0
        for block in VGGFACE_BLOCKS:
            for _ in block:
                x = F.relu(getattr(self, VGGFACE_CONV_NAMES[i])(x))
                i += 1
            x = F.max_pool2d(x, 2, 2)
        if x.shape[-2:] != (VGGFACE_POOL, VGGFACE_POOL):
            x = F.adaptive_avg_pool2d(x, VGGFACE_POOL)
        x = self.dropout(F.relu(self.fc6(torch.flatten(x, 1))))
        return self.dropout(F.relu(self.fc7(x)))

    def extra_repr(self) -> str:
        return f"width={self.width}, out_features={self.out_features}"


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------

@dataclass
class LoadReport:
    """What a weight loader did: parameter names loaded into the network, the network's
    parameters the file did not provide (``missing``), entries of the file that match nothing
    (``unexpected``), entries skipped on purpose (``ignored``, e.g. the classifier fc8), and
    the mean pixel now used by the network (RGB, 0..255) with where it came from."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    mean_rgb: tuple[float, float, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def details(self) -> list[str]:
        """The report's lines after the first (missing, unexpected, ignored, mean, notes)."""
        lines = []
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("ignored", self.ignored)):
            if keys:
                lines.append(f"  {label} ({len(keys)}): {', '.join(keys)}")
        if self.mean_rgb is not None:
            lines.append("  mean RGB (0..255): " + ", ".join(f"{m:.4f}" for m in self.mean_rgb))
        return lines + [f"  {n}" for n in self.notes]

    def __str__(self) -> str:
        return "\n".join([f"{self.source}: loaded {len(self.loaded)} tensors"] + self.details())

    def error(self, what: str) -> "WeightLoadError":
        """The strict-mode error: names the file, says nothing was copied, lists the details."""
        return WeightLoadError("\n".join([f"{self.source}: the file does not fit {what}; nothing was loaded"]
                                         + self.details()))


def _expected_params(net: VGGFace16) -> dict[str, torch.Size]:
    return {f"{n}.{p}": getattr(getattr(net, n), p).shape for n in _LAYERS for p in ("weight", "bias")}


def _check_net(net) -> None:
    if not isinstance(net, VGGFace16):
        raise TypeError(f"expected a VGGFace16, got {type(net).__name__}")


def _finish(net: VGGFace16, tensors: dict[str, torch.Tensor], report: LoadReport, strict: bool,
            mean_rgb=None, norm_buffers=None) -> LoadReport:
    """Check ``tensors`` (our key -> tensor of the final shape) against ``net``, then copy them
    and the normalisation (``mean_rgb`` in 0..255, or ``norm_buffers`` = (mean, std) in [0, 1])."""
    expected = _expected_params(net)
    report.missing = [k for k in expected if k not in tensors]
    if strict and not report.ok:
        raise report.error(f"VGGFace16(width={net.width})")
    with torch.no_grad():
        for key, value in tensors.items():
            layer, p = key.split(".")
            getattr(getattr(net, layer), p).copy_(value)
        if norm_buffers is not None:
            net.input_mean.copy_(norm_buffers[0].reshape(1, -1, 1, 1).expand_as(net.input_mean))
            net.input_std.copy_(norm_buffers[1].reshape(1, -1, 1, 1).expand_as(net.input_std))
        elif mean_rgb is not None:
            net.input_mean.copy_(torch.as_tensor(mean_rgb, dtype=net.input_mean.dtype).view(1, 3, 1, 1) / 255.0)
            net.input_std.fill_(1.0 / 255.0)
    report.loaded = [k for k in expected if k in tensors]
    report.mean_rgb = tuple(float(v) for v in net.input_mean.flatten() * 255.0)
    return report


def matconvnet_to_torch(filters, biases, shapes: tuple[tuple[int, ...], tuple[int]], param_shape,
                        name: str = "layer") -> tuple[torch.Tensor, torch.Tensor]:
    """One MatConvNet layer -> ``(weight, bias)`` for our layer.

    ``filters`` ``(h, w, in, out)`` (trailing singleton dimensions may be missing, as MATLAB
    drops them) and ``biases`` (``(1, out)``, ``(out, 1)`` or ``(out,)``) are arrays or tensors
    (also on the ``meta`` device); ``shapes`` is the layer's entry of
    :func:`vggface_matconvnet_shapes`; ``param_shape`` is our weight's shape (``(out, in, h, w)``
    for a conv, ``(out, in * h * w)`` for fc6 / fc7). Raises :class:`ValueError` naming ``name``
    when the shapes do not fit.
    """
    f = filters if isinstance(filters, torch.Tensor) else torch.as_tensor(np.asarray(filters, dtype=np.float32))
    b = biases if isinstance(biases, torch.Tensor) else torch.as_tensor(np.asarray(biases, dtype=np.float32))
    while f.ndim < 4:
        f = f.unsqueeze(-1)
    want_f, want_b = tuple(shapes[0]), tuple(shapes[1])
    if tuple(f.shape) != want_f:
        raise ValueError(f"layer {name}: filters have shape {tuple(f.shape)} (h, w, in, out), expected {want_f}")
    b = b.reshape(-1)
    if b.numel() != want_b[0]:
        raise ValueError(f"layer {name}: biases have {b.numel()} values, expected {want_b[0]}")
    w = f.permute(3, 2, 0, 1).reshape(tuple(param_shape))
    return w.contiguous().float(), b.contiguous().float()


# -- MatConvNet .mat -------------------------------------------------------------------------

def _unwrap(x):
    """Peel one-element object arrays (a MATLAB 1x1 cell or struct)."""
    while isinstance(x, np.ndarray) and x.dtype == object and x.size == 1:
        x = x.reshape(-1)[0]
    return x


def _field(s, name: str):
    from scipy.io.matlab import mat_struct

    s = _unwrap(s)
    if isinstance(s, mat_struct) and name in s._fieldnames:
        return getattr(s, name)
    if isinstance(s, dict):
        return s.get(name)
    return None


def _text(x) -> str:
    x = _unwrap(x)
    if isinstance(x, str):
        return x
    if isinstance(x, np.ndarray) and x.dtype.kind == "U":
        return "".join(x.reshape(-1).tolist())
    return ""


def _items(x) -> list:
    """The elements of a MATLAB cell or struct array, in order."""
    if isinstance(x, np.ndarray) and x.dtype == object:
        return [_unwrap(e) for e in x.reshape(-1, order="F")]
    return [_unwrap(x)]


def _numeric(x):
    x = _unwrap(x)
    if isinstance(x, np.ndarray) and x.dtype.kind in "fiub" and x.size:
        return x
    return None


_PARAM_RE = re.compile(r"^(conv\d+_\d+|fc\d+)_?(f|b|filters?|bias(?:es)?|weights?)$")


def _matconvnet_layers(top: dict, path) -> tuple[list[tuple[str, object, object]], object, list[str]]:
    """``[(name, filters, biases)]`` of the conv layers of a simplenn or DagNN network, the
    normalisation struct (or None) and notes."""
    net = top.get("net")
    holder = net if net is not None and _field(net, "layers") is not None else None
    get = (lambda k: _field(holder, k)) if holder is not None else top.get
    layers = get("layers")
    if layers is None:
        names = ", ".join(k for k in top if not k.startswith("__")) or "none"
        raise WeightLoadError(f"{path}: no MatConvNet network found (expected a 'layers' cell array at the top level "
                              f"or inside a struct 'net'); the file holds: {names}")
    norm = _field(get("meta"), "normalization") if get("meta") is not None else None
    if norm is None:
        norm = get("normalization")
    params = get("params")
    out, notes = [], []
    if params is not None and _items(params) and _field(_items(params)[0], "value") is not None:      # DagNN
        found: dict[str, dict[str, object]] = {}
        for p in _items(params):
            m = _PARAM_RE.match(_text(_field(p, "name")))
            if m:
                kind = "b" if m.group(2).startswith("b") else "f"
                found.setdefault(m.group(1), {})[kind] = _field(p, "value")
        out = [(n, d.get("f"), d.get("b")) for n, d in found.items()]
        notes.append("DagNN network")
        return out, norm, notes
    unnamed = []
    for layer in _items(layers):
        ltype, name = _text(_field(layer, "type")), _text(_field(layer, "name"))
        weights = _field(layer, "weights")
        if weights is not None and _numeric(weights) is None:
            w = [_unwrap(e) for e in np.asarray(weights, dtype=object).reshape(-1)]
            filters, biases = (w + [None, None])[:2]
        else:
            filters, biases = _field(layer, "filters"), _field(layer, "biases")
        if ltype not in ("conv", "") or _numeric(filters) is None:
            continue
        (out if name else unnamed).append((name, filters, biases))
    if not any(n in _LAYERS for n, _, _ in out) and unnamed + out:
        # no recognisable names: take the conv layers in order (13 convs, fc6, fc7, fc8)
        order = VGGFACE_CONV_NAMES + ("fc6", "fc7", "fc8")
        seq = out + unnamed
        out = [(order[i] if i < len(order) else f"extra{i}", f, b) for i, (_, f, b) in enumerate(seq)]
        notes.append("layers mapped by order (the file's conv layers have no VGG-Face names)")
    elif unnamed:
        out += [(f"unnamed conv layer #{i + 1}", f, b) for i, (_, f, b) in enumerate(unnamed)]
    return out, norm, notes


def _mean_from_normalization(norm) -> tuple[float, float, float] | None:
    avg = _numeric(_field(norm, "averageImage")) if norm is not None else None
    if avg is None:
        return None
    a = np.asarray(avg, dtype=np.float64)
    if a.size == 3:
        return tuple(a.reshape(3).tolist())
    if a.ndim == 3 and a.shape[-1] == 3:          # a full mean image (H, W, 3): its mean pixel
        return tuple(a.reshape(-1, 3).mean(0).tolist())
    return None


def load_vggface_matconvnet(net: VGGFace16, path, *, strict: bool = True) -> LoadReport:
    """Load the MatConvNet ``vgg-face.mat`` (simplenn; also DagNN) into ``net``.

    Reads the conv layers ``conv1_1 .. conv5_3``, ``fc6`` and ``fc7`` (``layers`` at the top
    level or inside a struct ``net``; weights as a ``weights = {filters, biases}`` cell or as
    separate ``filters`` / ``biases`` fields), ignores ``fc8``, and sets the input
    normalisation from ``meta.normalization.averageImage`` (or ``normalization.averageImage``)
    when present, else to :data:`VGGFACE_MEAN_RGB`.

    With ``strict`` (default) any missing or unknown layer raises :class:`WeightLoadError`
    (nothing is copied); otherwise what fits is loaded and the report lists the rest. Shape
    mismatches always raise. The file must be a MATLAB v7 (or older) file; v7.3 is HDF5 and is
    refused with a hint.
    """
    import scipy.io

    _check_net(net)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the MatConvNet vgg-face.mat)")
    try:
        top = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=False)
    except NotImplementedError as e:
        raise WeightLoadError(f"{path}: a MATLAB v7.3 (HDF5) file, which scipy cannot read; re-save it in MATLAB "
                              f"with save(file, '-struct', 'net', '-v7') or convert it to a PyTorch state dict") from e
    except Exception as e:  # noqa: BLE001 -- scipy raises many types on garbage
        raise WeightLoadError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e})") from e
    layers, norm, notes = _matconvnet_layers(top, path)
    report = LoadReport(source=str(path), notes=notes)
    shapes = vggface_matconvnet_shapes(net.width)
    expected = _expected_params(net)
    tensors: dict[str, torch.Tensor] = {}
    for name, filters, biases in layers:
        if name == "fc8":
            report.ignored.append("fc8 (the identity classifier)")
            continue
        if name not in shapes:
            report.unexpected.append(name)
            continue
        if name in {k.split(".")[0] for k in tensors}:
            raise WeightLoadError(f"{path}: layer {name} appears twice")
        if _numeric(biases) is None:
            raise WeightLoadError(f"{path}: layer {name} has no biases")
        try:
            w, b = matconvnet_to_torch(_numeric(filters), _numeric(biases), shapes[name], expected[f"{name}.weight"],
                                       name)
        except ValueError as e:
            raise WeightLoadError(f"{path}: {e}") from e
        tensors[f"{name}.weight"], tensors[f"{name}.bias"] = w, b
    mean = _mean_from_normalization(norm)
    report.notes.append("mean pixel from the file's averageImage" if mean is not None
                        else "no averageImage in the file: using the published VGG-Face mean pixel")
    return _finish(net, tensors, report, strict, mean if mean is not None else VGGFACE_MEAN_RGB)


# -- PyTorch state dicts ---------------------------------------------------------------------

_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "weights", "params")


def read_state_dict(path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``torch.load(path, map_location="cpu", weights_only=True)`` -> ``(tensors, skipped)``.

    Unwraps common checkpoint dicts (``{"state_dict": ...}``, ``{"model": ...}``, ...) and
    returns the tensor entries and the names of non-tensor entries. Errors name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a PyTorch state dict)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- pickle / zip errors of many kinds
        raise WeightLoadError(f"{path}: cannot be read as a PyTorch state dict with weights_only=True "
                              f"({type(e).__name__}: {e})") from e
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise WeightLoadError(f"{path}: holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightLoadError(f"{path}: the state dict holds no tensors")
    return tensors, [str(k) for k in obj if not isinstance(obj[k], torch.Tensor)]


_CONV_RE = re.compile(r"(?:^|\.)conv_?(\d)_(\d)\.(weight|bias)$")
_FC_RE = re.compile(r"(?:^|\.)fc_?(\d+)\.(weight|bias)$")
_SEQ_RE = re.compile(r"(?:^|\.)(features|classifier)\.(\d+)\.(weight|bias)$")
_BUF_RE = re.compile(r"(?:^|\.)(input_mean|input_std)$")


def _vgg_keys(sd: dict[str, torch.Tensor], report: LoadReport) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Map the file's keys onto ours: ``({our_key: file_key}, buffers)``."""
    mapping: dict[str, str] = {}
    buffers: dict[str, torch.Tensor] = {}
    seq: dict[str, dict[int, dict[str, str]]] = {"features": {}, "classifier": {}}

    def put(ours, key):
        if ours in mapping:
            raise WeightLoadError(f"{report.source}: both {mapping[ours]!r} and {key!r} map to {ours}")
        mapping[ours] = key

    for key in sd:
        if m := _CONV_RE.search(key):
            put(f"conv{m.group(1)}_{m.group(2)}.{m.group(3)}", key)
        elif m := _FC_RE.search(key):
            n = int(m.group(1))
            if n in (6, 7):
                put(f"fc{n}.{m.group(2)}", key)
            elif n == 8:
                report.ignored.append(key)
            else:
                report.unexpected.append(key)
        elif m := _SEQ_RE.search(key):
            seq[m.group(1)].setdefault(int(m.group(2)), {})[m.group(3)] = key
        elif m := _BUF_RE.search(key):
            buffers[m.group(1)] = sd[key]
        else:
            report.unexpected.append(key)
    # torchvision-style indices: the 13 conv layers of `features`, then fc6 fc7 fc8 of `classifier`
    for part, names, ndims in (("features", VGGFACE_CONV_NAMES, (4,)), ("classifier", ("fc6", "fc7", "fc8"), (2, 4))):
        layers = [i for i in sorted(seq[part]) if "weight" in seq[part][i] and sd[seq[part][i]["weight"]].ndim in ndims]
        for i in sorted(seq[part]):
            if i not in layers:
                report.unexpected += list(seq[part][i].values())
        for j, i in enumerate(layers):
            if j >= len(names):
                report.unexpected += list(seq[part][i].values())
            elif names[j] == "fc8":
                report.ignored += list(seq[part][i].values())
            else:
                for p, key in seq[part][i].items():
                    put(f"{names[j]}.{p}", key)
    return mapping, buffers


def load_vggface_state_dict(net: VGGFace16, path, *, strict: bool = True, channel_order: str = "rgb",
                            mean_rgb=None) -> LoadReport:
    """Load VGG-Face weights from a PyTorch state dict (``.pth`` / ``.pt``) into ``net``.

    Accepted key layouts (any prefix such as ``module.`` or ``backbone.`` is ignored):

    * ours / MatConvNet names: ``conv1_1.weight`` .. ``conv5_3.bias``, ``fc6.weight``, ``fc7.*``;
      also ``conv_1_1.weight`` spellings;
    * torchvision-style indices: ``features.<i>.weight`` (the 13 4-D conv weights in order of
      ``i``) and ``classifier.<i>.weight`` (fc6, fc7, fc8 in order);
    * fc6 / fc7 either as Linear weights ``(4096, 25088)`` / ``(4096, 4096)`` or as conv
      weights ``(4096, 512, 7, 7)`` / ``(4096, 4096, 1, 1)`` (flattened in (C, H, W) order).

    fc8 (the classifier) is ignored. ``input_mean`` / ``input_std`` entries (our own
    checkpoints) set the normalisation; otherwise ``mean_rgb`` (RGB, 0..255) does if given,
    else the network keeps its current one (VGG-Face's mean by default).
    ``channel_order="bgr"`` is for weights converted from Caffe, whose first layer reads BGR:
    conv1_1's input channels are reversed so that the network reads RGB.

    With ``strict`` (default) missing or unexpected keys raise :class:`WeightLoadError` naming
    the file and listing them (nothing is copied); with ``strict=False`` they are only reported.
    Shape mismatches always raise.
    """
    _check_net(net)
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    sd, skipped = read_state_dict(path)
    report = LoadReport(source=str(path), ignored=[f"{k} (not a tensor)" for k in skipped])
    mapping, buffers = _vgg_keys(sd, report)
    expected = _expected_params(net)
    tensors: dict[str, torch.Tensor] = {}
    for ours, key in mapping.items():
        v = sd[key].detach().float()
        want = expected[ours]
        if ours.startswith("fc") and ours.endswith(".weight") and v.ndim == 4:
            conv_form = (want[0], want[1] // (VGGFACE_POOL ** 2 if ours.startswith("fc6") else 1),
                         *((VGGFACE_POOL,) * 2 if ours.startswith("fc6") else (1, 1)))
            if tuple(v.shape) != conv_form:
                raise WeightLoadError(f"{path}: {key} has shape {tuple(v.shape)}, expected {conv_form} "
                                      f"(or {tuple(want)}) for {ours}")
            v = v.reshape(want)
        elif ours.endswith(".bias"):
            v = v.reshape(-1)
        if tuple(v.shape) != tuple(want):
            raise WeightLoadError(f"{path}: {key} has shape {tuple(sd[key].shape)}, expected {tuple(want)} for {ours} "
                                  f"of VGGFace16(width={net.width})")
        tensors[ours] = v
    if channel_order == "bgr" and "conv1_1.weight" in tensors:
        tensors["conv1_1.weight"] = tensors["conv1_1.weight"].flip(1)
        report.notes.append("conv1_1 input channels reversed (BGR weights -> RGB input)")
    norm_buffers = None
    if "input_mean" in buffers and "input_std" in buffers:
        m, sd_ = buffers["input_mean"].float().reshape(-1), buffers["input_std"].float().reshape(-1)
        if m.numel() != 3 or sd_.numel() not in (1, 3):
            raise WeightLoadError(f"{path}: input_mean / input_std must hold 3 (or 1) values, got shapes "
                                  f"{tuple(buffers['input_mean'].shape)} and {tuple(buffers['input_std'].shape)}")
        norm_buffers = (m, sd_.expand(3))
        report.notes.append("normalisation from the file's input_mean / input_std")
    return _finish(net, tensors, report, strict, mean_rgb, norm_buffers)


def load_vggface(net: VGGFace16, path, **kw) -> LoadReport:
    """:func:`load_vggface_matconvnet` for ``.mat`` files, else :func:`load_vggface_state_dict`."""
    if Path(path).suffix.lower() == ".mat":
        return load_vggface_matconvnet(net, path, **kw)
    return load_vggface_state_dict(net, path, **kw)


__all__ = [
    "VGGFace16", "VGGFACE_BLOCKS", "VGGFACE_CONV_NAMES", "VGGFACE_FC", "VGGFACE_POOL", "VGGFACE_CLASSES",
    "VGGFACE_MEAN_RGB", "VGG_MIN_SIZE", "LoadReport", "WeightLoadError", "vggface_matconvnet_shapes",
    "matconvnet_to_torch", "load_vggface_matconvnet", "load_vggface_state_dict", "load_vggface", "read_state_dict",
]
