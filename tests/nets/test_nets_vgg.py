"""Tests of VGGFace16 and its weight loaders, on small synthetic files in the real formats.

A thin copy of the network (width 1/16: 4..32 channels, fc 256) keeps the files tiny; the
full-size layer shapes are checked on the ``meta`` device, where nothing is allocated.
"""

import struct

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F

from stn3dmm.nets.vgg import (VGGFACE_CONV_NAMES, VGGFACE_MEAN_RGB, VGGFace16, WeightLoadError, load_vggface,
                              load_vggface_matconvnet, load_vggface_state_dict, matconvnet_to_torch,
                              vggface_matconvnet_shapes)

WIDTH = 1 / 16
BLOCK_ENDS = {"conv1_2": 1, "conv2_2": 2, "conv3_3": 3, "conv4_3": 4, "conv5_3": 5}
TORCHVISION_CONV_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def _arrays(width=WIDTH, seed=0, n_classes=5):
    """Random MatConvNet-shaped (filters (h, w, in, out), biases (out,)) per layer, plus fc8."""
    rng = np.random.default_rng(seed)
    shapes = vggface_matconvnet_shapes(width)
    out = {}
    for name, (fs, bs) in shapes.items():
        fan_in = fs[0] * fs[1] * fs[2]
        out[name] = ((rng.standard_normal(fs) * np.sqrt(2.0 / fan_in)).astype(np.float32),
                     (0.1 * rng.standard_normal(bs)).astype(np.float32))
    fc = shapes["fc7"][0][3]
    out["fc8"] = (rng.standard_normal((1, 1, fc, n_classes)).astype(np.float32), np.zeros(n_classes, np.float32))
    return out


def _cell(items):
    c = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        c[0, i] = item
    return c


def _simplenn_layers(arrays, style="weights"):
    """A MatConvNet simplenn ``layers`` cell array (conv / relu / pool / dropout / softmax structs)."""
    layers = []
    for i, (name, (f, b)) in enumerate(arrays.items()):
        bias = b.reshape(1, -1) if i % 2 else b.reshape(-1, 1)        # both orientations occur
        conv = {"name": name, "type": "conv", "stride": np.array([1.0, 1.0]), "pad": np.zeros(4)}
        if style == "weights":
            conv["weights"] = _cell([f, bias])
        else:                                                           # older MatConvNet files
            conv["filters"], conv["biases"] = f, bias
        layers.append(conv)
        if name == "fc8":
            layers.append({"name": "prob", "type": "softmax"})
            continue
        layers.append({"name": name.replace("conv", "relu").replace("fc", "relu"), "type": "relu"})
        if name in BLOCK_ENDS:
            layers.append({"name": f"pool{BLOCK_ENDS[name]}", "type": "pool", "method": "max",
                           "pool": np.array([2.0, 2.0]), "stride": np.array([2.0, 2.0]), "pad": np.zeros(4)})
        if name in ("fc6", "fc7"):
            layers.append({"name": f"dropout{name[2]}", "type": "dropout", "rate": 0.5})
    return _cell(layers)


def _write_mat(path, arrays, *, wrap=False, style="weights", average=VGGFACE_MEAN_RGB, meta=True):
    layers = _simplenn_layers(arrays, style)
    content = {"layers": layers}
    if average is not None:
        norm = {"averageImage": np.asarray(average, dtype=np.float32), "imageSize": np.array([224.0, 224, 3])}
        if meta:
            content["meta"] = {"normalization": norm, "classes": {"name": _cell(["a", "b"])}}
        else:
            content["normalization"] = norm
    scipy.io.savemat(str(path), {"net": content} if wrap else content)
    return path


# ----------------------------------------------------------------------------------------------
# a MatConvNet-semantics reference in numpy ((H, W, C) images, (h, w, in, out) filters)
# ----------------------------------------------------------------------------------------------

def _mcn_conv(x, f, b, pad):
    h, w = f.shape[:2]
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    H, W = xp.shape[0] - h + 1, xp.shape[1] - w + 1
    y = np.zeros((H, W, f.shape[3]), dtype=np.float64) + b.reshape(-1)
    for a in range(h):
        for c in range(w):
            y += xp[a:a + H, c:c + W, :] @ f[a, c].astype(np.float64)
    return y


