"""Tests of the small CPU backbones (ResNet18, MobileNetV2Small) and the normalisation choice."""

import pytest
import torch
from torch import nn

from stn3dmm.nets.mobilenet import MobileNetV2Small
from stn3dmm.nets.resnet import NORMS, ResNet18, group_count, make_norm, scaled_channels

NETS = {"resnet18": ResNet18, "mobilenet": MobileNetV2Small}


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("size", [64, 96, 112, 224])
def test_shapes_any_size(name, size):
    net = NETS[name](width=0.25, norm="group")
    y = net(net.normalize(torch.rand(2, 3, size, size)))
    assert y.shape == (2, net.out_features) and torch.isfinite(y).all()


def test_full_size_resnet18_is_resnet18():
    # torchvision's resnet18 has 11,689,512 parameters, 513,000 of them in the 1000-way fc
    net = ResNet18()
    assert sum(p.numel() for p in net.parameters()) == 11_689_512 - 513_000
    assert net.out_features == 512


def test_width_multiplier():
    assert ResNet18(width=0.5).out_features == 256
    assert MobileNetV2Small(width=1.0).out_features == 640
    assert MobileNetV2Small(width=2.0).out_features == 1280
    small = sum(p.numel() for p in MobileNetV2Small(width=0.5).parameters())
    big = sum(p.numel() for p in MobileNetV2Small(width=1.0).parameters())
    assert small < big
    assert scaled_channels(64, 0.25) == 16 and scaled_channels(3, 1.0) == 8


def test_norm_choice():
    assert {type(make_norm(n, 64)) for n in NORMS} == {nn.BatchNorm2d, nn.GroupNorm, nn.Identity}
    assert group_count(64) == 16 and group_count(512) == 32 and group_count(24) == 6 and group_count(3) == 1
    for cls in NETS.values():
        for norm, kinds in (("group", (nn.GroupNorm,)), ("none", ())):
            net = cls(width=0.25, norm=norm)
            assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
            assert all(isinstance(m, kinds) for m in net.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)))
        with pytest.raises(ValueError, match="norm must be one of"):
            cls(norm="layer")
        with pytest.raises(ValueError, match="at least 32"):
            cls(width=0.25)(torch.rand(1, 3, 16, 64))


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("norm", ["group", "none"])
@pytest.mark.parametrize("train", [True, False])
def test_per_sample_norms_have_no_cross_sample_statistics(name, norm, train):
    """With GroupNorm (or none) a batch of 4 gives the outputs of its 4 images run alone."""
    torch.manual_seed(0)
    net = NETS[name](width=0.5, norm=norm).train(train)
    x = net.normalize(torch.rand(4, 3, 64, 64))
    together = net(x)
    alone = torch.cat([net(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_batchnorm_training_does_mix_samples():
    """The contrast: BatchNorm in training mode normalises over the batch."""
    torch.manual_seed(0)
    net = ResNet18(width=0.25, norm="batch").train()
    x = net.normalize(torch.rand(4, 3, 64, 64))
    assert not torch.allclose(net(x)[:2], net(x[:2]), atol=1e-4)


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("norm", NORMS)
def test_activations_keep_their_scale_at_init(name, norm):
    """Even in eval mode at init (BatchNorm = identity) and without norms, features neither
    vanish nor explode (fan-in init; residual branches scaled without norms)."""
    torch.manual_seed(0)
    net = NETS[name](norm=norm).eval()
    with torch.no_grad():
        y = net(net.normalize(torch.rand(2, 3, 64, 64)))
    assert 1e-2 < y.abs().mean() < 100
