"""Tests of the Localiser: shapes, the start pose at init, gradients, registry, config, pretrained
weights, per-sample independence and the head's learning-rate multipliers."""

import math

import numpy as np
import pytest
import scipy.io
import torch

from stn3dmm.nets.localiser import (ALIASES, LOCALISERS, Localiser, ResNet18, ThetaHead, VGGFace16, WeightLoadError,
                               build_backbone, build_localiser, load_backbone_state_dict, param_groups,
                               vggface_matconvnet_shapes)

# thin networks keep the tests fast; the full-size layouts are tested in tests/nets
SMALL = {"resnet18": {"width": 0.25}, "mobilenet": {"width": 0.5},
         "vggface16": {"width": 1 / 16, "backbone_options": {"dropout": 0.0}}}


def _net(name, size, n_id=4, n_exp=3, **kw):
    torch.manual_seed(0)
    return build_localiser(name, n_id=n_id, n_exp=n_exp, image_size=size, **{**SMALL[name], **kw})


def test_registry():
    assert {"resnet18", "mobilenet", "vggface16"} <= set(LOCALISERS)
    assert all(a_to in LOCALISERS for a_to in ALIASES.values())
    assert isinstance(build_localiser("VGG16", width=1 / 16).backbone, VGGFace16)
    assert isinstance(build_backbone("resnet", width=0.25), ResNet18)
    with pytest.raises(ValueError, match="unknown localiser backbone 'alexnet'.*resnet18"):
        build_localiser("alexnet")
    with pytest.raises(ValueError, match="vggface16 has no normalisation|accepts norm"):
        build_localiser("vggface16", norm="batch", width=1 / 16)
    with pytest.raises(ValueError, match="accepts norm"):
        build_localiser("resnet18", norm="layer")


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("size", [64, 112, 224])
def test_shapes(name, size):
    net = _net(name, size)
    theta = net(torch.rand(2, 3, size, size))
    assert theta.shape == (2, 6 + 4 + 3) and net.n_params == 13
    assert net.n_weights == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name,size", [("resnet18", 112), ("mobilenet", 64), ("vggface16", 224)])
@pytest.mark.parametrize("train", [False, True])
def test_start_pose_at_init(name, size, train):
    """Before training the output is the mean face, frontal, centred, at s0 = S / 224, whatever
    the image: [0, 0, 0, (S-1)/2, (S-1)/2, log(S/224), 0, ...]."""
    net = _net(name, size).train(train)
    with torch.no_grad():
        theta = net(torch.rand(4, 3, size, size))
    start = torch.zeros(13)
    start[3:5] = (size - 1) / 2
    start[5] = math.log(size / 224)
    torch.testing.assert_close(net.start_theta, start)
    dev = (theta - start).abs()
    # within 0.05 of the start in each parameter's own unit (t: S/8 px, so under 1.5 px at 224)
    assert (dev / net.head.output_scale).max() < 0.05, dev.max()
    assert dev[:, 3:5].max() < 1.5
    assert dev.max() > 0          # the image does reach theta


@pytest.mark.parametrize("name", list(SMALL))
def test_gradients_reach_every_parameter(name):
    net = _net(name, 64).train()
    theta = net(torch.rand(4, 3, 64, 64))
    (theta * torch.randn_like(theta)).sum().backward()
    for n, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n


