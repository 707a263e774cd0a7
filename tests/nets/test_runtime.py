"""The ONNX runtime of a network: export, the same theta as torch, threads, and clear errors."""

from __future__ import annotations

import pytest
import torch

from stn3dmm.nets.localiser import build_localiser
from stn3dmm.nets.runtime import OnnxNetwork, export_onnx


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    net = build_localiser("mobilenetv2", n_id=4, n_exp=3, image_size=64, width=0.5, norm="batch").eval()
    with torch.no_grad():                  # running statistics away from the identity, so folding them matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net, OnnxNetwork(export_onnx(net), (64, 64), name="small.onnx")


def test_the_graph_gives_the_networks_theta_at_any_batch(small):
    net, graph = small
    for batch in (1, 3, 17):
        x = torch.rand(batch, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(graph(x), net(x), atol=1e-4, rtol=1e-4)


def test_each_thread_count_gets_its_own_session(small):
    _, graph = small
    x = torch.rand(2, 3, 64, 64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = graph(x)
        torch.set_num_threads(2)
        two = graph(x)
    finally:
        torch.set_num_threads(before)
    assert {1, 2} <= set(graph._sessions)
    torch.testing.assert_close(one, two, atol=1e-5, rtol=1e-5)


def test_bad_input_and_damaged_graphs_are_named(small):
    _, graph = small
    with pytest.raises(ValueError, match=r"small.onnx: expected crops \(B, 3, 64, 64\), got \(2, 3, 32, 32\)"):
        graph(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="broken.onnx: not an ONNX graph onnxruntime can run"):
        OnnxNetwork(b"not a graph", (64, 64), name="broken.onnx")
