"""Tests of the BFM 2009 (+ 3DDFA expressions) and BFM 2017/2019 sources on synthetic files
with the original variable names and layouts: a 30 x 30 grid bent into a half cylinder."""

import h5py
import numpy as np
import pytest
import scipy.io

from stn3dmm.model.morphable import ModelFileError
from stn3dmm.model.sources import extrapolate_displacements, load_bfm2009, load_bfm2017

R, RES, RADIUS = 30, 30, 80.0  # grid rows/cols, cylinder radius (mm)
N = R * RES
HOLE = np.array([r * RES + c for r in range(12, 16) for c in range(13, 17)])  # interior patch
KNOWN = np.setdiff1d(np.arange(N), HOLE)
K_ID, K_EXP = 5, 3


def _cylinder():
    """(N, 3) half cylinder in mm (axis = y, facing +z), (F, 3) faces, (N,) arc length s, y."""
    theta = np.linspace(-np.pi / 2, np.pi / 2, RES)
    y = np.linspace(60, -60, R)
    t, yy = np.meshgrid(theta, y)
    v = np.stack([RADIUS * np.sin(t), yy, RADIUS * np.cos(t)], -1).reshape(N, 3)
    faces = []
    for r in range(R - 1):
        for c in range(RES - 1):
            a = r * RES + c
            faces += [[a, a + RES, a + 1], [a + 1, a + RES, a + RES + 1]]  # outward = +radial
    return v, np.array(faces), (RADIUS * t).ravel(), yy.ravel()


def _harmonic(s, y, rng):
    """A displacement field linear in arc length and height: harmonic on the cylinder, (N, 3)."""
    a, b, c = rng.normal(size=(3, 3))
    return a + np.outer(y, b) / 30 + np.outer(s, c) / 30


def _interleave(field_nm3):
    """(C, V, 3) -> (3V, C) vertex-interleaved columns, as in the .mat files."""
    return np.asarray(field_nm3).reshape(len(field_nm3), -1).T


@pytest.fixture
def bfm(tmp_path):
    """Synthetic 01_MorphableModel.mat, Model_Expression.mat, index map (micrometres)."""
    rng = np.random.default_rng(0)
    v, faces, s, y = _cylinder()
    pc = np.linalg.qr(rng.normal(size=(3 * N, K_ID)))[0]
    ev = np.array([[4e4], [3e4], [2e4], [1e4], [5e3]])
    order = rng.permutation(KNOWN)  # the map need not be sorted
    exp_true = np.stack([_harmonic(s, y, rng) for _ in range(K_EXP)])  # (E, N, 3) mm
    mu_true = _harmonic(s, y, rng)
    paths = dict(bfm=tmp_path / "01_MorphableModel.mat", exp=tmp_path / "Model_Expression.mat",
                 map=tmp_path / "map.npy")
    scipy.io.savemat(paths["bfm"], dict(
        shapeMU=(v * 1000).reshape(-1, 1).astype(np.float32), shapePC=pc.astype(np.float32),
        shapeEV=ev, tl=(faces + 1).astype(np.float64), texMU=np.zeros((3 * N, 1))))
    scipy.io.savemat(paths["exp"], dict(w_exp=_interleave(exp_true[:, order] * 1000),
                                        mu_exp=_interleave(mu_true[None, order] * 1000)))
    np.save(paths["map"], order)
    return dict(paths=paths, v=v, faces=faces, pc=pc, ev=ev.ravel(), order=order,
                exp_true=exp_true, mu_true=mu_true, s=s, y=y)


def _load(b, **kw):
    p = b["paths"]
    kw.setdefault("log", lambda msg: None)
    kw.setdefault("n_id", 2)
    return load_bfm2009(p["bfm"], p["exp"], kw.pop("index_map", p["map"]), **kw)


# ---------------------------------------------------------------- BFM 2009