def test_group_norm_localiser_is_per_sample():
    net = _net("resnet18", 64, norm="group").train()
    x = torch.rand(4, 3, 64, 64)
    together = net(x)
    alone = torch.cat([net(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_normalises_its_input():
    net = _net("vggface16", 64).eval()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(net.features(x), net.backbone(255 * x - net.backbone.input_mean * 255), rtol=1e-4,
                               atol=1e-4)


def test_bad_images():
    net = _net("resnet18", 64)
    with pytest.raises(ValueError, match="takes 64 x 64 images"):
        net(torch.rand(1, 3, 112, 112))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="floating-point"):
        net(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_config_roundtrip():
    net = _net("mobilenet", 96, norm="group", scale_map="original")
    again = Localiser.from_config(net.config)
    assert again.config == net.config
    again.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 96, 96)
    net.eval(), again.eval()
    torch.testing.assert_close(again(x), net(x))
    assert again.start_theta[5].item() == pytest.approx(math.log(96 / 224) / math.log(0.99))
    with pytest.raises(ValueError, match=r"unknown localiser option\(s\) \['depth'\]"):
        Localiser.from_config({"backbone": "resnet18", "depth": 50})


def test_param_groups_on_localiser():
    net = _net("resnet18", 64)
    groups = {g["name"]: g for g in param_groups(net, 1e-3, 1e-4)}
    assert groups["head.weight"]["params"] == [net.head.weight] and groups["head.weight"]["lr"] == pytest.approx(4e-3)
    assert groups["head.bias"]["params"] == [net.head.bias] and groups["head.bias"]["lr"] == pytest.approx(8e-3)
    assert groups["head.bias"]["weight_decay"] == 0 and groups["backbone"]["weight_decay"] == 1e-4
    assert len(groups["backbone"]["params"]) == len(list(net.backbone.parameters()))
    assert isinstance(net.head, ThetaHead)


def test_pretrained_vggface_mat(tmp_path):
    """A Localiser built with pretrained=vgg-face.mat has the file's weights and mean pixel."""
    rng = np.random.default_rng(0)
    layers = np.empty((1, 16), dtype=object)
    shapes = dict(vggface_matconvnet_shapes(1 / 16))
    shapes["fc8"] = ((1, 1, 256, 7), (7,))
    arrays = {}
    for i, (name, (fs, bs)) in enumerate(shapes.items()):
        arrays[name] = rng.standard_normal(fs).astype(np.float32)
        w = np.empty((1, 2), dtype=object)
        w[0, 0], w[0, 1] = arrays[name], np.zeros((1, bs[0]), np.float32)
        layers[0, i] = {"name": name, "type": "conv", "weights": w}
    meta = {"normalization": {"averageImage": np.array([[[100.0, 110.0, 120.0]]])}}
    scipy.io.savemat(str(tmp_path / "vgg-face.mat"), {"net": {"layers": layers, "meta": meta}})
    net = build_localiser("vggface16", width=1 / 16, image_size=112, pretrained=tmp_path / "vgg-face.mat")
    assert net.load_report.ok and net.config["pretrained"].endswith("vgg-face.mat")
    torch.testing.assert_close(net.backbone.conv4_2.weight, torch.as_tensor(arrays["conv4_2"]).permute(3, 2, 0, 1))
    torch.testing.assert_close(net.backbone.input_mean.flatten() * 255, torch.tensor([100.0, 110.0, 120.0]))
    # the head is new and still at the start pose
    assert net.head.bias[3].item() == 55.5


def test_pretrained_backbone_state_dict(tmp_path):
    src = _net("resnet18", 64, norm="group")
    torch.save({"model": src.state_dict()}, tmp_path / "ckpt.pt")           # a whole-localiser checkpoint
    net = build_localiser("resnet18", n_id=4, n_exp=3, image_size=64, norm="group", width=0.25,
                          pretrained=str(tmp_path / "ckpt.pt"))
    assert net.load_report.ok and set(net.load_report.ignored) == {"head.weight", "head.bias"}
    for (k, a), b in zip(net.backbone.state_dict().items(), src.backbone.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    # the wrong architecture is refused, naming the file
    with pytest.raises(WeightLoadError, match="ckpt.pt: .*has shape"):
        build_localiser("resnet18", width=0.5, norm="group", pretrained=tmp_path / "ckpt.pt")
    with pytest.raises(WeightLoadError, match=r"(?s)ckpt.pt: the file does not fit ResNet18.*missing"):
        load_backbone_state_dict(ResNet18(width=0.25, norm="batch"), tmp_path / "ckpt.pt")
