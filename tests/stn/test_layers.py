"""Tests of the pure STN layers and the conventions: known answers, gradients, dtypes, bad input."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from stn3dmm.core import conventions as C
from stn3dmm.stn import layers as L


# ---------------------------------------------------------------------------------------------
# axis-angle -> rotation
# ---------------------------------------------------------------------------------------------

def _rand_r(n, angle=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(n, 3, generator=g, dtype=torch.float64)
    if angle is not None:
        r = r / r.norm(dim=1, keepdim=True) * angle
    return r


def test_rodrigues_matches_scipy_and_is_a_rotation():
    r = torch.cat([_rand_r(50), _rand_r(5, 1e-3), _rand_r(5, 0.0999), _rand_r(5, 0.1001), _rand_r(5, math.pi)])
    R = L.axis_angle_to_rotation(r)
    ref = torch.as_tensor(Rotation.from_rotvec(r.numpy()).as_matrix())
    assert (R - ref).abs().max() < 1e-14
    eye = torch.eye(3, dtype=torch.float64)
    assert (R @ R.transpose(1, 2) - eye).abs().max() < 1e-14
    assert (torch.linalg.det(R) - 1).abs().max() < 1e-14


def test_rodrigues_exact_at_zero_and_continuous_across_taylor_threshold():
    z = torch.zeros(2, 3, dtype=torch.float64)
    assert torch.equal(L.axis_angle_to_rotation(z), torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    axis = torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    axis = axis / axis.norm()
    a = math.sqrt(L._TAYLOR_THRESHOLD)
    for f in (1 - 1e-12, 1 + 1e-12):  # both branches agree with scipy to rounding
        r = axis * (a * f)
        ref = torch.as_tensor(Rotation.from_rotvec(r.numpy()).as_matrix())
        assert (L.axis_angle_to_rotation(r) - ref).abs().max() < 1e-15


@pytest.mark.parametrize("name,r", [
    ("zero", torch.zeros(1, 3, dtype=torch.float64)),
    ("tiny", _rand_r(2, 1e-8, seed=1)),
    ("below_threshold", _rand_r(2, 0.05, seed=2)),
    ("random", _rand_r(3, None, seed=3)),
    ("near_pi", _rand_r(2, math.pi - 1e-4, seed=4)),
    ("pi", _rand_r(1, math.pi, seed=5)),
])
def test_rodrigues_gradcheck(name, r):
    r = r.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(L.axis_angle_to_rotation, (r,), eps=1e-6, atol=1e-7, rtol=1e-5)
    assert torch.autograd.gradgradcheck(L.axis_angle_to_rotation, (r,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_rodrigues_gradient_at_zero_is_skew_generators():
    r = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(L.axis_angle_to_rotation, r)  # (3, 3, 3): dR_ij / dr_k
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = 1
        assert torch.allclose(jac[..., k], L.skew(e), atol=1e-15)


def test_rodrigues_float32_gradients_finite_and_close_to_float64():
    for r64 in [torch.zeros(1, 3, dtype=torch.float64), _rand_r(4, 1e-8), _rand_r(4, 0.1), _rand_r(4, 2.0),
                _rand_r(2, math.pi)]:
        grads = []
        for dt in (torch.float32, torch.float64):
            r = r64.to(dt).requires_grad_(True)
            w = torch.arange(9, dtype=dt).view(3, 3)
            (L.axis_angle_to_rotation(r) * w).sum().backward()
            assert torch.isfinite(r.grad).all()
            grads.append(r.grad.double())
        assert (grads[0] - grads[1]).abs().max() < 1e-4


def test_rotation_to_axis_angle_roundtrip_including_near_pi():
    r = torch.cat([_rand_r(20, None, 7), _rand_r(5, math.pi - 1e-7), _rand_r(5, 1e-9), torch.zeros(1, 3, dtype=torch.float64)])
    r = r / r.norm(dim=1, keepdim=True).clamp_min(1e-300) * r.norm(dim=1, keepdim=True).clamp(max=math.pi)
    R = L.axis_angle_to_rotation(r)
    back = L.rotation_to_axis_angle(R)
    assert (L.axis_angle_to_rotation(back) - R).abs().max() < 1e-9
    assert (back.norm(dim=1) <= math.pi + 1e-12).all()
    ok = r.norm(dim=1) < 3.0
    assert (back[ok] - r[ok]).abs().max() < 1e-12


# ---------------------------------------------------------------------------------------------
# the other layers
# ---------------------------------------------------------------------------------------------

def test_morphable_model_matches_numpy_and_uses_leading_components(face_model):
    m = face_model
    g = torch.Generator().manual_seed(0)
    a_id = torch.randn(3, m.n_id, generator=g, dtype=torch.float64)
    a_exp = torch.randn(3, m.n_exp, generator=g, dtype=torch.float64)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    X = L.morphable_model(t(m.mean), t(m.basis_id), t(m.basis_exp), a_id, a_exp)
    for b in range(3):
        assert np.abs(X[b].numpy() - m.shape(a_id[b].numpy(), a_exp[b].numpy())).max() < 1e-10
    X2 = L.morphable_model(t(m.mean), t(m.basis_id), t(m.basis_exp), a_id[:, :2], a_exp[:, :0])
    assert np.abs(X2[0].numpy() - m.shape(a_id[0, :2].numpy())).max() < 1e-10
    with pytest.raises(ValueError):
        L.morphable_model(t(m.mean), t(m.basis_id), t(m.basis_exp), torch.zeros(1, m.n_id + 1, dtype=torch.float64),
                          a_exp[:1])


def test_projection_chain_known_answer():
    # r = 0, s = 2 (exp map), t = (10, 20): P = (2 X_x + 10, -2 X_y + 20)
    X = torch.tensor([[[1.0, 2.0, 3.0], [-4.0, 0.5, -1.0]]], dtype=torch.float64)
    P = L.translate(L.scale(L.orthographic_projection(L.rotate(X, torch.eye(3, dtype=torch.float64)[None])),
                            torch.tensor([math.log(2.0)], dtype=torch.float64)),
                    torch.tensor([[10.0, 20.0]], dtype=torch.float64))
    assert torch.allclose(P, torch.tensor([[[12.0, 16.0], [2.0, 19.0]]], dtype=torch.float64))
    # positive yaw (about y) turns the nose (+z) towards image +x
    R = L.axis_angle_to_rotation(torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=torch.float64))
    nose = L.rotate(torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64), R)
    assert torch.allclose(L.orthographic_projection(nose), torch.tensor([[[1.0, 0.0]]], dtype=torch.float64), atol=1e-15)
    # positive pitch (about x) moves the nose up in the model = towards smaller image y
    R = L.axis_angle_to_rotation(torch.tensor([[-0.3, 0.0, 0.0]], dtype=torch.float64))
    assert L.orthographic_projection(L.rotate(torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64), R))[0, 0, 1] < 0


def test_scale_maps_and_converters():
    logs = torch.tensor([-3.0, 0.0, 1.0, 50.0], dtype=torch.float64)
    assert torch.allclose(C.scale_from_log(logs, "exp"), logs.exp())
    assert torch.allclose(C.scale_from_log(logs, "original"), 0.99 ** logs)
    for a in C.SCALE_MAPS:
        assert torch.allclose(C.log_from_scale(C.scale_from_log(logs, a), a), logs)
        for b in C.SCALE_MAPS:
            conv = C.convert_log_scale(logs, a, b)
            assert torch.allclose(C.scale_from_log(conv, b), C.scale_from_log(logs, a))
    Y = torch.ones(4, 1, 2, dtype=torch.float64)
    assert torch.allclose(L.scale(Y, logs, "original")[:, 0, 0], 0.99 ** logs)
    with pytest.raises(ValueError):
        C.scale_from_log(logs, "linear")


def test_point_conversions_roundtrip_and_known_values():
    H = 224
    orig = torch.tensor([[1.0, 224.0], [224.0, 1.0], [112.0, 112.0], [float("nan"), float("nan")]], dtype=torch.float64)
    ours = C.points_from_original(orig, H)
    # original (1, y_up=224) is the top-left pixel centre, (224, 1) the bottom-right one
    assert ours[:3].tolist() == [[0.0, 0.0], [223.0, 223.0], [111.0, 112.0]]
    assert torch.isnan(ours[3]).all()
    assert torch.allclose(C.points_to_original(ours[:3], H), orig[:3])


def test_original_theta_conversion_reproduces_the_originals_projection(face_model):
    """Project with the original's rules (y-up 1-based image frame, no y flip, s = 0.99**logs) and
    with ours after converting theta: the points must be the same after converting the points."""
    m = face_model
    H = 224
    g = torch.Generator().manual_seed(1)
    th_o = torch.cat([torch.randn(4, 3, generator=g, dtype=torch.float64) * 0.4,
                      100 + 20 * torch.rand(4, 2, generator=g, dtype=torch.float64),
                      torch.randn(4, 1, generator=g, dtype=torch.float64) * 10,
                      torch.randn(4, m.n_id + m.n_exp, generator=g, dtype=torch.float64)], 1)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    X = L.morphable_model(t(m.mean), t(m.basis_id), t(m.basis_exp), th_o[:, 6:6 + m.n_id], th_o[:, 6 + m.n_id:])
    Xp = L.rotate(X, L.axis_angle_to_rotation(th_o[:, :3]))
    p_orig = (0.99 ** th_o[:, 5])[:, None, None] * Xp[..., :2] + th_o[:, None, 3:5]
    for scale_map in C.SCALE_MAPS:
        th = C.theta_from_original(th_o, H, scale_map)
        ours = L.grid_generator(th, t(m.mean), t(m.basis_id), t(m.basis_exp), m.n_id, m.n_exp, scale_map).points
        assert (ours - C.points_from_original(p_orig, H)).abs().max() < 1e-10
        assert torch.allclose(C.theta_to_original(th, H, scale_map), th_o)
    start = C.original_start_theta(6, H)
    assert start.tolist()[:5] == [0, 0, 0, 111.0, 112.0] and abs(math.exp(start[5]) - 0.99) < 1e-7


def test_sampling_grid_normalisation_and_sampler_on_a_linear_ramp():
    """grid_sample(align_corners=True) with our normalisation reads pixel centres at integer
    coordinates: on a linear image the bilinear sample equals the ramp at the point, exactly."""
    H, W = 7, 10
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    img = torch.stack([3 * xs + 0.5 * ys + 1, -xs + 2 * ys, xs * 0 + 5])[None]  # (1, 3, H, W)
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(1, 16, 2, generator=g, dtype=torch.float64) * torch.tensor([W - 1, H - 1], dtype=torch.float64)
    pts[0, 0] = torch.tensor([0.0, 0.0])
    pts[0, 1] = torch.tensor([W - 1.0, H - 1.0])
    grid = L.sampling_grid(pts, 4, H, W)
    assert grid[0, 0, 0].tolist() == [-1.0, -1.0] and grid[0, 0, 1].tolist() == [1.0, 1.0]
    out = L.bilinear_sampler(img, grid)  # (1, 3, 4, 4)
    x, y = pts[0, :, 0].view(4, 4), pts[0, :, 1].view(4, 4)
    assert (out[0, 0] - (3 * x + 0.5 * y + 1)).abs().max() < 1e-12
    assert (out[0, 1] - (-x + 2 * y)).abs().max() < 1e-12
    assert L.inside_image(grid).all()
    # an integer point reads exactly that pixel
    one = L.bilinear_sampler(img, L.sampling_grid(torch.tensor([[[4.0, 3.0]]], dtype=torch.float64), 1, H, W))
    assert one[0, :, 0, 0].tolist() == img[0, :, 3, 4].tolist()


def test_original_grid_convention_known_answers():
    """The original's grid layer: (x1 - 112) / 112 and -(y_up - 112) / 112 in its 1-based, y-up
    frame of a 224 x 224 image, computed here by hand for three points."""
    H = W = 224
    pts = torch.tensor([[[111.0, 112.0], [0.0, 0.0], [223.0, 223.0], [100.0, 50.0]]], dtype=torch.float64)
    g = L.sampling_grid(pts, 2, H, W, convention="original")[0].reshape(4, 2)
    # (111, 112) ours is the original's (112, 112), its image centre: (0, 0)
    # (0, 0) ours is the original's (1, 224): ((1 - 112) / 112, -(224 - 112) / 112) = (-111/112, -1)
    # (223, 223) ours is the original's (224, 1): (1, 111/112)
    # (100, 50) ours is the original's (101, 174): (-11/112, -62/112)
    want = torch.tensor([[0.0, 0.0], [-111 / 112, -1.0], [1.0, 111 / 112], [-11 / 112, -62 / 112]], dtype=torch.float64)
    assert (g - want).abs().max() < 1e-15
    # the same through the point converter and the literal formula of the original's layer
    po = C.points_to_original(pts, H)[0]
    literal = torch.stack(((po[:, 0] - 112) / 112, -(po[:, 1] - 112) / 112), -1)
    assert (g - literal).abs().max() < 1e-15
    # a linear image I = col + 1000 row: the original reads (100, 50) at column 101 * 223 / 224,
    # row 50 * 223 / 224 (sampler: align_corners), ours at the point itself
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    img = (xs + 1000 * ys)[None, None]
    one = pts[:, 3:4]
    orig = L.bilinear_sampler(img, L.sampling_grid(one, 1, H, W, convention="original"))
    ours = L.bilinear_sampler(img, L.sampling_grid(one, 1, H, W))
    assert abs(float(orig) - (101 * 223 / 224 + 1000 * 50 * 223 / 224)) < 1e-8
    assert abs(float(ours) - (100 + 1000 * 50)) < 1e-8
    with pytest.raises(ValueError, match="convention"):
        L.sampling_grid(one, 1, H, W, convention="matlab")


def test_outside_samples_are_zero_and_masked():
    H = W = 8
    img = torch.ones(1, 1, H, W, dtype=torch.float64)
    pts = torch.tensor([[[-3.0, 2.0], [2.0, 9.5], [3.0, 3.0], [7.0, 7.0], [7.2, 3.0], [-0.2, 3.0]]], dtype=torch.float64)
    pts = torch.cat([pts, pts[:, :3]], 1)[:, :9]
    grid = L.sampling_grid(pts, 3, H, W)
    mask = L.inside_image(grid)[0, 0].flatten()
    assert mask.tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 1]
    out = L.masking(L.bilinear_sampler(img, grid), L.inside_image(grid))[0, 0].flatten()
    assert out[:2].tolist() == [0.0, 0.0] and out[2] == 1.0


def test_resample_grid_keeps_corners_and_interpolates():
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(2, 5, 5, 2, generator=g, dtype=torch.float64)
    big = L.resample_grid(pts, 9)
    assert torch.allclose(big[:, ::2, ::2], pts)
    assert torch.allclose(big[:, 1, 0], 0.5 * (pts[:, 0, 0] + pts[:, 1, 0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layers_keep_dtype(dtype, face_model):
    m = face_model
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    theta = torch.zeros(2, 6 + m.n_id + m.n_exp, dtype=dtype)
    p = L.grid_generator(theta, t(m.mean), t(m.basis_id), t(m.basis_exp), m.n_id, m.n_exp)
    assert all(x.dtype == dtype for x in p)
    grid = L.sampling_grid(p.points, m.res, 224, 224)
    assert grid.dtype == dtype and L.bilinear_sampler(torch.zeros(2, 3, 224, 224, dtype=dtype), grid).dtype == dtype
