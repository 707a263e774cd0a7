"""The model type and its .npz contract: round trips and clear errors for bad files."""

import numpy as np
import pytest

from stn3dmm.model import ModelFileError, MorphableModel, load_model_file, save_model
from testkit.model_files import rewrite_npz as _rewrite


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


def _perm_not_involution(n=16):
    """A cycle: a permutation, but not its own inverse."""
    return np.roll(np.arange(n), 1)


@pytest.mark.parametrize("change, message", [
    (dict(uv=np.full((4, 4, 2), np.nan, np.float32)), r"'uv' has NaN or infinite texture coordinates at 16 of 16"),
    (dict(uv=np.full((4, 4, 2), 1.5, np.float32)), r"'uv' must lie in \[0, 1\].*1\.5"),
    (dict(mirror=np.zeros(16, np.int64)), r"'mirror' must be a permutation.*15 of its entries repeat"),
    (dict(mirror=_perm_not_involution()), r"'mirror' must be its own inverse.*vertex 0 -> 15 -> 14"),
    (dict(mirror=np.full(16, 99, np.int64)), r"mirror: indices must lie in \[0, 16\)"),
    (dict(landmarks_ibug68=np.full(68, -1, np.int64)), r"landmarks_ibug68: indices must lie in \[0, 16\)"),
    (dict(basis_exp=np.full((2, 4, 4, 3), np.inf, np.float32)), r"basis_exp: contains NaN or infinity"),
])
def test_bad_values_are_named(tmp_path, change, message):
    """Values, not just shapes: a NaN uv reached the OBJ files as 'vt nan nan' (issue 11, item 7)."""
    good = save_model(_model(), tmp_path / "good.npz")
    bad = _rewrite(good, tmp_path / "bad.npz", **change)
    with pytest.raises(ModelFileError, match=message) as e:
        load_model_file(bad)
    assert str(e.value).startswith(str(bad))


def _patch_central_size(path, member: str, size: int) -> None:
    """Make the zip's central directory claim ``size`` uncompressed bytes for ``member``."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    at = data.find(b"PK\x01\x02")                                 # central directory entries
    while at >= 0:
        n = int.from_bytes(data[at + 28:at + 30], "little")
        if bytes(data[at + 46:at + 46 + n]) == name:
            data[at + 24:at + 28] = size.to_bytes(4, "little")
            path.write_bytes(bytes(data))
            return
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{member} not found")


def test_declared_sizes_are_checked_before_reading(tmp_path, monkeypatch):
    """A small file that claims gigabytes is refused before NumPy allocates them (item 9)."""
    import zipfile

    good = save_model(_model(), tmp_path / "good.npz")
    claims = tmp_path / "claims.npz"
    claims.write_bytes(good.read_bytes())
    _patch_central_size(claims, "basis_id.npy", 2 ** 31)           # "2 GB" in the zip's directory
    reads = []
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: reads.append(a) or 1 / 0)
    with pytest.raises(ModelFileError, match=r"claims.npz: its arrays claim 2,048\.\d MiB uncompressed, more than "
                                             r"the 1,024\.0 MiB a model file may hold; refused before reading"):
        load_model_file(claims)
    assert reads == []                                             # not one array was read
    monkeypatch.undo()
    # a header that claims a larger array than its member holds (NumPy would allocate the claim)
    lie = tmp_path / "lie.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(lie, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "mean.npy":
                body = body.replace(b"'shape': (4, 4, 3)", b"'shape': (268435456, 3)")
            dst.writestr(info.filename, body)
    with pytest.raises(ModelFileError, match=r"lie.npz: array 'mean' claims shape \(268435456, 3\) of float32 "
                                             r"\(3,072\.0 MiB\), more than its member holds"):
        load_model_file(lie)
    with pytest.raises(ModelFileError, match="good.npz: its arrays claim .* more than the 0.0 MiB"):
        load_model_file(good, max_bytes=100)
    assert load_model_file(good).n_vertices == 16
