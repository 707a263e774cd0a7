"""The shipped localiser's files: export and load round trip (weights and ONNX graphs), the checks
on a damaged card, weights file or graph, and, when the package holds trained weights, their size,
that they load, and that their graphs give the weights' theta."""

from __future__ import annotations

import json

import pytest
import torch

from stn3dmm.nets.localiser import build_localiser
from stn3dmm.nets.shipped import (CARD, GRAPHS, REFINER, WEIGHTS, WEIGHTS_DIR, export_shipped, load_shipped,
                                  load_shipped_onnx, load_shipped_refiner)

CARD_MIN = {"backbone": "mobilenetv2", "image_size": 64, "width": 0.5, "norm": "batch", "n_id": 4, "n_exp": 3}


def small_net():
    torch.manual_seed(0)
    return build_localiser("mobilenetv2", n_id=4, n_exp=3, image_size=64, width=0.5, norm="batch").eval()


def test_round_trip_gives_the_same_network(tmp_path):
    net = small_net()
    export_shipped(net.state_dict(), dict(CARD_MIN, licence="research use"), tmp_path, onnx=False)
    back, card = load_shipped(tmp_path)
    assert card["licence"] == "research use"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x), net(x), atol=0, rtol=0)
    assert not list(tmp_path.glob("*.tmp"))


def test_the_refiner_round_trips_and_goes_when_exported_without(tmp_path):
    net, refiner = small_net(), small_net()
    with torch.no_grad():
        refiner.head.bias.add_(1.0)
    export_shipped(net.state_dict(), CARD_MIN, tmp_path, refiner=refiner.state_dict(), onnx=False)
    back = load_shipped_refiner(tmp_path)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x), refiner(x), atol=0, rtol=0)
        assert not torch.allclose(back(x), net(x))
    (tmp_path / REFINER).write_bytes(b"damaged")
    with pytest.raises(ValueError, match=f"{REFINER}: not the weights"):
        load_shipped_refiner(tmp_path)
    export_shipped(net.state_dict(), CARD_MIN, tmp_path, onnx=False)   # a one-network localiser: no refiner left
    assert not (tmp_path / REFINER).exists() and load_shipped_refiner(tmp_path) is None


def test_damaged_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="no trained localiser here"):
        load_shipped(tmp_path)
    export_shipped(small_net().state_dict(), CARD_MIN, tmp_path, onnx=False)
    (tmp_path / WEIGHTS).write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=f"{WEIGHTS}: not the weights"):
        load_shipped(tmp_path)
    export_shipped(small_net().state_dict(), CARD_MIN, tmp_path, onnx=False)
    (tmp_path / CARD).write_text(json.dumps({k: v for k, v in CARD_MIN.items() if k != "n_exp"}))
    with pytest.raises(ValueError, match="lacks n_exp"):
        load_shipped(tmp_path)
    (tmp_path / CARD).write_text(json.dumps(dict(CARD_MIN, width=1.0)))       # another network
    with pytest.raises(ValueError, match="not the weights of the mobilenetv2 localiser"):
        load_shipped(tmp_path)


def test_graphs_are_exported_with_the_weights_and_checked_against_the_card(tmp_path):
    net, refiner = small_net(), small_net()
    with torch.no_grad():
        refiner.head.bias.add_(1.0)
    export_shipped(net.state_dict(), CARD_MIN, tmp_path, refiner=refiner.state_dict())
    card = json.loads((tmp_path / CARD).read_text())
    assert set(card["onnx"]) == set(GRAPHS.values())
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        for graph, torch_net in ((load_shipped_onnx(tmp_path), net),
                                 (load_shipped_onnx(tmp_path, refiner=True), refiner)):
            torch.testing.assert_close(graph(x), torch_net(x), atol=1e-4, rtol=1e-4)
    # a graph of other weights (an export left over from another network) is refused by its hash
    (tmp_path / GRAPHS[REFINER]).write_bytes((tmp_path / GRAPHS[WEIGHTS]).read_bytes())
    with pytest.raises(ValueError, match=f"{GRAPHS[REFINER]}: not the graph its card names"):
        load_shipped_onnx(tmp_path, refiner=True)
    # without graphs, none are left behind to run stale weights, and the loader says there are none
    export_shipped(net.state_dict(), CARD_MIN, tmp_path, onnx=False)
    assert not list(tmp_path.glob("*.onnx")) and load_shipped_onnx(tmp_path) is None
    assert "onnx" not in json.loads((tmp_path / CARD).read_text())


@pytest.mark.skipif(not (WEIGHTS_DIR / WEIGHTS).is_file(), reason="the package holds no trained localiser yet")
def test_the_package_graphs_give_the_weights_theta():
    net, card = load_shipped()
    refiner = load_shipped_refiner(card=card)
    size = int(card["image_size"])
    torch.manual_seed(0)
    x = torch.rand(5, 3, size, size)
    with torch.no_grad():
        for graph, torch_net in ((load_shipped_onnx(card=card), net),
                                 (load_shipped_onnx(card=card, refiner=True), refiner)):
            # theta's pixel terms are tens of crop pixels: a thousandth of a pixel apart at most
            torch.testing.assert_close(graph(x), torch_net(x), atol=1e-3, rtol=1e-4)


@pytest.mark.skipif(not (WEIGHTS_DIR / WEIGHTS).is_file(), reason="the package holds no trained localiser yet")
def test_the_package_localiser_loads_and_is_small():
    assert sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir()) <= 20e6     # weights, graphs and card
    net, card = load_shipped()
    for key in ("licence", "data", "recipe", "commit", "scores", "box_framing", "model"):
        assert key in card, key
    size = int(card["image_size"])
    with torch.no_grad():
        theta = net(torch.rand(3, 3, size, size))
    assert theta.shape == (3, 6 + card["n_id"] + card["n_exp"]) and torch.isfinite(theta).all()
