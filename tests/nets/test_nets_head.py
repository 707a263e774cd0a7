"""Tests of the theta head's initialisation and of the optimiser parameter groups."""

import math

import pytest
import torch
from torch import nn

from stn3dmm.core.conventions import scale_from_log
from stn3dmm.nets.head import ThetaHead, param_groups, start_theta


@pytest.mark.parametrize("size,t,s0", [(224, 111.5, 1.0), (112, 55.5, 0.5), (64, 31.5, 64 / 224)])
def test_start_pose(size, t, s0):
    head = ThetaHead(512, 10, 5, image_size=size)
    b = head.bias.detach()
    assert head.n_params == head.out_features == 21
    assert b[:3].abs().max() == 0 and b[6:].abs().max() == 0
    assert b[3].item() == pytest.approx(t) and b[4].item() == pytest.approx(t)
    assert b[5].item() == pytest.approx(math.log(s0))
    assert scale_from_log(b[5]).item() == pytest.approx(s0)
    torch.testing.assert_close(head.start, b)


def test_start_pose_variants():
    th = start_theta(2, 3, image_size=(100, 160))                  # (H, W)
    assert th[3:5].tolist() == [79.5, 49.5]
    assert th[5].item() == pytest.approx(math.log(100 / 224))
    th = start_theta(0, 0, image_size=224, scale_map="original")   # s = 0.99 ** logs: logs = 0 <=> s = 1
    assert th.shape == (6,) and th[5].item() == pytest.approx(0.0, abs=1e-12)
    th = start_theta(0, 0, image_size=112, scale_map="original")
    assert scale_from_log(th[5], "original").item() == pytest.approx(0.5)
    assert start_theta(0, 0, 224, start_scale=1.5)[5].item() == pytest.approx(math.log(1.5))
    with pytest.raises(ValueError):
        start_theta(0, 0, 224, start_scale=0.0)


def test_weights_are_small_xavier():
    torch.manual_seed(0)
    head = ThetaHead(512, 10, 10)
    bound = 1e-3 * math.sqrt(6.0 / (512 + 26))
    w = head.weight.detach()
    assert w.abs().max() <= bound * (1 + 1e-6)
    assert w.abs().max() > 0.9 * bound and abs(w.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    with torch.no_grad():
        head.weight.fill_(1.0)
        head.bias.zero_()
    head.reset_parameters()
    assert head.weight.abs().max() <= bound * (1 + 1e-6) and head.bias[3].item() == 111.5


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = ThetaHead(8, 1, 1)


def test_param_groups():
    net = _Net()
    groups = param_groups(net, 0.1, 5e-4)
    by = {g["name"]: g for g in groups}
    assert by["backbone"]["lr"] == pytest.approx(0.1) and by["backbone"]["weight_decay"] == 5e-4
    assert by["head.weight"]["lr"] == pytest.approx(0.4) and by["head.weight"]["weight_decay"] == 5e-4
    assert by["head.bias"]["lr"] == pytest.approx(0.8) and by["head.bias"]["weight_decay"] == 0.0
    assert [by[k]["lr_mult"] for k in ("backbone", "head.weight", "head.bias")] == [1.0, 4.0, 8.0]
    assert by["head.weight"]["params"] == [net.head.weight] and by["head.bias"]["params"] == [net.head.bias]
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())
    # an optimiser honours them: one SGD step moves p by lr * (grad + weight_decay * p)
    opt = torch.optim.SGD(groups, lr=0.1)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt.step()
    for n, p in net.named_parameters():
        lr = 0.8 if n == "head.bias" else 0.4 if n == "head.weight" else 0.1
        wd = 0.0 if n == "head.bias" else 5e-4
        torch.testing.assert_close(before[n] - p.detach(), lr * (1 + wd * before[n]))
    # custom multipliers, frozen backbone, no head
    net.body.requires_grad_(False)
    groups = param_groups(net, 1.0, head_lr_weight=2.0, head_lr_bias=3.0)
    assert [g["name"] for g in groups] == ["head.weight", "head.bias"] and [g["lr"] for g in groups] == [2.0, 3.0]
    with pytest.raises(ValueError, match="no ThetaHead"):
        param_groups(nn.Linear(2, 2), 1.0)
