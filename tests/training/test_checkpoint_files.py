"""Checkpoint files against hostile and unlucky input (issue 11, items 14, 15 and 16): a refusal
in our own words, damaged checkpoints named, weights that do not fit named, what killed saves
leave removed, last.pt independent of the step file, metrics.jsonl without repeated steps."""

import json
import os

import pytest
import torch

from stn3dmm.training.checkpoints import (FORMAT, check_resume_state, copy_durably, load_checkpoint, load_weights,
                                          remove_partial_saves, write_durably)
from stn3dmm.training.loop import truncate_metrics


def _good(**changes):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ck = {"format": FORMAT, "step": 4, "model": net.state_dict(), "optim": opt.state_dict(), "sched": {"last_epoch": 4},
          "scaler": {}, "torch_rng": torch.get_rng_state(), "config": json.dumps({"train": {"batch": 2}})}
    for k, v in changes.items():
        if v is None:
            ck.pop(k)
        else:
            ck[k] = v
    return ck


def test_a_hostile_checkpoint_is_refused_in_our_words(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    p = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "x": Evil()}, p)
    with pytest.raises(ValueError) as e:
        load_checkpoint(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: refused: not a readable stn3dmm checkpoint") and "system" in msg
    assert "Nothing in it was run" in msg and not (tmp_path / "pwned").exists()
    assert "weights_only" not in msg and "will likely succeed" not in msg      # torch's advice is not passed on
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04" + b"\0" * 50)
    with pytest.raises(ValueError, match="cut.pt: not a readable stn3dmm checkpoint") as e:
        load_checkpoint(tmp_path / "cut.pt")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("changes, message", [
    (dict(model=None), r"'model' must be the network's tensors by name, got nothing \(missing\)"),
    (dict(model={"weight": [1, 2]}), r"'model' must be the network's tensors by name, got dict"),
    (dict(step="4"), r"'step' must be a non-negative integer, got str '4'"),
    (dict(config=None), r"'config' must be the run's configuration as JSON text"),
])
def test_a_damaged_checkpoint_is_named(tmp_path, changes, message):
    p = tmp_path / "damaged.pt"
    torch.save(_good(**changes), p)
    with pytest.raises(ValueError, match=f"damaged.pt: a damaged stn3dmm checkpoint: {message}"):
        load_checkpoint(p)


@pytest.mark.parametrize("changes, message", [
    (dict(optim=None), r"'optim' must be a state dict"),
    (dict(optim={"lr": 1}), r"'optim' lacks its 'state' and 'param_groups'"),
    (dict(torch_rng=torch.zeros(3)), r"'torch_rng' must be the CPU random state"),
    (dict(cuda_rng="x"), r"'cuda_rng' must be a list of random states"),
])
def test_a_checkpoint_that_cannot_be_resumed_is_named(changes, message):
    check_resume_state(_good(), "ck.pt")
    with pytest.raises(ValueError, match=f"ck.pt: cannot resume from this checkpoint: {message}"):
        check_resume_state(_good(**changes), "ck.pt")


def test_weights_that_do_not_fit_are_named_not_a_size_mismatch_traceback():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["0.weight"] = torch.zeros(5, 3)
    state.pop("1.bias")
    state["2.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"ck.pt: the checkpoint's weights do not fit this run's network: "
                                         r"1 missing \(1.bias\); 1 unexpected \(2.weight\); 1 of another shape "
                                         r"\(0.weight \(5, 3\) \(needs \(2, 3\)\)\)"):
        load_weights(net, state, "ck.pt")
    good = {k: torch.ones_like(v) for k, v in net.state_dict().items()}
    load_weights(net, good, "ck.pt")
    assert float(net[0].weight.detach().sum()) == 6


def test_partial_saves_are_removed_and_nothing_else(tmp_path):
    names = [".step_0000200.pt.k2j3h.tmp", ".last.pt.abc.tmp", ".last.pt.123.link", "step_0000200.pt", "last.pt",
             ".step_notes.tmp", "metrics.jsonl"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    gone = remove_partial_saves(tmp_path)
    assert sorted(p.name for p in gone) == [".last.pt.123.link", ".last.pt.abc.tmp", ".step_0000200.pt.k2j3h.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".step_notes.tmp", "last.pt", "metrics.jsonl",
                                                          "step_0000200.pt"]
    assert remove_partial_saves(tmp_path / "absent") == []


def test_last_is_an_independent_copy(tmp_path):
    step = write_durably(tmp_path / "step_1.pt", lambda f: torch.save({"x": torch.arange(3)}, f))
    last = copy_durably(step, tmp_path / "last.pt")
    assert os.stat(last).st_ino != os.stat(step).st_ino and last.read_bytes() == step.read_bytes()
    with open(last, "r+b") as f:                                   # damage to one is not damage to both
        f.truncate(10)
    assert torch.equal(torch.load(step, weights_only=True)["x"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_1.pt"]


def test_metrics_are_truncated_to_the_resumed_step(tmp_path):
    p = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "total": float(s)} for s in (1, 2, 3, 4)]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "tot')      # a line torn by a kill
    assert truncate_metrics(p, 2) == 3
    assert [json.loads(x)["step"] for x in p.read_text().splitlines()] == [1, 2]
    assert truncate_metrics(p, 2) == 0 and truncate_metrics(tmp_path / "absent.jsonl", 0) == 0
    assert truncate_metrics(p, 0) == 2 and p.read_text() == ""


def test_auto_resume_falls_back_to_the_newest_readable_step_file(tmp_path):
    from stn3dmm.training.loop import find_checkpoint

    d = tmp_path / "checkpoints"
    d.mkdir()
    assert find_checkpoint(tmp_path, "auto") == (None, None)          # nothing yet: a new run
    torch.save(_good(step=2), d / "step_0000002.pt")
    torch.save(_good(step=4), d / "step_0000004.pt")
    (d / "last.pt").write_bytes(b"PK\x03\x04 truncated")              # damaged in place: the step file is not
    notes = []
    ck, path = find_checkpoint(tmp_path, "auto", notes.append)
    assert path == d / "step_0000004.pt" and ck["step"] == 4
    assert notes and "last.pt: not a readable stn3dmm checkpoint" in notes[0] and "resuming from" in notes[0]
    with pytest.raises(ValueError, match="absent.pt: no such checkpoint"):
        find_checkpoint(tmp_path, tmp_path / "absent.pt")
