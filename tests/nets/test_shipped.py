"""The shipped localiser's files: export and load round trip, the checks on a damaged card or
weights file, and, when the package holds trained weights, their size and that they load."""

from __future__ import annotations

import json

import pytest
import torch

from stn3dmm.nets.localiser import build_localiser
from stn3dmm.nets.shipped import (CARD, REFINER, WEIGHTS, WEIGHTS_DIR, export_shipped, load_shipped,
                                  load_shipped_refiner)

CARD_MIN = {"backbone": "mobilenetv2", "image_size": 64, "width": 0.5, "norm": "batch", "n_id": 4, "n_exp": 3}


def small_net():
    torch.manual_seed(0)
    return build_localiser("mobilenetv2", n_id=4, n_exp=3, image_size=64, width=0.5, norm="batch").eval()


def test_round_trip_gives_the_same_network(tmp_path):
    net = small_net()
    export_shipped(net.state_dict(), dict(CARD_MIN, licence="research use"), tmp_path)
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
    export_shipped(net.state_dict(), CARD_MIN, tmp_path, refiner=refiner.state_dict())
    back = load_shipped_refiner(tmp_path)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x), refiner(x), atol=0, rtol=0)
        assert not torch.allclose(back(x), net(x))
    (tmp_path / REFINER).write_bytes(b"damaged")
    with pytest.raises(ValueError, match=f"{REFINER}: not the weights"):
        load_shipped_refiner(tmp_path)
    export_shipped(net.state_dict(), CARD_MIN, tmp_path)           # a one-network localiser: no refiner left
    assert not (tmp_path / REFINER).exists() and load_shipped_refiner(tmp_path) is None


def test_damaged_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="no trained localiser here"):
        load_shipped(tmp_path)
    export_shipped(small_net().state_dict(), CARD_MIN, tmp_path)
    (tmp_path / WEIGHTS).write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=f"{WEIGHTS}: not the weights"):
        load_shipped(tmp_path)
    export_shipped(small_net().state_dict(), CARD_MIN, tmp_path)
    (tmp_path / CARD).write_text(json.dumps({k: v for k, v in CARD_MIN.items() if k != "n_exp"}))
    with pytest.raises(ValueError, match="lacks n_exp"):
        load_shipped(tmp_path)
    (tmp_path / CARD).write_text(json.dumps(dict(CARD_MIN, width=1.0)))       # another network
    with pytest.raises(ValueError, match="not the weights of the mobilenetv2 localiser"):
        load_shipped(tmp_path)


@pytest.mark.skipif(not (WEIGHTS_DIR / WEIGHTS).is_file(), reason="the package holds no trained localiser yet")
def test_the_package_localiser_loads_and_is_small():
    assert (WEIGHTS_DIR / WEIGHTS).stat().st_size <= 20e6
    net, card = load_shipped()
    for key in ("licence", "data", "recipe", "commit", "scores", "box_framing", "model"):
        assert key in card, key
    size = int(card["image_size"])
    with torch.no_grad():
        theta = net(torch.rand(3, 3, size, size))
    assert theta.shape == (3, 6 + card["n_id"] + card["n_exp"]) and torch.isfinite(theta).all()