def _mcn_forward(arrays, image255, average):
    x = image255.astype(np.float64) - np.asarray(average).reshape(1, 1, 3)
    for name in VGGFACE_CONV_NAMES:
        x = np.maximum(_mcn_conv(x, *arrays[name], pad=1), 0)
        if name in BLOCK_ENDS:
            H, W, C = x.shape
            x = x[:H // 2 * 2, :W // 2 * 2].reshape(H // 2, 2, W // 2, 2, C).max(axis=(1, 3))
    x = np.maximum(_mcn_conv(x, *arrays["fc6"], pad=0), 0)       # 7x7 valid conv on the 7x7 map
    x = np.maximum(_mcn_conv(x, *arrays["fc7"], pad=0), 0)
    return x.reshape(-1)


# ----------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64, 112, 224])
def test_vgg_shapes(size):
    net = VGGFace16(width=WIDTH).eval()
    y = net(net.normalize(torch.rand(2, 3, size, size)))
    assert y.shape == (2, net.out_features) == (2, 256)
    assert torch.isfinite(y).all()


def test_vgg_too_small():
    with pytest.raises(ValueError, match="at least 32"):
        VGGFace16(width=WIDTH)(torch.rand(1, 3, 31, 64))


def test_vgg_normalize_is_vggface_mean_subtraction():
    net = VGGFace16(width=WIDTH)
    x = torch.rand(1, 3, 4, 4)
    want = 255 * x - torch.tensor(VGGFACE_MEAN_RGB).view(1, 3, 1, 1)
    torch.testing.assert_close(net.normalize(x), want, rtol=1e-5, atol=1e-4)


def test_full_size_layer_shapes_on_meta_device():
    """The full network has VGG-Face's shapes, and the converter maps the published MatConvNet
    shapes onto them (no memory: meta tensors)."""
    shapes = vggface_matconvnet_shapes()
    assert shapes["conv1_1"] == ((3, 3, 3, 64), (64,))
    assert shapes["conv3_1"] == ((3, 3, 128, 256), (256,))
    assert shapes["conv5_3"] == ((3, 3, 512, 512), (512,))
    assert shapes["fc6"] == ((7, 7, 512, 4096), (4096,))
    assert shapes["fc7"] == ((1, 1, 4096, 4096), (4096,))
    assert list(shapes) == list(VGGFACE_CONV_NAMES) + ["fc6", "fc7"]
    with torch.device("meta"):
        net = VGGFace16()
    # VGG-16 minus its 1000-way classifier: 14,714,688 conv + 102,764,544 fc6 + 16,781,312 fc7
    assert sum(p.numel() for p in net.parameters()) == 134_260_544
    assert net.out_features == 4096
    for name, (fs, bs) in shapes.items():
        layer = getattr(net, name)
        w, b = matconvnet_to_torch(torch.empty(fs, device="meta"), torch.empty((1, bs[0]), device="meta"),
                                   (fs, bs), layer.weight.shape, name)
        assert w.shape == layer.weight.shape and b.shape == layer.bias.shape, name
    # fc7 stored by MATLAB without its leading 1x1 is refused, with the layer named
    with pytest.raises(ValueError, match="layer fc7"):
        matconvnet_to_torch(torch.empty((4096, 4096), device="meta"), torch.empty(4096, device="meta"),
                            shapes["fc7"], net.fc7.weight.shape, "fc7")


# ----------------------------------------------------------------------------------------------
# MatConvNet loader
# ----------------------------------------------------------------------------------------------

def test_matconvnet_asymmetric_filter_lands_transposed_correctly(tmp_path):
    """A one-hot filter at (row 0, col 1, in 0, out 0) reads the pixel ABOVE; (row 1, col 2, in 2,
    out 1) reads the blue pixel to the RIGHT -- correlation, rows = h, no flip."""
    arrays = _arrays()
    f = np.zeros_like(arrays["conv1_1"][0])
    f[0, 1, 0, 0] = 1.0
    f[1, 2, 2, 1] = 2.0
    arrays["conv1_1"] = (f, np.zeros_like(arrays["conv1_1"][1]))
    net = VGGFace16(width=WIDTH)
    load_vggface_matconvnet(net, _write_mat(tmp_path / "vgg-face.mat", arrays))
    x = torch.rand(1, 3, 9, 11)
    y = net.conv1_1(x)[0]
    xp = F.pad(x[0], (1, 1, 1, 1))
    torch.testing.assert_close(y[0], xp[0, 0:9, 1:12])          # y[i, j] = x_red[i - 1, j]
    torch.testing.assert_close(y[1], 2 * xp[2, 1:10, 2:13])     # y[i, j] = 2 x_blue[i, j + 1]
    assert y[2:].abs().max() == 0


def test_matconvnet_fc6_flattening_matches_7x7_conv(tmp_path):
    """fc6 is a 7x7 conv in MatConvNet: a one-hot filter at (row 2, col 5, in c, out o) must pick
    feature (c, 2, 5) of the 7x7 map."""
    arrays = _arrays()
    f6 = np.zeros_like(arrays["fc6"][0])
    f6[2, 5, 3, 7] = 1.0
    arrays["fc6"] = (f6, np.zeros_like(arrays["fc6"][1]))
    net = VGGFace16(width=WIDTH)
    load_vggface_matconvnet(net, _write_mat(tmp_path / "v.mat", arrays))
    feat = torch.rand(1, net.fc6.in_features // 49, 7, 7)
    out = net.fc6(torch.flatten(feat, 1))[0]
    assert out[7] == feat[0, 3, 2, 5]
    assert out.abs().sum() == out[7].abs()


@pytest.mark.parametrize("wrap,style,meta", [(False, "weights", True), (True, "weights", True),
                                             (False, "filters", False), (True, "filters", True)])
def test_matconvnet_whole_network_matches_reference(tmp_path, wrap, style, meta):
    """Every layer loaded: our forward pass equals a MatConvNet-semantics numpy forward pass
    (HWC images, (h, w, in, out) filters, mean subtraction in 0..255) at 224 x 224."""
    arrays = _arrays(seed=1)
    average = (120.0, 100.0, 90.0)
    path = _write_mat(tmp_path / "vgg-face.mat", arrays, wrap=wrap, style=style, average=average, meta=meta)
    net = VGGFace16(width=WIDTH)
    report = load_vggface_matconvnet(net, path)
    assert report.ok and len(report.loaded) == 30 and any("fc8" in k for k in report.ignored)
    assert report.mean_rgb == pytest.approx(average, abs=1e-4)
    net.eval()
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (224, 224, 3)).astype(np.float64)
    want = _mcn_forward(arrays, img, average)
    x = torch.as_tensor(img / 255.0, dtype=torch.float32).permute(2, 0, 1)[None]
    with torch.no_grad():
        got = net(net.normalize(x))[0].double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * np.abs(want).max())


