"""The AFLW2000-3D benchmark harness, on the real benchmark files when ../shared/data has them.

Known answers of the protocol (no method involved), then the landmark pipeline on a fixed
spread of 21 images: the figures asserted there are loose sanity bounds, not tuned ones.
"""

import numpy as np
import pytest

from stn3dmm.evaluation.aflw2000 import (ROI_TO_FACE, BenchmarkError, format_table, load_aflw2000, pose_scores,
                                         score, spread_subset)


@pytest.fixture(scope="module")
def bench(shared_dir):
    root = shared_dir / "data" / "aflw2000-3d"
    if not (root / "gt" / "image_names.txt").exists():
        pytest.skip(f"{root} not present (AFLW2000-3D is not shipped with stn3dmm)")
    return load_aflw2000(root)


def test_buckets_hold_all_2000_faces_with_those_beyond_90_in_the_last(bench):
    r = score(bench, np.arange(len(bench)), bench.reannotated, np.ones(len(bench), bool))
    assert (r["nme"]["n_0-30"], r["nme"]["n_30-60"], r["nme"]["n_60-90"]) == (1312, 383, 305)
    assert (bench.abs_yaw > 90).sum() == 7
    assert r["nme"]["bucket_mean"] == 0.0 and r["found"]["bucket_mean"] == 1.0


def test_the_two_ground_truths_disagree_by_a_known_amount(bench):
    """The original fitted landmarks scored against the re-annotated ones: the protocol's floor."""
    r = score(bench, np.arange(len(bench)), bench.original, np.ones(len(bench), bool))["nme"]
    assert (r["0-30"], r["30-60"], r["60-90"]) == pytest.approx((2.6297, 3.2331, 4.3412), abs=1e-4)


def test_the_fields_pose_protocol_keeps_1969_faces_and_reads_the_labels_back(bench):
    """FSA-Net's protocol scores the 1,969 faces whose labelled angles all lie within 99 degrees;
    the labels, turned into our convention and read back as the field reads a rotation, score 0
    wherever their yaw is within 90 (beyond it the field's reading gives another triple)."""
    idx = np.arange(len(bench))
    labelled = np.stack([bench.pose(int(i)) for i in idx])
    r = pose_scores(bench, idx, labelled)
    assert r["pose_mae_field_deg"]["faces"] == 1969
    assert r["pose_mae_deg"]["mean"] < 1e-6 and abs(r["yaw_bias_above_60_deg"]) < 1e-6
    within = idx[bench.abs_yaw <= 90]
    r = pose_scores(bench, within, labelled[within])
    assert r["pose_mae_field_deg"]["mean"] < 1e-4 and abs(r["yaw_bias_above_60_field_deg"]) < 1e-4
    turned = labelled.copy()
    turned[:, 0] += np.sign(turned[:, 0]) * 2.0                   # 2 degrees more yaw, in our convention
    assert pose_scores(bench, within, turned[within])["yaw_bias_above_60_deg"] == pytest.approx(2.0)


def test_face_boxes_are_3ddfas_squares_of_the_original_landmarks(bench):
    """0-based boxes: centred on the original landmarks' box, sqrt(2) times its longer side
    (for all but a few dozen boxes, which 3DDFA made otherwise)."""
    lo, hi = bench.original.min(1), bench.original.max(1)
    sq = np.stack([bench.face_square(i) for i in range(len(bench))])
    off = np.abs((sq[:, :2] + sq[:, 2:]) / 2 - (lo + hi) / 2).max(1)
    assert (off < 0.75).mean() > 0.95                      # a 1 px convention error would fail this
    side = (sq[:, 2:] - sq[:, :2]).max(1)
    assert np.median(np.abs(side / (hi - lo).max(1) - 1)) < 0.005
    assert ROI_TO_FACE == pytest.approx(2 ** -0.5)


def test_spread_subset_takes_each_bucket_evenly(bench):
    idx = spread_subset(bench, 7)
    assert len(idx) == 21 and len(set(idx)) == 21
    yaw = bench.abs_yaw[idx]
    assert ((yaw < 30).sum(), ((yaw >= 30) & (yaw < 60)).sum(), (yaw >= 60).sum()) == (7, 7, 7)


