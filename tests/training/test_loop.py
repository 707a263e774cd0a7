"""Training: configuration, a run that learns, exact resume after a kill, checkpoints loaded
with weights_only, and two processes over gloo matching one process with the same batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stn3dmm.training.checkpoints import load_checkpoint, write_durably
from stn3dmm.training.loop import landmark_overlays
from stn3dmm.training.config import check_batch, load_config
from stn3dmm.training.batches import IdentityGroups, batch_indices

TINY = ["data.n_identities=6", "data.views=2", "data.size=64", "localiser.image_size=64",
        "localiser.backbone='mobilenet'", "localiser.width=0.5", "localiser.norm='group'",
        "stn.out_res=32", "train.batch=4", "train.log_every=1", "train.image_every=0", "train.threads=1",
        "optim.warmup=2"]


def _run(args, env=None, check=True):
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "src") + os.pathsep + e.get("PYTHONPATH", "")
    out = subprocess.run(args, capture_output=True, text=True, env=e)
    if check and out.returncode != 0:
        raise AssertionError(out.stdout[-2000:] + out.stderr[-4000:])
    return out


def _train_cmd(out, steps, *extra, model_path):
    return [sys.executable, "-m", "stn3dmm.cli", "train", "--quiet", "--set", f"train.out='{out}'",
            "--set", f"train.steps={steps}", "--set", f"model.path='{model_path}'",
            *sum((["--set", s] for s in TINY), []), *extra]


def _curve(out):
    return [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def test_config_file_overrides_and_errors(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[train]\nsteps = 7\n[optim]\nlr = 0.01\n')
    cfg = load_config(f, ["train.batch=6", "localiser.backbone=resnet18"])
    assert cfg["train"]["steps"] == 7 and cfg["optim"]["lr"] == 0.01 and cfg["train"]["batch"] == 6
    assert cfg["localiser"]["backbone"] == "resnet18" and cfg["loss"]["landmark"] == 0.8998
    f.write_text('[trian]\nsteps = 1\n')
    with pytest.raises(ValueError, match="unknown section"):
        load_config(f)
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(None, ["train.stepz=3"])
    f.write_text("[train\n")
    with pytest.raises(ValueError, match="c.toml"):
        load_config(f)


def test_config_values_are_type_checked(tmp_path):
    cfg = load_config(None, ["data.path=2024", "train.steps=1e3", "optim.lr=1", "train.mirror=false"])
    assert cfg["data"]["path"] == "2024" and cfg["train"]["steps"] == 1000 and isinstance(cfg["train"]["steps"], int)
    assert cfg["optim"]["lr"] == 1.0 and isinstance(cfg["optim"]["lr"], float) and cfg["train"]["mirror"] is False
    for bad, msg in (("train.steps=abc", "train.steps must be an integer.*'abc'"),
                     ("train.steps=2.5", "train.steps must be an integer"),
                     ("train.mirror=1", "train.mirror must be true or false"),
                     ("optim.lr=fast", "optim.lr must be a number"),
                     ("optim.amp='yes'", "optim.amp must be true or false")):
        with pytest.raises(ValueError, match=msg):
            load_config(None, [bad])
    f = tmp_path / "c.toml"
    f.write_text('[data]\npath = 2024\n')
    with pytest.raises(ValueError, match="c.toml: data.path must be a string.*2024"):
        load_config(f)
    f.write_text('[train]\nbatch = "32"\n')
    with pytest.raises(ValueError, match="c.toml: train.batch must be an integer"):
        load_config(f)
    y = tmp_path / "c.yaml"
    y.write_text("train:\n  steps: 3\n")
    with pytest.raises(ValueError, match="c.yaml: training configurations are TOML only"):
        load_config(y)


def test_identity_pairs_need_whole_pairs_on_every_process():
    check_batch({"batch": 8, "pairs": "identity"}, 2)
    check_batch({"batch": 6, "pairs": "mirror"}, 2)
    with pytest.raises(ValueError, match=r"train.batch \(6\) must be divisible by 2 x the number of processes \(4\)"):
        check_batch({"batch": 6, "pairs": "identity"}, 2)
    with pytest.raises(ValueError, match="divisible by 2 x"):
        check_batch({"batch": 5, "pairs": "identity"}, 1)
    with pytest.raises(ValueError, match="by the number of processes"):
        check_batch({"batch": 5, "pairs": "mirror"}, 2)
    with pytest.raises(ValueError, match="train.pairs must be one of"):
        check_batch({"batch": 4, "pairs": "identities"}, 1)


def test_identity_batches_are_unchanged_by_precomputed_groups():
    ids = np.repeat(np.arange(40), 3)
    ids[:3] = -1
    ids[10] = 99                                     # seen once: never paired
    ids = ids[np.random.default_rng(5).permutation(len(ids))]
    # the batch of the per-step regrouping this replaced (measured with it): unchanged
    assert batch_indices(len(ids), 8, 7, 3, ids).tolist() == [51, 94, 65, 74, 111, 14, 107, 13]
    g = IdentityGroups(ids)
    assert 99 not in g.keys and -1 not in g.keys and len(g.keys) == 39
    for step in range(20):
        assert np.array_equal(batch_indices(len(ids), 8, step, 3, g), batch_indices(len(ids), 8, step, 3, ids))


def test_landmark_overlays_known_pixels_and_any_device():
    img = torch.zeros(2, 3, 8, 8)
    target = torch.tensor([[[2.0, 3.0]], [[float("nan"), 0.0]]])
    pred = torch.tensor([[[7.0, 7.0]], [[0.2, 0.4]]])
    out = landmark_overlays(img, pred, target)
    assert torch.equal(out[0, :, 3, 2], torch.tensor([0.0, 1.0, 0.0]))     # green 3x3 dot at (x 2, y 3)
    assert int((out[0, 1] == 1).sum()) == 9 and int((out[0, 0] == 1).sum()) == 4   # red dot clipped at the corner
    assert torch.equal(out[1, :, 0, 0], torch.tensor([1.0, 0.0, 0.0])) and int((out[1, 1] == 1).sum()) == 0
    assert int((out[1, 0] == 1).sum()) == 4 and float(img.abs().sum()) == 0       # the input is left alone
    # no tensor is made on another device (TensorBoard logging crashed on CUDA): runs on 'meta'
    m = landmark_overlays(img.to("meta"), pred.to("meta"), target.to("meta"))
    assert m.device.type == "meta" and m.shape == img.shape


def test_checkpoints_are_written_durably(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    write_durably(tmp_path / "step_1.pt", lambda f: torch.save({"x": torch.arange(3)}, f))
    assert len(synced) >= 1 and not list(tmp_path.glob("*.tmp"))
    assert torch.equal(torch.load(tmp_path / "step_1.pt", weights_only=True)["x"], torch.arange(3))


def test_batch_schedule_is_a_pure_function_and_pairs_share_identity():
    a = batch_indices(100, 8, 5, seed=1)
    assert np.array_equal(a, batch_indices(100, 8, 5, seed=1)) and len(set(a)) == 8
    ids = np.repeat(np.arange(10), 3)
    ids[:3] = -1                                     # unknown identity: never paired
    p = batch_indices(30, 8, 3, seed=0, identities=ids)
    assert len(p) == 8 and all(ids[p[k]] == ids[p[k + 1]] != -1 and p[k] != p[k + 1] for k in range(0, 8, 2))


def test_resume_after_a_kill_matches_an_uninterrupted_run(default_grid, tmp_path):
    model = default_grid[2]
    full, cut = tmp_path / "full", tmp_path / "cut"
    _run(_train_cmd(full, 5, "--set", "train.ckpt_every=2", model_path=model))
    killed = _run(_train_cmd(cut, 5, "--set", "train.ckpt_every=2", model_path=model),
                  env={"STN3DMM_TEST_KILL_AT_STEP": "3"}, check=False)
    assert killed.returncode != 0                                 # SIGKILL after step 3 (last save: step 2)
    assert load_checkpoint(cut / "checkpoints" / "last.pt")["step"] == 2
    (cut / "checkpoints" / ".step_0000004.pt.k2j3h.tmp").write_bytes(b"half a save")   # a save killed half-way
    resumed = _run(_train_cmd(cut, 5, "--set", "train.ckpt_every=2", "--resume", model_path=model))
    assert "removed .step_0000004.pt.k2j3h.tmp" in resumed.stderr
    assert not list((cut / "checkpoints").glob(".*"))
    ck = full / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["last.pt", "step_0000002.pt", "step_0000004.pt",
                                                    "step_0000005.pt"]
    # last.pt is a copy of the newest step file, not a hard link (damage to one is not damage to both)
    assert os.stat(ck / "last.pt").st_ino != os.stat(ck / "step_0000005.pt").st_ino
    assert (ck / "last.pt").read_bytes() == (ck / "step_0000005.pt").read_bytes()
    a = load_checkpoint(full / "checkpoints" / "last.pt")
    b = load_checkpoint(cut / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 5
    worst = max(float((a["model"][k].float() - b["model"][k].float()).abs().max()) for k in a["model"])
    assert worst < 1e-6, worst
    assert [r["step"] for r in _curve(cut)] == [1, 2, 3, 4, 5]    # step 3, logged before the kill, once
    la = {r["step"]: r["total"] for r in _curve(full)}
    lb = {r["step"]: r["total"] for r in _curve(cut)}
    for s in (4, 5):
        assert abs(la[s] - lb[s]) <= 1e-6 * abs(la[s])


def test_checkpoints_are_refused_when_foreign_or_broken(tmp_path):
    p = tmp_path / "x.pt"
    p.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="x.pt.*not a readable"):
        load_checkpoint(p)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"format": "stn3dmm-checkpoint-1", "x": Evil()}, p)
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(p)
    assert not (tmp_path / "pwned").exists()
    torch.save({"step": 1}, p)
    with pytest.raises(ValueError, match="not an stn3dmm training checkpoint"):
        load_checkpoint(p)


def test_a_run_on_one_fixed_batch_learns(default_grid, tmp_path):
    # the whole data set (2 people x 2 views) is every step's batch, so the losses of
    # successive steps are comparable: with a gentle rate the loss falls steadily
    # (measured: 801 at step 1, 203 at step 12); different batches per step would not be
    out = tmp_path / "fixed"
    _run(_train_cmd(out, 12, "--set", "data.n_identities=2", "--set", "optim.lr=1e-4",
                    "--set", "optim.warmup=5", model_path=default_grid[2]))
    total = [r["total"] for r in _curve(out)]
    assert len(total) == 12 and all(np.isfinite(total))
    assert total[-1] < 0.5 * total[0], total
    assert min(total[-4:]) < min(total[:4]), total


def test_two_processes_over_gloo_match_one_process(default_grid, tmp_path):
    model = default_grid[2]
    one, two = tmp_path / "one", tmp_path / "two"
    # a gentle learning rate: the run is smooth, so float rounding differences (summation
    # order across processes, ~1e-7) stay small instead of being amplified by big jumps
    gentle = ("--set", "optim.lr=1e-4")
    _run(_train_cmd(one, 4, *gentle, model_path=model))
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
          "-m", "stn3dmm.cli", "train", *_train_cmd(two, 4, *gentle, model_path=model)[4:]],
         env={"OMP_NUM_THREADS": "1"})
    a, b = _curve(one), _curve(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for k in ("total", "landmark", "prior"):
            assert abs(ra[k] - rb[k]) <= 1e-4 * abs(ra[k]) + 1e-7, (k, ra, rb)


def test_training_mask_uses_the_buffer_only_depth_test_unless_asked():
    from stn3dmm.training.config import depth_options

    cfg = load_config(None)
    assert cfg["stn"]["depth_exact"] is False and depth_options(cfg["stn"]) == {"pixel": 1.0, "exact": False}
    assert depth_options(load_config(None, ["stn.depth_exact=true"])["stn"]) == {}


def test_a_fine_tune_starts_from_the_init_runs_network(default_grid, tmp_path):
    """localiser.init: a run starts from another run's weights, or from a plain weights file (with
    lr 0 it ends there, while a fresh run differs); an init that does not fit the network, or is
    not weights at all, is refused by name."""
    model = default_grid[2]
    first, tuned, fresh = tmp_path / "first", tmp_path / "tuned", tmp_path / "fresh"
    _run(_train_cmd(first, 2, model_path=model))
    init = first / "checkpoints" / "last.pt"
    out = _run(_train_cmd(tuned, 1, "--set", f"localiser.init='{init}'", "--set", "optim.lr=0", model_path=model))
    assert f"network initialised from {init}" in out.stderr + out.stdout
    a, b = load_checkpoint(init)["model"], load_checkpoint(tuned / "checkpoints" / "last.pt")["model"]
    weights = [k for k in a if a[k].is_floating_point() and "running" not in k]
    assert all(torch.equal(a[k], b[k]) for k in weights)
    _run(_train_cmd(fresh, 1, "--set", "optim.lr=0", "--set", "train.seed=5", model_path=model))
    c = load_checkpoint(fresh / "checkpoints" / "last.pt")["model"]
    assert not all(torch.equal(a[k], c[k]) for k in weights)
    bad = _run(_train_cmd(tmp_path / "bad", 1, "--set", f"localiser.init='{init}'", "--set", "localiser.width=1.0",
                          model_path=model), check=False)
    assert bad.returncode != 0 and "do not fit this run's network (localiser.init)" in bad.stderr
    plain = tmp_path / "weights.pt"                      # a plain weights file, as the package ships
    torch.save(a, plain)
    _run(_train_cmd(tmp_path / "plain", 1, "--set", f"localiser.init='{plain}'", "--set", "optim.lr=0", model_path=model))
    d = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], d[k]) for k in weights)
    torch.save([1, 2], plain)
    bad = _run(_train_cmd(tmp_path / "bad2", 1, "--set", f"localiser.init='{plain}'", model_path=model), check=False)
    assert bad.returncode != 0 and "neither an stn3dmm training checkpoint nor a weights file" in bad.stderr
