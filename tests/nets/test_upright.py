"""The up-direction network: its bins and readings (known answers), its disc, and the shipped
weights on the built-in sample photos turned every way."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stn3dmm.nets.upright import (BINS, CONTEXT, SIZE, UprightNet, bin_centres, load_upright, p_upside_down,
                                  soft_targets, up_angle)


def test_soft_targets_peak_at_their_angle_and_read_back_by_up_angle():
    angles = torch.tensor([0.0, 0.4, -2.0, math.pi, 3.0, -math.pi / 2])
    t = soft_targets(angles)
    assert torch.allclose(t.sum(1), torch.ones(len(angles)))
    err = torch.remainder(up_angle(t.log()) - angles + math.pi, 2 * math.pi) - math.pi
    assert err.abs().max() < 1e-3
    c = bin_centres()
    assert len(c) == BINS and abs(float(c[-1]) - math.pi) < 1e-6 and float(c[0]) > -math.pi


def test_p_upside_down_is_the_mass_beyond_a_quarter_turn():
    logits = soft_targets(torch.tensor([0.0, math.pi, 0.3, 2.5])).log()
    p = p_upside_down(logits)
    assert p[0] < 1e-3 and p[1] > 1 - 1e-3 and p[2] < 1e-3 and p[3] > 0.99
    flat = p_upside_down(torch.zeros(1, BINS))
    assert abs(float(flat) - 0.5) < 1e-6            # no preference: half of the circle


def test_the_network_sees_only_the_disc_inscribed_in_its_crop():
    torch.manual_seed(0)
    net = UprightNet().eval()
    x = torch.rand(2, 3, SIZE, SIZE)
    y = x.clone()
    y[..., :6, :6] = 1.0 - y[..., :6, :6]         # a corner, outside the disc
    assert torch.equal(net(x), net(y))
    y[..., 30:34, 30:34] = 0.0                     # the centre
    assert not torch.equal(net(x), net(y))
    with pytest.raises(ValueError, match="64 x 64"):
        net(torch.rand(1, 3, 32, 32))


def test_a_file_that_is_not_its_weights_is_named(tmp_path):
    bad = tmp_path / "upright.pt"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="upright.pt"):
        load_upright(bad)
    assert load_upright(tmp_path / "none.pt") is None


@pytest.fixture(scope="module")
def shipped():
    net = load_upright()
    if net is None:
        pytest.skip("the package holds no up-direction network (nets/weights/upright.pt)")
    return net


def _sample_crops(turns):
    """Each sample photo's face (our detector's box), cropped as the fitter crops it for the
    network, turned by each of ``turns`` (radians)."""
    from stn3dmm.photos import FaceDetector, detect_faces, read_photo
    from stn3dmm.photos.samples import sample_photo_paths
    from stn3dmm.photos.crop import crop_square

    detector, out = FaceDetector(landmarks=False), []
    for path in sample_photo_paths():
        image = read_photo(path).image
        b = np.asarray(detect_faces(image, detector)[0].bbox, np.float64)
        centre, side = (b[:2] + b[2:]) / 2, float(max(b[2:] - b[:2]))
        out += [crop_square(image, centre, side * CONTEXT, SIZE, angle=a)[0] for a in turns]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float()


def test_the_shipped_network_reads_the_sample_faces_turned_every_way(shipped):
    """A crop turned by angle a shows the face turned by -a from how the unturned crop shows it
    (whose own roll is the photo's, a few degrees): at every eighth of a turn, the network's reading
    must move by -a within 20 degrees, and it must call the unturned crops upright and the
    half-turned ones upside down, surely."""
    turns = [2 * math.pi * j / 8 for j in range(8)]
    with torch.no_grad():
        logits = shipped(_sample_crops(turns))
    up = up_angle(logits).reshape(-1, 8)
    moved = up - up[:, :1] + torch.tensor(turns)[None]
    err = (torch.remainder(moved + math.pi, 2 * math.pi) - math.pi).abs()
    assert err.max() < math.radians(20), err.rad2deg()
    assert up[:, 0].abs().max() < math.radians(15)
    p = p_upside_down(logits).reshape(-1, 8)
    assert (p[:, 0] < 0.05).all() and (p[:, 4] > 0.9).all(), p
