"""The model type and its .npz contract: round trips and clear errors for bad files."""

import numpy as np
import pytest

from stn3dmm.model import ModelFileError, MorphableModel, load_model_file, save_model


def _model(res=4, grid=True):
    n = res * res
    rng = np.random.default_rng(0)
    return MorphableModel(
        mean=rng.normal(size=(n, 3)), basis_id=rng.normal(size=(3, n, 3)), basis_exp=rng.normal(size=(2, n, 3)),
        faces=np.array([[0, 1, 2], [1, 3, 2]]), landmarks={"aflw21": np.arange(21) % n, "ibug68": np.arange(68) % n},
        mirror=np.arange(n)[::-1], midline=np.array([0, 5]), source="test", res=res if grid else 0,
        uv=rng.uniform(size=(n, 2)), extras={"note": np.arange(3)})


@pytest.mark.parametrize("grid", [True, False])
def test_round_trip(tmp_path, grid):
    m = _model(grid=grid)
    p = save_model(m, tmp_path / "m.npz")
    z = np.load(p, allow_pickle=False)
    if grid:  # the contract's image layout
        assert z["mean"].shape == (4, 4, 3) and z["basis_id"].shape == (3, 4, 4, 3) and int(z["res"]) == 4
    q = load_model_file(p)
    for k in ("mean", "basis_id", "basis_exp", "faces", "mirror", "midline", "uv"):
        np.testing.assert_allclose(getattr(q, k), getattr(m, k), rtol=1e-6, atol=1e-6)
    assert q.source == "test" and q.res == m.res and set(q.landmarks) == {"aflw21", "ibug68"}
    np.testing.assert_array_equal(q.extras["note"], np.arange(3))
    assert not list(tmp_path.glob("*.tmp*")), "temporary file left behind"


def test_shape_and_truncation():
    m = _model()
    a, e = np.array([1.0, -2.0]), np.array([0.5])
    x = m.shape(a, e)
    np.testing.assert_allclose(x, m.mean + m.basis_id[0] - 2 * m.basis_id[1] + 0.5 * m.basis_exp[0], rtol=1e-5, atol=1e-5)
    assert m.truncated(2, 1).basis_id.shape == (2, 16, 3)
    with pytest.raises(ValueError, match="cannot keep"):
        m.truncated(5, 1)


def _rewrite(src, dst, **changes):
    z = dict(np.load(src, allow_pickle=False))
    for k, v in changes.items():
        if v is None:
            z.pop(k)
        else:
            z[k] = v
    np.savez(dst, **z)
    return dst


@pytest.mark.parametrize("change, message", [
    (dict(mean=None), "missing array.*mean"),
    (dict(basis_id=np.zeros((3, 4, 5, 3), np.float32)), "basis_id.*shape"),
    (dict(mean=np.zeros((4, 4, 3, 1), np.float32)), "mean.*dimensions"),
    (dict(faces=np.zeros((2, 3), np.float32)), "faces.*dtype.*integer"),
    (dict(landmarks_aflw21=np.arange(20)), "landmarks_aflw21.*shape"),
    (dict(faces=np.array([[0, 1, 99]])), "faces.*indices"),
    (dict(mean=np.full((4, 4, 3), np.nan, np.float32)), "NaN"),
    (dict(uv=np.zeros((4, 3, 2), np.float32)), "uv.*shape"),
])
def test_bad_arrays_are_named(tmp_path, change, message):
    good = save_model(_model(), tmp_path / "good.npz")
    bad = _rewrite(good, tmp_path / "bad.npz", **change)
    with pytest.raises(ModelFileError, match=message) as e:
        load_model_file(bad)
    assert "bad.npz" in str(e.value)


@pytest.mark.parametrize("res", [np.float64(4.0), np.array([4]), np.int64(-4)])
def test_bad_res_is_named_as_res(tmp_path, res):
    good = save_model(_model(), tmp_path / "good.npz")
    bad = _rewrite(good, tmp_path / "bad.npz", res=res)
    with pytest.raises(ModelFileError, match="bad.npz: array 'res' must be one non-negative integer"):
        load_model_file(bad)


def test_res_zero_with_a_grid_mean_is_named_as_res(tmp_path):
    good = save_model(_model(), tmp_path / "good.npz")
    bad = _rewrite(good, tmp_path / "bad.npz", res=np.int64(0))
    with pytest.raises(ModelFileError, match="bad.npz: array 'res' is 0 .*grid shape"):
        load_model_file(bad)


def test_no_identity_components_refused_but_no_expression_allowed(tmp_path):
    good = save_model(_model(), tmp_path / "good.npz")
    bad = _rewrite(good, tmp_path / "bad.npz", basis_id=np.zeros((0, 4, 4, 3), np.float32))
    with pytest.raises(ModelFileError, match="'basis_id' has no components"):
        load_model_file(bad)
    ok = _rewrite(good, tmp_path / "ok.npz", basis_exp=np.zeros((0, 4, 4, 3), np.float32))
    assert load_model_file(ok).n_exp == 0


@pytest.mark.parametrize("name", ["landmarks_aflw21", "landmarks_ibug68"])
def test_landmarks_are_required(tmp_path, name):
    good = save_model(_model(), tmp_path / "good.npz")
    bad = _rewrite(good, tmp_path / "bad.npz", **{name: None})
    with pytest.raises(ModelFileError, match=f"bad.npz: missing array.*{name}"):
        load_model_file(bad)
    m = _model()
    del m.landmarks[name.removeprefix("landmarks_")]
    with pytest.raises(ValueError, match="no landmark set"):
        save_model(m, tmp_path / "never.npz")
    assert not (tmp_path / "never.npz").exists()


def test_pickled_extra_array_is_named(tmp_path):
    z = dict(np.load(save_model(_model(), tmp_path / "good.npz"), allow_pickle=False))
    z["notes"] = np.array([{"evil": 1}], dtype=object)
    np.savez(tmp_path / "pickled.npz", **z)
    with pytest.raises(ModelFileError, match="pickled.npz: array 'notes' holds pickled objects"):
        load_model_file(tmp_path / "pickled.npz")


def test_corrupt_missing_and_pickled_files(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model_file(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(ModelFileError, match="junk.npz.*not a readable"):
        load_model_file(tmp_path / "junk.npz")
    good = save_model(_model(), tmp_path / "good.npz")
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.npz"):
        load_model_file(tmp_path / "cut.npz")
    z = dict(np.load(good, allow_pickle=False))
    z["source"] = np.array([{"evil": 1}], dtype=object)
    np.savez(tmp_path / "pickled.npz", **z)
    with pytest.raises(ModelFileError, match="pickled"):
        load_model_file(tmp_path / "pickled.npz")
