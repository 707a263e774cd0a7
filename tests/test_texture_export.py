"""Symmetric completion, averaging and the OBJ export, on tensors the tests make."""

import numpy as np
import pytest
import torch
from PIL import Image

from stn3dmm.flatten.export import read_obj, write_textured_obj
from stn3dmm.model.resample import grid_faces, grid_uv
from stn3dmm.stn.texture import symmetric_completion, weighted_average


def test_completion_fills_hidden_pixels_from_their_mirror():
    R = 16
    tex = torch.rand(2, 3, R, R, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mask = torch.ones(2, 1, R, R, dtype=torch.float64)
    mask[:, :, :, 11:] = 0                      # right side hidden (columns 11..15)
    out, alpha = symmetric_completion(tex, mask, blend=0)
    assert torch.equal(alpha, torch.ones_like(alpha))
    assert torch.allclose(out[..., :11], tex[..., :11])                 # seen: kept
    assert torch.allclose(out[..., 11:], tex.flip(-1)[..., 11:])         # hidden: mirror pixel
    # both a pixel and its mirror hidden -> no data
    mask[:, :, 3, :] = 0
    out, alpha = symmetric_completion(tex, mask, blend=0)
    assert (alpha[:, :, 3] == 0).all() and (out[:, :, 3] == 0).all()


def test_completion_blends_the_seam_and_keeps_the_interior():
    R = 32
    yy, xx = torch.meshgrid(torch.arange(R), torch.arange(R), indexing="ij")
    tex = torch.zeros(1, 3, R, R, dtype=torch.float64)
    tex[:, 0] = 1.0                             # red where seen ...
    mask = (xx < 20).to(torch.float64)[None, None]
    out, _ = symmetric_completion(tex * mask, mask, blend=2.0)
    assert torch.allclose(out[..., :8], tex[..., :8])                    # far from the seam: own pixel
    # across the seam the value changes gradually, not in one step
    row = out[0, 0, 16, 8:24]
    assert (row.diff().abs() < 0.6).all()


def test_weighted_average_and_coverage():
    a = torch.full((1, 3, 4, 4), 0.2)
    b = torch.full((1, 3, 4, 4), 0.8)
    wa = torch.ones(1, 1, 4, 4)
    wb = torch.ones(1, 1, 4, 4)
    wb[..., :2] = 0
    mean, cov = weighted_average(torch.cat([a, b]), torch.cat([wa, wb]))
    assert torch.allclose(mean[:, :, :2], torch.full((3, 4, 2), 0.2))
    assert torch.allclose(mean[:, :, 2:], torch.full((3, 4, 2), 0.5))
    assert cov[0, 0, 0] == 1 and cov[0, 0, 3] == 2
    with pytest.raises(ValueError, match="expected"):
        weighted_average(a, torch.ones(2, 1, 4, 4))


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