def test_matconvnet_mean_image_and_default_mean(tmp_path):
    arrays = _arrays()
    net = VGGFace16(width=WIDTH)
    img = np.stack([np.full((4, 4), 10.0), np.full((4, 4), 20.0), np.full((4, 4), 30.0)], -1)
    report = load_vggface_matconvnet(net, _write_mat(tmp_path / "a.mat", arrays, average=img))
    assert report.mean_rgb == pytest.approx((10, 20, 30), abs=1e-4)
    report = load_vggface_matconvnet(net, _write_mat(tmp_path / "b.mat", arrays, average=None))
    assert report.mean_rgb == pytest.approx(VGGFACE_MEAN_RGB, abs=1e-3)
    assert any("published" in n for n in report.notes)


def test_matconvnet_dagnn(tmp_path):
    arrays = _arrays(seed=3)
    params = []
    for name, (f, b) in arrays.items():
        params += [{"name": f"{name}f", "value": f}, {"name": f"{name}b", "value": b.reshape(-1, 1)}]
    layers = [{"name": n, "type": "dagnn.Conv", "params": _cell([f"{n}f", f"{n}b"])} for n in arrays]
    scipy.io.savemat(str(tmp_path / "dag.mat"), {"layers": _cell(layers), "params": _cell(params)})
    net = VGGFace16(width=WIDTH)
    report = load_vggface_matconvnet(net, tmp_path / "dag.mat")
    assert report.ok
    torch.testing.assert_close(net.conv2_1.weight, torch.as_tensor(arrays["conv2_1"][0]).permute(3, 2, 0, 1))