def test_bfm2009_units_scaling_faces(bfm):
    marks = {"aflw21": np.arange(21) * 7}
    m = _load(bfm, n_id=3, n_exp=2, landmarks=marks)
    assert m.mean.shape == (N, 3) and m.basis_id.shape == (3, N, 3) and m.basis_exp.shape == (2, N, 3)
    np.testing.assert_allclose(np.ptp((m.mean - bfm["mu_true"])[:, 0]), 2 * RADIUS, rtol=1e-3)  # mm, not um
    # shapeEV are standard deviations: basis = PC * EV, no square root
    for k in range(3):
        np.testing.assert_allclose(m.basis_id[k], bfm["pc"][:, k].reshape(N, 3) * bfm["ev"][k] / 1000, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(m.basis_id[0]), 40.0, rtol=1e-4)
    # mean = shapeMU + (extrapolated) mu_exp
    np.testing.assert_allclose(m.mean, bfm["v"] + bfm["mu_true"], atol=1e-3)
    np.testing.assert_array_equal(m.faces, bfm["faces"])
    np.testing.assert_array_equal(m.landmarks["aflw21"], marks["aflw21"])
    assert "BFM 2009" in m.source
    no_mu = _load(bfm, n_id=1, n_exp=1, add_mu_exp=False)
    np.testing.assert_allclose(no_mu.mean, bfm["v"], atol=1e-3)


def test_bfm2009_expression_known_and_extrapolated(bfm):
    m = _load(bfm, n_exp=K_EXP, n_id=2)
    truth = bfm["exp_true"]
    # known vertices keep the file's displacements exactly (up to float32)
    np.testing.assert_allclose(m.basis_exp[:, KNOWN], truth[:, KNOWN], rtol=1e-6, atol=1e-6)
    # the hole gets the harmonic field back
    err = np.abs(m.basis_exp[:, HOLE] - truth[:, HOLE]).max()
    assert err < 1e-4 * np.abs(truth).max(), err
    assert np.abs(truth[:, HOLE]).max() > 0.5  # not trivially zero


def test_bfm2009_original_least_squares(bfm):
    """exact=False solves [L; S] Y = [L V; S V + E] as the original does: close, not exact."""
    m = _load(bfm, n_exp=K_EXP, n_id=1, exact=False)
    truth = bfm["exp_true"]
    scale = np.abs(truth).max()
    err = np.abs(m.basis_exp - truth)
    assert 1e-3 * scale < err[:, KNOWN].max() < 0.05 * scale  # smoothed near the mesh border
    assert err[:, HOLE].max() < 0.01 * scale


def test_extrapolation_smooth_nonharmonic_field():
    """A quadratic field over the hole: no exact answer, but close to the truth."""
    v, faces, s, y = _cylinder()
    truth = np.stack([np.stack([(s / 40) ** 2, (y / 40) ** 2, s * y / 1600], -1)])
    out = extrapolate_displacements(v, faces, KNOWN, truth[:, KNOWN])
    np.testing.assert_array_equal(out[:, KNOWN], truth[:, KNOWN])
    err = np.abs(out[:, HOLE] - truth[:, HOLE]).max()
    spread = np.ptp(truth[:, HOLE], axis=1).max()
    assert err < 0.1 * spread, (err, spread)


def test_bfm2009_sigma_exp(bfm, tmp_path):
    p = bfm["paths"]
    d = scipy.io.loadmat(p["exp"])
    sigma = np.array([[2.0], [0.5], [3.0]])
    scipy.io.savemat(p["exp"], dict(w_exp=d["w_exp"], sigma_exp=sigma))
    base = _load(bfm, n_exp=3)  # default, as the original: w_exp taken as it is
    logged = []
    scaled = _load(bfm, n_exp=3, scale_exp=None, log=logged.append)  # scale when sigma_exp exists
    np.testing.assert_allclose(scaled.basis_exp, base.basis_exp * sigma.reshape(3, 1, 1), rtol=1e-5, atol=1e-6)
    assert "sigma_exp" in " ".join(logged) and "implausible" not in logged[-1]
    scipy.io.savemat(p["exp"], dict(w_exp=d["w_exp"], sigma_exp=sigma * 1e3))  # scaled twice
    _load(bfm, n_exp=3, scale_exp=None, log=logged.append)
    assert "implausible" in logged[-1] and "scale_exp" in logged[-1]
    np.testing.assert_allclose(base.mean, bfm["v"], atol=1e-3)  # no mu_exp in this file
    scipy.io.savemat(p["exp"], dict(w_exp=d["w_exp"]))
    with pytest.raises(ModelFileError, match="sigma_exp"):
        _load(bfm, scale_exp=True)