def test_a_folder_that_is_not_the_benchmark_is_refused(tmp_path):
    with pytest.raises(BenchmarkError, match="not an AFLW2000-3D folder"):
        load_aflw2000(tmp_path)


def test_the_landmark_pipeline_on_21_spread_images(bench, real_cache, monkeypatch):
    """End to end, as `stn3dmm evaluate --method flatten --per-bucket 7` runs it."""
    from stn3dmm.evaluation.methods import FlattenMethod, run_benchmark
    from stn3dmm.model import load_model

    monkeypatch.setenv("STN3DMM_CACHE", real_cache[0])
    results, records = run_benchmark(bench, FlattenMethod(load_model()), spread_subset(bench, 7), progress=False)
    ours = results["stn3dmm flatten --method landmarks"]
    hows = {"detected", "benchmark box", "benchmark box (face 0 is another face)", "mean face"}
    assert len(records) == 21 and {r["how"] for r in records} <= hows
    assert all(r["found"] == (r["how"] == "detected") for r in records)
    assert ours["found"]["0-30"] == 1.0                       # frontal faces are all found
    assert ours["nme"]["0-30"] < 4.0 and ours["nme"]["bucket_mean"] < 10.0
    assert ours["pose_mae_deg"]["mean"] < 15.0
    table = format_table(results)
    assert "published: 3DDFA_V2" in table and "faces found: stn3dmm flatten --method landmarks" in table


def test_a_localiser_from_the_benchmark_boxes(bench, default_grid):
    """The localiser path of the harness: an untrained localiser predicts its start pose, the mean
    face frontal in the middle of its crop, so its points land on the face the box frames."""
    import torch

    from stn3dmm.evaluation.methods import LocaliserMethod, run_benchmark
    from stn3dmm.fitting.localiser import LocaliserFitter
    from stn3dmm.nets.localiser import build_localiser

    torch.manual_seed(0)
    net = build_localiser("mobilenetv2", n_id=10, n_exp=10, image_size=112, width=0.5)
    method = LocaliserMethod(LocaliserFitter(net, default_grid[0], 10, 10, passes=1))
    results, records = run_benchmark(bench, method, spread_subset(bench, 2), progress=False)
    r = results["stn3dmm localiser"]
    assert r["found"]["bucket_mean"] == 1.0 and all(rec["how"] == "benchmark box" for rec in records)
    assert all(rec["found"] for rec in records)           # the box is the benchmark's: nothing to find
    assert r["nme"]["0-30"] < 25.0                 # the mean face on the face, not somewhere else


def test_yaw_bias_averages_the_turn_missed_beyond_60_degrees_only():
    from stn3dmm.evaluation.aflw2000 import yaw_bias

    gt = np.array([70.0, -80.0, 10.0, 65.0])
    pred = np.array([60.0, -76.0, 40.0, np.nan])     # too little by 10 and 4; the frontal and the unfitted don't count
    assert yaw_bias(pred, gt, np.abs(gt)) == pytest.approx(-7.0)
    assert np.isnan(yaw_bias(pred[2:3], gt[2:3], np.abs(gt[2:3])))


def test_pose_scores_on_a_set_labelled_in_our_convention():
    """Renders carry their pose in our convention only: the field's angles are converted from it,
    so exact predictions score 0 both ways, and 5 degrees more yaw in ours is 5 in ours."""
    from types import SimpleNamespace

    poses = np.array([[70.0, 10.0, 5.0], [-20.0, 0.0, 0.0], [85.0, -5.0, 10.0]])
    bench = SimpleNamespace(abs_yaw=np.abs(poses[:, 0]), pose=lambda i: poses[i])
    r = pose_scores(bench, np.arange(3), poses)
    assert r["pose_mae_field_deg"]["mean"] < 1e-9 and r["pose_mae_deg"]["mean"] < 1e-9
    assert r["pose_mae_field_deg"]["faces"] == 3
    r = pose_scores(bench, np.arange(3), poses + [5.0, 0.0, 0.0])
    assert r["pose_mae_deg"]["yaw"] == pytest.approx(5.0) and r["yaw_bias_above_60_deg"] == pytest.approx(5.0)
    assert r["pose_mae_field_deg"]["mean"] > 1.0