def test_matconvnet_bad_files(tmp_path):
    net = VGGFace16(width=WIDTH)
    before = net.conv1_1.weight.clone()
    with pytest.raises(FileNotFoundError, match="nothere.mat"):
        load_vggface_matconvnet(net, tmp_path / "nothere.mat")
    (tmp_path / "garbage.mat").write_bytes(b"this is not a mat file" * 20)
    with pytest.raises(WeightLoadError, match="garbage.mat"):
        load_vggface_matconvnet(net, tmp_path / "garbage.mat")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + b"\0" * 8 + struct.pack("<H", 0x0200) + b"IM"
    (tmp_path / "hdf5.mat").write_bytes(header + b"\0" * 512)
    with pytest.raises(WeightLoadError, match=r"hdf5.mat.*v7\.3"):
        load_vggface_matconvnet(net, tmp_path / "hdf5.mat")
    scipy.io.savemat(str(tmp_path / "other.mat"), {"weights": np.zeros(3)})
    with pytest.raises(WeightLoadError, match=r"other.mat: no MatConvNet network.*weights"):
        load_vggface_matconvnet(net, tmp_path / "other.mat")
    # a full-size file for a thin network: the layer and both shapes are named
    arrays = _arrays()
    arrays["conv2_1"] = (np.zeros((3, 3, 4, 9), np.float32), np.zeros(9, np.float32))
    with pytest.raises(WeightLoadError, match=r"wrong.mat: layer conv2_1: filters have shape \(3, 3, 4, 9\)"):
        load_vggface_matconvnet(net, _write_mat(tmp_path / "wrong.mat", arrays))
    # a missing layer: strict refuses and copies nothing; non-strict loads the rest and reports it
    arrays = _arrays()
    del arrays["conv3_2"]
    path = _write_mat(tmp_path / "missing.mat", arrays)
    with pytest.raises(WeightLoadError, match=r"(?s)missing.mat: .*nothing was loaded.*missing \(2\): conv3_2.weight"):
        load_vggface_matconvnet(net, path)
    assert torch.equal(net.conv1_1.weight, before)
    report = load_vggface_matconvnet(net, path, strict=False)
    assert report.missing == ["conv3_2.weight", "conv3_2.bias"]
    torch.testing.assert_close(net.conv1_1.weight, torch.as_tensor(arrays["conv1_1"][0]).permute(3, 2, 0, 1))


# ----------------------------------------------------------------------------------------------
# state-dict loader
# ----------------------------------------------------------------------------------------------

def _assert_same(a: VGGFace16, b: VGGFace16):
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        torch.testing.assert_close(va, vb, msg=ka)


def test_state_dict_own_layout_roundtrip(tmp_path):
    src = VGGFace16(width=WIDTH)
    with torch.no_grad():
        src.input_mean.fill_(0.5)
    torch.save(src.state_dict(), tmp_path / "ours.pth")
    net = VGGFace16(width=WIDTH)
    report = load_vggface(net, tmp_path / "ours.pth")
    assert report.ok and len(report.loaded) == 30
    _assert_same(src, net)


