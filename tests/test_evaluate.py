"""Evaluation metrics against known answers, and stn3dmm evaluate on a tiny trained run."""

import json

import numpy as np
import torch

from stn3dmm.evaluate import bucketed, evaluate_predictions, nme


def test_nme_known_answer():
    target = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [10.0, 40.0], [0.0, 40.0]]])
    pred = target + torch.tensor([3.0, 4.0])                       # every point 5 px off
    vis = torch.ones(1, 4)
    assert torch.allclose(nme(pred, target, vis), torch.tensor([100 * 5 / 20.0]))   # sqrt(10 * 40) = 20
    vis[0, 1:] = 0
    assert torch.isnan(nme(pred, target, vis)).all()               # one visible point: undefined
    b = bucketed(np.array([1.0, 2.0, 3.0, 10.0]), np.array([5.0, -40.0, 50.0, 80.0]))
    assert b["0-30"] == 1 and b["30-60"] == 2.5 and b["60-90"] == 10 and b["bucket_mean"] == 4.5


def test_perfect_predictions_score_zero(default_grid):
    from stn3dmm.data.sample import landmark_vertices
    from stn3dmm.data.synthetic import SyntheticFaces
    from stn3dmm.stn import MorphableSTN

    model = default_grid[0]
    ds = SyntheticFaces(model, n_identities=3, views_per_identity=3, size=96, seed=5)
    b = ds.render_batch(range(len(ds)))
    stn = MorphableSTN(model, visibility="depth", landmarks=None, max_outside=None)
    verts = torch.as_tensor(landmark_vertices(model, ds.landmark_set))
    out = stn(b["image"], b["theta"])
    p = {"pred": out["points"][:, verts], "target": b["landmarks"], "vis": b["visibility"], "pose": b["pose"],
         "identity": b["identity"], "theta": b["theta"], "masked": out["masked"], "mask": out["mask"],
         "gt_theta": b["theta"]}
    res = evaluate_predictions(p, stn, verts, 96)
    assert res["nme"]["all"] < 0.05 and res["pose_mae_deg"]["mean"] < 0.01
    assert res["nme_mean_face"]["all"] > 5 * max(res["nme"]["all"], 0.1)
    assert sum(res["nme"][f"n_{k}"] for k in ("0-30", "30-60", "60-90")) == 9
    # views of one identity share the texture, but lighting and colour jitter differ per view
    assert 0 < res["flattened_consistency_mad"] < 60 and 0 < res["symmetry_mad"] < 60


def test_evaluate_command_on_a_tiny_run(default_grid, tmp_path, capsys):
    from stn3dmm.cli import main

    out = tmp_path / "run"
    args = ["train", "--quiet", "--set", f"train.out='{out}'", "--set", "train.steps=2",
            "--set", f"model.path='{default_grid[2]}'"]
    for s in ("data.n_identities=4", "data.views=2", "localiser.image_size=64", "localiser.backbone='mobilenet'",
              "localiser.width=0.5", "stn.out_res=32", "train.batch=4", "train.threads=1", "train.image_every=1"):
        args += ["--set", s]
    assert main(args) == 0
    assert list((out / "tensorboard").glob("events.*"))             # TensorBoard logs were written
    rc = main(["evaluate", "--checkpoint", str(out / "checkpoints" / "last.pt"), "--set", "n_identities=2",
               "--set", "identity_offset=100", "--out", str(tmp_path / "m.json")])
    assert rc == 0
    table = capsys.readouterr().out
    assert "NME % (localiser)" in table and "pose MAE" in table
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["images"] == 4 and np.isfinite(res["nme"]["all"])