@pytest.mark.parametrize("fmt", ["txt", "mat", "array"])
def test_bfm2009_index_map_formats(bfm, tmp_path, fmt):
    order = bfm["order"]
    if fmt == "txt":
        src = tmp_path / "map.txt"
        np.savetxt(src, order, fmt="%d")
    elif fmt == "mat":
        src = tmp_path / "map_tddfa_to_basel.mat"
        scipy.io.savemat(src, {"map_tddfa_to_basel": order.reshape(1, -1).astype(np.float64)})
    else:
        src = order
    m = _load(bfm, index_map=src, n_id=1, n_exp=1)
    np.testing.assert_allclose(m.basis_exp[0, KNOWN], bfm["exp_true"][0, KNOWN], atol=1e-5)


def test_bfm2009_matlab_v73(bfm, tmp_path):
    """MATLAB v7.3 files are HDF5 with transposed arrays."""
    d = scipy.io.loadmat(bfm["paths"]["bfm"])
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        for k in ("shapeMU", "shapePC", "shapeEV", "tl"):
            f[k] = d[k].T
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file".ljust(124, b" ") + b"\x00\x02IM")
    m = load_bfm2009(path, bfm["paths"]["exp"], bfm["paths"]["map"], n_id=2, n_exp=1, log=lambda s: None)
    ref = _load(bfm, n_id=2, n_exp=1)
    np.testing.assert_array_equal(m.mean, ref.mean)
    np.testing.assert_array_equal(m.basis_id, ref.basis_id)
    np.testing.assert_array_equal(m.faces, ref.faces)


def _rewrite(path, **changes):
    d = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    new = {k: v(d) for k, v in changes.items() if v is not None}
    d = {k: v for k, v in d.items() if changes.get(k, 0) is not None}
    scipy.io.savemat(path, {**d, **new})


@pytest.mark.parametrize("which, changes, pattern", [
    ("bfm", dict(shapeMU=None, shapeMu=lambda d: d["shapeMU"]), r"missing variable\(s\) shapeMU .*shapeMu"),
    ("bfm", dict(shapePC=lambda d: d["shapePC"][:-3]), r"shapePC has shape \(2697, 5\)"),
    ("bfm", dict(shapeEV=lambda d: d["shapeEV"][:2]), r"shapeEV has 2 entries"),
    ("bfm", dict(tl=lambda d: d["tl"] - 1), r"tl must hold 1-based"),
    ("bfm", dict(tl=lambda d: d["tl"][:, :2]), r"tl must be a \(T, 3\)"),
    ("exp", dict(w_exp=None), r"missing variable\(s\) w_exp"),
    ("exp", dict(w_exp=lambda d: d["w_exp"][3:]), r"w_exp has shape \(2649, 3\).*index map"),
    ("exp", dict(mu_exp=lambda d: d["mu_exp"][3:]), r"mu_exp has 2649 entries"),
])
def test_bfm2009_errors_name_file_and_variable(bfm, which, changes, pattern):
    path = bfm["paths"][which]
    _rewrite(path, **changes)
    with pytest.raises(ModelFileError, match=pattern) as e:
        _load(bfm, n_id=3, n_exp=3)
    assert str(e.value).startswith(str(path))


def test_bfm2009_bad_index_map_and_missing_file(bfm, tmp_path):
    np.save(bfm["paths"]["map"], bfm["order"] + 1)  # 1-based by mistake: N is out of range
    with pytest.raises(ModelFileError, match=r"map\.npy: indices must be 0-based"):
        _load(bfm)
    np.save(bfm["paths"]["map"], np.r_[bfm["order"][:-1], bfm["order"][0]])
    with pytest.raises(ModelFileError, match="repeats"):
        _load(bfm)
    with pytest.raises(ModelFileError, match="nope.mat: no such file"):
        load_bfm2009(tmp_path / "nope.mat", bfm["paths"]["exp"], bfm["order"], log=lambda s: None)


# ---------------------------------------------------------------- BFM 2017 / 2019


