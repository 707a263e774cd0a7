"""The configs in configs/ load and pass the checks, and the shipped localiser's stages chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from stn3dmm.training.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
#: The shipped localiser's recipe (stages 1-8), in order: each stage starts from the one before.
STAGES = ["lfw_localiser.toml", "lfw_localiser_head.toml", "lfw_localiser_stage3.toml", "lfw_localiser_stage4.toml",
          "lfw_localiser_stage5.toml", "lfw_localiser_stage6.toml", "lfw_localiser_stage7.toml",
          "lfw_localiser_stage8.toml"]


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_config_loads_and_passes_the_checks(name):
    cfg = load_config(CONFIGS / name)
    assert cfg["train"]["steps"] >= 1 and cfg["train"]["out"]


def test_the_shipped_localisers_stages_chain():
    cfgs = [load_config(CONFIGS / n) for n in STAGES]
    assert not cfgs[0]["localiser"]["init"]
    outs = [c["train"]["out"] for c in cfgs]
    assert len(set(outs)) == len(outs)                       # no stage writes over another
    for before, after in zip(cfgs, cfgs[1:]):
        # the stage before's last checkpoint, or its weights as shipped copied into this stage's
        # folder (from git, as the config's header says)
        init = after["localiser"]["init"]
        assert init == f"{before['train']['out']}/checkpoints/last.pt" or \
            Path(init).parent == Path(after["train"]["out"])
        for key in ("backbone", "image_size", "width", "norm"):   # the network carries over
            assert after["localiser"][key] == before["localiser"][key]
        assert after["data"]["seed"] != before["data"]["seed"] or after["data"]["head_share"] != \
            before["data"]["head_share"]                       # each stage sees new items
