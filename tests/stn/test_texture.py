"""Symmetric completion and the weighted average of textures, on tensors the tests make."""

import pytest
import torch

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
