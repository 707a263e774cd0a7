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