def _write_h5(path, v, faces, rng, unit=1.0, drop=None, k_id=6, k_exp=4):
    pcs = {g: np.linalg.qr(rng.normal(size=(3 * len(v), k)))[0] for g, k in (("shape", k_id), ("expression", k_exp))}
    var = {"shape": np.linspace(400, 100, k_id), "expression": np.linspace(9, 1, k_exp)}
    with h5py.File(path, "w") as f:
        f["shape/representer/points"] = (v * unit).T.astype(np.float32)
        f["shape/representer/cells"] = faces.T.astype(np.uint32)
        f["shape/model/mean"] = (v * unit).ravel().astype(np.float32)
        f["expression/model/mean"] = np.full(3 * len(v), 0.5 * unit, np.float32)
        f["color/model/mean"] = np.zeros(3 * len(v), np.float32)
        for g in ("shape", "expression"):
            f[f"{g}/model/pcaBasis"] = pcs[g].astype(np.float32)
            f[f"{g}/model/pcaVariance"] = (var[g] * unit ** 2).astype(np.float32)
        if drop:
            del f[drop]
    return pcs, var


def test_bfm2017_units_and_scaling(tmp_path):
    v, faces, _, _ = _cylinder()
    pcs, var = _write_h5(tmp_path / "model2019_bfm.h5", v, faces, np.random.default_rng(1))
    logged = []
    m = load_bfm2017(tmp_path / "model2019_bfm.h5", n_id=4, n_exp=2, log=logged.append)
    assert len(logged) == 1 and "Reading" in logged[0]
    assert m.basis_id.shape == (4, N, 3) and m.basis_exp.shape == (2, N, 3)
    np.testing.assert_allclose(m.mean, v + 0.5, atol=1e-4)  # shape mean + expression mean
    for k in range(4):  # orthonormal basis times sqrt(variance)
        np.testing.assert_allclose(m.basis_id[k], pcs["shape"][:, k].reshape(N, 3) * np.sqrt(var["shape"][k]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(m.basis_id[0]), 20.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(m.basis_exp[1]), np.sqrt(var["expression"][1]), rtol=1e-5)
    np.testing.assert_array_equal(m.faces, faces)
    assert "model2019_bfm.h5" in m.source


def test_bfm2017_micrometres_detected(tmp_path):
    v, faces, _, _ = _cylinder()
    path = tmp_path / "um.h5"
    _write_h5(path, v, faces, np.random.default_rng(2), unit=1000.0)
    logged = []
    m = load_bfm2017(path, n_id=2, n_exp=1, log=logged.append)
    np.testing.assert_allclose(np.ptp(m.mean[:, 0]), 2 * RADIUS, rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(m.basis_id[0]), 20.0, rtol=1e-4)
    assert any("micrometres" in s for s in logged)
    explicit = load_bfm2017(path, n_id=2, n_exp=1, units="um", log=lambda s: None)
    np.testing.assert_array_equal(explicit.mean, m.mean)
    as_mm = load_bfm2017(path, n_id=2, n_exp=1, units="mm", log=logged.append)
    assert np.ptp(as_mm.mean[:, 0]) > 1e5 and "warning" in logged[-1]
    with pytest.raises(ValueError, match="units"):
        load_bfm2017(path, units="cm")


@pytest.mark.parametrize("drop", ["shape/model/pcaVariance", "expression/model/pcaBasis",
                                  "shape/representer/cells"])
def test_bfm2017_missing_dataset(tmp_path, drop):
    v, faces, _, _ = _cylinder()
    path = tmp_path / "bad.h5"
    _write_h5(path, v, faces, np.random.default_rng(3), drop=drop)
    with pytest.raises(ModelFileError, match=f"bad.h5: missing dataset {drop}"):
        load_bfm2017(path, n_id=2, n_exp=2, log=lambda s: None)


def test_bfm2017_bad_shapes_and_files(tmp_path):
    v, faces, _, _ = _cylinder()
    path = tmp_path / "few.h5"
    _write_h5(path, v, faces, np.random.default_rng(4), k_exp=2)
    with pytest.raises(ModelFileError, match=r"expression/model/pcaBasis has shape \(2700, 2\), expected \(2700, >= 3\)"):
        load_bfm2017(path, n_id=2, n_exp=3, log=lambda s: None)
    with h5py.File(path, "a") as f:
        del f["expression"]
    assert load_bfm2017(path, n_id=2, n_exp=0, log=lambda s: None).n_exp == 0  # no expressions needed
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ModelFileError, match="junk.h5: not a readable HDF5 file"):
        load_bfm2017(tmp_path / "junk.h5", log=lambda s: None)
