"""The textured OBJ export (OBJ + MTL + PNG) and its reader, on a mesh the test makes."""

import numpy as np
from PIL import Image

from stn3dmm.flatten.export import read_obj, write_textured_obj
from stn3dmm.model.resample import grid_faces, grid_uv


def test_obj_export_round_trip(tmp_path):
    R = 9
    rng = np.random.default_rng(0)
    V = rng.normal(size=(R * R, 3))
    tex = (rng.uniform(size=(R, R, 4)) * 255).astype(np.uint8)
    paths = write_textured_obj(tmp_path / "face.obj", V, grid_faces(R), grid_uv(R), tex)
    assert [p.name for p in paths] == ["face.obj", "face.mtl", "face.png"]
    obj = read_obj(paths[0])
    assert obj["v"].shape == (R * R, 3) and obj["vt"].shape == (R * R, 2)
    assert obj["f_v"].shape == (2 * (R - 1) ** 2, 3) and np.array_equal(obj["f_v"], obj["f_vt"])
    assert obj["f_v"].min() == 0 and obj["f_v"].max() == R * R - 1
    assert obj["vt"].min() >= 0 and obj["vt"].max() <= 1
    np.testing.assert_allclose(obj["v"], V, atol=1e-4)   # written with 4 decimals (0.1 micrometre)
    assert obj["mtllib"] == "face.mtl" and "map_Kd face.png" in paths[1].read_text()
    assert np.array_equal(np.asarray(Image.open(paths[2])), tex)
    # vt of vertex (row 0, column 0) is the image's top-left corner: (u, v) = (0, 1)
    np.testing.assert_allclose(obj["vt"][0], [0, 1])
    assert not list(tmp_path.glob("*.tmp"))


def test_names_an_obj_cannot_reference_are_refused(tmp_path):
    """OBJ/MTL split at white space: a space loses the texture in MeshLab, a line break injects lines."""
    import pytest

    from stn3dmm.flatten.export import mtl_text, obj_text

    R = 3
    for bad in ("my face.mtl", "a\nmtllib evil.mtl", "tab\t.mtl", ""):
        with pytest.raises(ValueError, match="cannot be referenced"):
            obj_text(np.zeros((R * R, 3)), grid_faces(R), grid_uv(R), bad)
        with pytest.raises(ValueError, match="cannot be referenced"):
            mtl_text(bad)
    with pytest.raises(ValueError, match="cannot be referenced"):
        write_textured_obj(tmp_path / "my face.obj", np.zeros((R * R, 3)), grid_faces(R), grid_uv(R),
                           np.zeros((R, R, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []
