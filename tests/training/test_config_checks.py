"""The training configuration's value checks (issue 11, items 11 and 12) and the comparison of a
checkpoint's configuration with a resumed run's (item 13). No training runs here."""

import json

import pytest

from stn3dmm.training.config import (DEFAULTS, RESUME_FREE, check_config, check_data, config_differences,
                                     config_from_checkpoint, load_config)


@pytest.mark.parametrize("override, message", [
    ("train.steps=0", r"train.steps must be at least 1, got 0"),
    ("train.steps=-4", r"train.steps must be at least 1, got -4"),
    ("train.log_every=0", r"train.log_every must be at least 1, got 0"),
    ("train.log_every=-1", r"train.log_every must be at least 1"),
    ("train.ckpt_every=-1", r"train.ckpt_every must be at least 0 \(0: only at the end\), got -1"),
    ("train.image_every=-200", r"train.image_every must be at least 0 \(0: never\)"),
    ("train.threads=-1", r"train.threads must be at least 0 \(0: torch's default\), got -1"),
    ("train.batch=0", r"train.batch must be at least 1"),
    ("train.keep=-2", r"train.keep must be at least 0"),
    ("optim.warmup=-3", r"optim.warmup must be at least 0 \(0: no warm-up\), got -3"),
    ("optim.lr=-0.1", r"optim.lr must be at least 0"),
    ("optim.lr=nan", r"optim.lr must be at least 0, got nan"),
    ("optim.schedule=bogus", r"optim.schedule must be one of cosine, constant, got 'bogus'"),
    ("optim.name=adam", r"optim.name must be one of adamw, sgd, got 'adam'"),
    ("data.kind=pictures", r"data.kind must be one of synthetic, .*got 'pictures'"),
    ("data.kind=folder", r"data.kind = 'folder' reads its images from a file or folder, but no data.path is given"),
])
def test_values_the_run_cannot_use_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_the_defaults_and_the_meaningful_zeros_pass():
    cfg = load_config(None, ["train.ckpt_every=0", "train.image_every=0", "train.keep=0", "train.threads=0",
                             "optim.warmup=0", "optim.schedule=constant", "data.kind=folder", "data.path=/data/x"])
    check_config(cfg)
    check_config(json.loads(json.dumps(DEFAULTS)))
    check_data({"kind": "demo", "path": ""})                      # the demo photos have a default
    with pytest.raises(ValueError, match="no --path is given"):
        check_data({"kind": "aflw2000-3d", "path": " "}, path_option="--path")


def test_resume_compares_every_setting_but_the_free_ones():
    saved = load_config(None, ["train.batch=8", "localiser.backbone=mobilenet"])
    run = load_config(None, ["train.batch=4", "localiser.backbone=resnet18", "optim.lr=0.01", "train.steps=5000",
                             "train.out=elsewhere", "train.threads=1", "train.log_every=1"])
    diff = config_differences(run, config_from_checkpoint(json.dumps(saved), "ck.pt"))
    assert diff == [("localiser.backbone", "mobilenet", "resnet18"), ("optim.lr", 0.001, 0.01),
                    ("train.batch", 8, 4)]
    assert {"train.steps", "train.out", "train.threads"} <= set(RESUME_FREE)
    assert config_differences(saved, config_from_checkpoint(json.dumps(saved), "ck.pt")) == []


def test_a_checkpoint_configuration_is_checked_and_completed():
    old = {"train": {"batch": 8}, "localiser": {"backbone": "mobilenet"}, "future": {"x": 1}}
    cfg = config_from_checkpoint(json.dumps(old), "ck.pt")        # settings added later take their defaults
    assert cfg["train"]["batch"] == 8 and cfg["optim"] == DEFAULTS["optim"] and "future" not in cfg
    for text, message in (("{not json", "ck.pt: the checkpoint's configuration is not valid JSON"),
                          ("[1, 2]", "ck.pt: the checkpoint's configuration is not a set of"),
                          (json.dumps({"train": {"batch": "eight"}}), r"ck.pt \(its configuration\).*train.batch "
                                                                      "must be an integer")):
        with pytest.raises(ValueError, match=message):
            config_from_checkpoint(text, "ck.pt")
