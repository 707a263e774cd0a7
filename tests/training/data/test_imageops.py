"""The harsh degradations of ``data.degrade``: each does what it says, on images with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stn3dmm.training.data.imageops import DEGRADATIONS, degrade, draw_degradation


def test_low_resolution_removes_what_the_smaller_image_cannot_hold():
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None]) % 2).float().expand(3, 64, 64)
    out = degrade(checker, dict(kind="low resolution", factor=4.0))
    assert out.shape == checker.shape
    torch.testing.assert_close(out, torch.full_like(out, 0.5), atol=1e-6, rtol=0)   # 1 px squares: grey
    ramp = torch.linspace(0, 1, 64).expand(3, 64, 64)
    assert (degrade(ramp, dict(kind="low resolution", factor=4.0)) - ramp).abs().max() < 0.05   # smooth: kept


def test_the_occluder_covers_its_box_with_the_tile_and_nothing_else():
    img, tile = torch.zeros(3, 100, 100), torch.ones(3, 10, 10)
    out = degrade(img, dict(kind="occluder", box=(0.5, 0.3, 0.4, 0.2), tile=7), [tile])
    assert out[:, 20:40, 30:70].min() == 1 and out.sum() == 3 * 20 * 40
    grey = degrade(torch.rand(3, 100, 100), dict(kind="occluder", box=(0.5, 0.5, 0.5, 0.5), tile=0))
    assert grey[:, 25:75, 25:75].std() < 1e-6                                   # no tiles: flat


def test_dark_and_side_light_scale_as_drawn():
    img = torch.full((3, 50, 50), 0.8)
    torch.testing.assert_close(degrade(img, dict(kind="dark", level=0.5, gamma=1.5)),
                               torch.full_like(img, 0.4 ** 1.5))
    lit = degrade(img, dict(kind="side light", level=0.25, angle=0.0))        # light from image +x
    assert lit[:, :, 0].max() == pytest.approx(0.2) and lit[:, :, -1].min() == pytest.approx(0.8)
    assert (lit[:, :, 1:] >= lit[:, :, :-1]).all()


def test_blur_keeps_the_mean_and_spreads_a_point():
    img = torch.zeros(3, 41, 41)
    img[:, 20, 20] = 1.0
    out = degrade(img, dict(kind="blur", sigma=2.0))
    assert out.sum().item() == pytest.approx(3.0, rel=1e-4) and out[:, 20, 20].max() < 0.05
    assert out[0, 20, 22].item() == pytest.approx(out[0, 20, 20].item() * np.exp(-0.5), rel=0.02)


def test_draws_are_every_kind_and_the_same_stream_whatever_the_kind():
    kinds = {draw_degradation(np.random.default_rng(s), 5)["kind"] for s in range(200)}
    assert kinds == set(DEGRADATIONS)
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    draw_degradation(a, 5)
    draw_degradation(b, 99)
    assert a.uniform() == b.uniform()
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(torch.zeros(3, 4, 4), dict(kind="fog"))