def test_state_dict_torchvision_layout(tmp_path):
    src = VGGFace16(width=WIDTH)
    sd = {}
    for idx, name in zip(TORCHVISION_CONV_INDEX, VGGFACE_CONV_NAMES):
        sd[f"features.{idx}.weight"] = getattr(src, name).weight
        sd[f"features.{idx}.bias"] = getattr(src, name).bias
    for idx, layer in ((0, src.fc6), (3, src.fc7)):
        sd[f"classifier.{idx}.weight"], sd[f"classifier.{idx}.bias"] = layer.weight, layer.bias
    sd["classifier.6.weight"], sd["classifier.6.bias"] = torch.zeros(5, 256), torch.zeros(5)
    torch.save({k: v.detach().clone() for k, v in sd.items()}, tmp_path / "tv.pth")
    net = VGGFace16(width=WIDTH)
    report = load_vggface_state_dict(net, tmp_path / "tv.pth")
    assert report.ok and set(report.ignored) == {"classifier.6.weight", "classifier.6.bias"}
    _assert_same(src, net)


def test_state_dict_conv_form_fc_with_prefix_and_wrapper(tmp_path):
    """fc6 / fc7 stored as conv weights (4096, 512, 7, 7) / (4096, 4096, 1, 1), ``module.`` and
    ``conv_1_1`` spellings, inside a checkpoint dict."""
    src = VGGFace16(width=WIDTH)
    sd = {}
    for name in VGGFACE_CONV_NAMES:
        b, i = name[4], name[6]
        sd[f"module.conv_{b}_{i}.weight"] = getattr(src, name).weight.detach().clone()
        sd[f"module.conv_{b}_{i}.bias"] = getattr(src, name).bias.detach().clone()
    c = src.fc6.in_features // 49
    sd["module.fc6.weight"] = src.fc6.weight.detach().reshape(-1, c, 7, 7).clone()
    sd["module.fc6.bias"] = src.fc6.bias.detach().clone()
    sd["module.fc7.weight"] = src.fc7.weight.detach()[:, :, None, None].clone()
    sd["module.fc7.bias"] = src.fc7.bias.detach().clone()
    sd["module.fc8.weight"], sd["module.fc8.bias"] = torch.zeros(5, 256, 1, 1), torch.zeros(5)
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pt")
    net = VGGFace16(width=WIDTH)
    report = load_vggface_state_dict(net, tmp_path / "wrapped.pt")
    assert report.ok and "module.fc8.weight" in report.ignored
    _assert_same(src, net)


def test_state_dict_bgr(tmp_path):
    src = VGGFace16(width=WIDTH)
    torch.save(src.state_dict(), tmp_path / "caffe.pth")
    net = VGGFace16(width=WIDTH)
    load_vggface_state_dict(net, tmp_path / "caffe.pth", channel_order="bgr")
    torch.testing.assert_close(net.conv1_1.weight, src.conv1_1.weight.flip(1))


def test_state_dict_bad_files(tmp_path):
    src = VGGFace16(width=WIDTH)
    net = VGGFace16(width=WIDTH)
    before = net.conv1_1.weight.clone()
    sd = dict(src.state_dict())
    del sd["conv3_2.weight"], sd["conv3_2.bias"]
    sd["extra.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(WeightLoadError, match=r"(?s)partial.pth: .*missing \(2\): conv3_2.weight, conv3_2.bias"
                                              r".*unexpected \(1\): extra.weight"):
        load_vggface_state_dict(net, tmp_path / "partial.pth")
    assert torch.equal(net.conv1_1.weight, before)
    report = load_vggface_state_dict(net, tmp_path / "partial.pth", strict=False)
    assert report.missing == ["conv3_2.weight", "conv3_2.bias"] and report.unexpected == ["extra.weight"]
    torch.testing.assert_close(net.conv1_1.weight, src.conv1_1.weight)
    # wrong shape (a full-width file for a thin net)
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "big.pth")
    with pytest.raises(WeightLoadError, match=r"big.pth: conv1_1.weight has shape \(64, 3, 3, 3\)"):
        load_vggface_state_dict(net, tmp_path / "big.pth", strict=False)
    # not a state dict at all / not loadable with weights_only
    (tmp_path / "junk.pth").write_bytes(b"\x00junk" * 50)
    with pytest.raises(WeightLoadError, match="junk.pth"):
        load_vggface_state_dict(net, tmp_path / "junk.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(WeightLoadError, match="tensor.pth: holds a Tensor"):
        load_vggface_state_dict(net, tmp_path / "tensor.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_vggface_state_dict(net, tmp_path / "absent.pth")
