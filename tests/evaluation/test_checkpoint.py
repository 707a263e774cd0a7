"""Evaluation metrics against known answers, and stn3dmm evaluate on a tiny trained run."""

import json

import numpy as np
import torch

from stn3dmm.evaluation.checkpoint import evaluate_predictions, format_table
from stn3dmm.evaluation.protocol import bucketed, nme


def test_nme_known_answer():
    target = torch.tensor([[[0.0, 0.0], [10.0, 0.0], [10.0, 40.0], [0.0, 40.0]]])
    pred = target + torch.tensor([3.0, 4.0])                       # every point 5 px off
    vis = torch.ones(1, 4)
    assert torch.allclose(nme(pred, target, vis), torch.tensor([100 * 5 / 20.0]))   # sqrt(10 * 40) = 20
    vis[0, 1:] = 0
    assert torch.isnan(nme(pred, target, vis)).all()               # one visible point: undefined
    b = bucketed(np.array([1.0, 2.0, 3.0, 10.0]), np.array([5.0, -40.0, 50.0, 80.0]))
    assert b["0-30"] == 1 and b["30-60"] == 2.5 and b["60-90"] == 10 and b["bucket_mean"] == 4.5
    assert b["empty_buckets"] == [] and b["all"] == 4.0


def test_faces_turned_beyond_90_degrees_count_in_the_last_bucket():
    """AFLW2000-3D has 7 faces with |yaw| > 90; the published numbers count them in 60-90."""
    b = bucketed(np.array([1.0, 2.0, 4.0, 8.0]), np.array([10.0, 45.0, 95.0, -170.0]))
    assert b["n_60-90"] == 2 and b["60-90"] == 6.0 and b["bucket_mean"] == 3.0


def test_an_empty_yaw_bucket_makes_the_bucket_mean_undefined():
    b = bucketed(np.array([1.0, 2.0, 3.0]), np.array([5.0, -40.0, 20.0]))     # nobody beyond 60 degrees
    assert b["0-30"] == 2 and b["30-60"] == 2 and np.isnan(b["60-90"]) and b["n_60-90"] == 0
    assert np.isnan(b["bucket_mean"]) and b["empty_buckets"] == ["60-90"] and b["all"] == 2
    res = {"images": 3, "nme": b, "nme_mean_face": b, "nme_mean_layout": b, "flattened_consistency_mad": 1.0,
           "symmetry_mad": 2.0}
    table = format_table(res)
    row = [x for x in table.splitlines() if x.startswith("NME % (localiser)")][0]
    assert row.split()[-3:] == ["n/a", "n/a", "2.00"] and "nan" not in table
    assert "no images with |yaw| in 60-90" in table


def test_perfect_predictions_score_zero(default_grid):
    from stn3dmm.training.data.sample import landmark_vertices
    from stn3dmm.training.data.synthetic import SyntheticFaces
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
    # pairing groups (dataset_pair_groups) replace identities: all in their own group -> no pairs
    alone = evaluate_predictions(dict(p, group=torch.arange(9)), stn, verts, 96)
    assert np.isnan(alone["flattened_consistency_mad"])
    # one pair only (items 0 and 1): the metric is that pair's mean |difference| over both masks
    one = evaluate_predictions(dict(p, group=torch.tensor([0, 0, 1, 2, 3, 4, 5, 6, 7])), stn, verts, 96)
    both = (p["mask"][0, 0] > 0.5) & (p["mask"][1, 0] > 0.5)
    want = float(255 * (p["masked"][0] - p["masked"][1]).abs().mean(0)[both].mean())
    assert abs(one["flattened_consistency_mad"] - want) < 1e-4


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
               "--set", "identity_offset=100", "--out", str(tmp_path / "m.json"), "--device", "cpu"])
    assert rc == 0
    table = capsys.readouterr().out
    assert "NME % (localiser)" in table and "pose MAE" in table
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["images"] == 4 and np.isfinite(res["nme"]["all"])
    # --refiner: a checkpoint's network for the final pass; none, or nothing for a checkpoint: no refiner
    from stn3dmm.evaluation.checkpoint import checkpoint_fitter, refiner_option

    ckpt = out / "checkpoints" / "last.pt"
    assert refiner_option(None) is True and refiner_option("") is True and refiner_option("None") is False
    assert checkpoint_fitter(ckpt, default_grid[0], refiner=refiner_option(None)).refiner is None
    assert checkpoint_fitter(ckpt, default_grid[0], refiner=refiner_option("none")).refiner is None
    assert checkpoint_fitter(ckpt, default_grid[0], refiner=refiner_option(str(ckpt))).refiner is not None


def test_json_report_is_strict():
    from stn3dmm.evaluation.protocol import strict_json as _strict_json

    res = {"nme": {"60-90": float("nan"), "mean": float("inf"), "0-30": 1.5}, "rows": [float("nan"), 2]}
    assert json.loads(json.dumps(_strict_json(res), allow_nan=False)) == {
        "nme": {"60-90": None, "mean": None, "0-30": 1.5}, "rows": [None, 2]}
