"""Head profiling: a photo meshed around its fitted face, turned, rendered.

The "photo" is a render of the default model at a known theta with a texture whose colour encodes
its own UV position (red = column, green = row), so that what a head render shows at each pixel
has a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stn3dmm.photos.crop import landmark_square
from stn3dmm.training.data.pose import euler_to_rotation
from stn3dmm.training.data.profiling import head_surface, render_surfaces
from stn3dmm.training.data.render import GridRenderer


@pytest.fixture(scope="module")
def photo(default_grid):
    """(model, renderer, theta, uint8 photo, UV texture): a 224 render at yaw 20 degrees."""
    from stn3dmm.stn.layers import rotation_to_axis_angle

    model = default_grid[0]
    rend = GridRenderer(model, 224, n_id=10, n_exp=10)
    r = int(model.res)
    t = torch.linspace(0, 1, r)
    rows, cols = torch.meshgrid(t, t, indexing="ij")
    tex = torch.stack((cols, rows, torch.full((r, r), 0.5)))
    rot = rotation_to_axis_angle(euler_to_rotation(torch.tensor([20.0]), torch.tensor([5.0]), torch.tensor([0.0])))
    theta = torch.cat((rot[0].float(), torch.tensor([111.5, 111.5, math.log(0.9)]), 0.5 * torch.ones(20)))
    img = rend(theta[None], tex[None])["image"][0]
    return model, rend, theta, (img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8), tex


def surface(photo, model_rend_theta=None):
    model, rend, theta, img, _ = photo
    posed = rend.stn.geometry(theta[None]).posed[0].double().numpy().reshape(int(model.res), int(model.res), 3)
    pts68 = rend.stn.geometry(theta[None]).points[0, torch.as_tensor(model.landmarks["ibug68"])].double().numpy()
    centre, side = landmark_square(pts68, "ibug68")
    return head_surface(img, theta.double().numpy(), np.array([[1.0, 0, 0], [0, 1.0, 0]]), posed, centre,
                        1.6 * side, lattice=128, texels=256)


def test_the_surface_rendered_at_the_photos_own_pose_gives_the_photo_back(photo):
    """Round trip: the lattice, posed by the fit's own rotation, scale and translation, lands on
    the photo: the same UV colours at the same pixels over the face."""
    model, rend, theta, img, _ = photo
    s = surface(photo)
    rot = rend.stn.geometry(theta[None]).rotation.float()
    out = render_surfaces(s["nodes"][None], s["texture"][None], rot, theta[5:6].exp(), theta[None, 3:5], 224)
    got, want = out["image"][0].permute(1, 2, 0).numpy(), img.astype(np.float32) / 255
    face = (want[..., 2] > 0.45) & (out["alpha"][0, 0].numpy() > 0.99)      # the face's blue is 0.5
    assert face.sum() > 10000
    err = np.abs(got - want)[face][:, :2]
    assert np.median(err) < 0.01 and np.quantile(err, 0.95) < 0.05


def test_a_turned_surface_shows_each_visible_vertex_where_the_model_projects_it(photo):
    """Turned 40 degrees further, the surface shows at each visible model vertex's projection the
    UV colour of that vertex: the lattice moves as the fitted face does."""
    model, rend, theta, img, tex = photo
    s = surface(photo)
    from stn3dmm.stn.layers import rotation_to_axis_angle

    rot = euler_to_rotation(torch.tensor([60.0]), torch.tensor([5.0]), torch.tensor([0.0])).float()
    new = theta.clone()
    new[:3] = rotation_to_axis_angle(rot.double())[0].float()
    out = render_surfaces(s["nodes"][None], s["texture"][None], rot, theta[5:6].exp(), theta[None, 3:5], 224)
    ref = rend(new[None], tex[None])
    idx = torch.arange(0, int(model.res) ** 2, 7)
    vis = rend.visibility(ref, idx)[0]
    pts = ref["points"][0, idx][vis].numpy()
    x, y = np.round(pts).astype(int).T
    keep = (x > 0) & (x < 223) & (y > 0) & (y < 223)
    r = int(model.res)
    rows, cols = np.divmod(idx[vis].numpy()[keep], r)
    shown = out["image"][0].numpy()[:2, y[keep], x[keep]]
    err = np.maximum(np.abs(shown[0] - cols / (r - 1)), np.abs(shown[1] - rows / (r - 1)))
    # the misses are where the photo saw the surface edge-on (what it hid is stretched, by design)
    assert keep.sum() > 500 and np.median(err) < 0.01 and (err < 0.04).mean() > 0.85, \
        f"median {np.median(err):.3f}, {(err < 0.04).mean():.2f} of {keep.sum()} visible vertices within 0.04"


def test_the_surface_beyond_the_face_falls_away_and_fades(photo):
    s = surface(photo)
    alpha = s["texture"][3]
    assert float(alpha.max()) == 1.0 and float(alpha[0, 0]) == 0.0        # the corners are far background
    z = s["nodes"][..., 2]
    assert torch.isfinite(s["nodes"]).all() and float(z[0, 0]) < float(z[64, 64]) - 50
