"""Batch normalisation folded into the convolutions: the same outputs, no BatchNorm left, the
original untouched."""

from __future__ import annotations

import torch
from torch import nn

from stn3dmm.nets import fold_batch_norm
from stn3dmm.nets.localiser import build_localiser


def _trained_like(net: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms, as training would."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return net.eval()


def test_a_folded_localiser_predicts_the_same_theta_without_batch_norm():
    net = _trained_like(build_localiser("mobilenetv2", n_id=10, n_exp=10, image_size=64))
    n_norms = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    folded = fold_batch_norm(net)
    assert n_norms > 30 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == n_norms      # left alone
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = net(x), folded(x)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_a_network_in_group_norm_is_copied_unchanged():
    net = build_localiser("mobilenetv2", n_id=10, n_exp=10, image_size=64, norm="group").eval()
    folded = fold_batch_norm(net)
    assert folded is not net
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), folded.state_dict().values()))
