"""Tests of the visibility rules: normals, back-face (a), depth test (b), against known answers."""

import math

import numpy as np
import pytest
import torch

from stn3dmm.stn import layers as L
from stn3dmm.stn import MorphableSTN
from stn3dmm.stn.visibility import (original_grid_faces, vertex_normals, visibility_backface,
                                    visibility_backface_original, visibility_depth)
from testkit import synthetic_models as syn


def _t(a, dtype=torch.float64):
    return torch.as_tensor(a, dtype=dtype)


def _posed(model, yaw_deg, pitch_deg=0.0, dtype=torch.float64):
    r = syn.euler_to_axis_angle(math.radians(yaw_deg), math.radians(pitch_deg), dtype=dtype)
    return L.rotate(_t(model.mean, dtype)[None], L.axis_angle_to_rotation(r)[None])


def test_vertex_normals_known_answers():
    v, f = syn.make_plane((-10, 10), (-10, 10), 3.0, n=6)
    n = vertex_normals(_t(v)[None], _t(f, torch.long))
    assert torch.allclose(n, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(n), atol=1e-12)
    sv, sf = syn.make_sphere(radius=2.0, n_lat=30, n_lon=60)
    n = vertex_normals(_t(sv)[None], _t(sf, torch.long))[0]
    radial = _t(sv) / _t(sv).norm(dim=1, keepdim=True)
    assert (n * radial).sum(1).min() > 0.998
    # angle weighting: a vertex shared by a right-angle and a thin triangle gets weights pi/2 : small angle
    verts = _t([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0.05]])[None]
    faces = torch.tensor([[0, 1, 2], [0, 2, 4]])  # normals +z and tilted; angles at 0: pi/2 and ~pi/2
    n0 = vertex_normals(verts, faces)[0, 0]
    c1 = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    e1, e2 = verts[0, 2] - verts[0, 0], verts[0, 4] - verts[0, 0]
    c2 = torch.linalg.cross(e1, e2)
    c2 = c2 / c2.norm()
    a2 = torch.atan2(torch.linalg.cross(e1, e2).norm(), (e1 * e2).sum())
    ref = math.pi / 2 * c1 + a2 * c2
    assert torch.allclose(n0, ref / ref.norm(), atol=1e-12)


def test_vertex_normals_are_differentiable():
    v, f = syn.make_plane((-1, 1), (-1, 1), 0.0, n=4)
    g = torch.Generator().manual_seed(0)
    x = (_t(v) + 0.05 * torch.randn(v.shape, generator=g, dtype=torch.float64))[None].requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: vertex_normals(x, _t(f, torch.long)), (x,), eps=1e-6, atol=1e-6)


def test_backface_on_sphere_is_the_front_hemisphere():
    sv, sf = syn.make_sphere(radius=30.0, n_lat=24, n_lon=48)
    vis = visibility_backface(_t(sv)[None], _t(sf, torch.long))[0].numpy()
    z = sv[:, 2] / 30.0
    assert vis[z > 0.05].all() and not vis[z < -0.05].any()
    assert not visibility_backface(_t(sv)[None], _t(sf, torch.long)).requires_grad


# ---------------------------------------------------------------------------------------------
# the original's back-face test
# ---------------------------------------------------------------------------------------------

def _original_faces_by_its_loop(res):
    """The original's resampleModel loop written out with 1-based, column-major sub2ind
    (i the column, j the row), converted to 0-based indices: vertex (row j, column i)."""
    def sub2ind(i, j):
        return i + (j - 1) * res
    faces = []
    for i in range(1, res):
        for j in range(1, res):
            faces.append((sub2ind(i, j), sub2ind(i + 1, j), sub2ind(i, j + 1)))
            faces.append((sub2ind(i + 1, j + 1), sub2ind(i, j + 1), sub2ind(i + 1, j)))
    return torch.tensor(faces) - 1


def _matlab_normals(v, faces):
    """The original's normals with MATLAB's semantics written out: for each corner k, the right
    side ``normals(v_k,:) + w_k`` is evaluated for all triangles first, then assigned row by row
    in list order, so a repeated vertex keeps the last value. Angles with acos, as it did."""
    c = [v[f] for f in faces.t()]
    e1, e2, e3 = c[1] - c[0], c[2] - c[0], c[1] - c[2]
    unit = [e / e.norm(dim=1, keepdim=True) for e in (e1, e2, e3)]
    a1 = torch.acos((unit[0] * unit[1]).sum(1))
    a2 = torch.acos((unit[2] * unit[0]).sum(1))
    angles = (a1, a2, math.pi - (a1 + a2))
    tn = torch.linalg.cross(e1, e3)
    normals = torch.zeros_like(v)
    for k in range(3):
        rhs = normals[faces[:, k]] + tn * angles[k][:, None]
        for f in range(len(faces)):
            normals[faces[f, k]] = rhs[f]
    return normals


def test_original_grid_faces_are_its_loop_clockwise_with_the_other_diagonal():
    for res in (2, 3, 5):
        assert torch.equal(original_grid_faces(res), _original_faces_by_its_loop(res))
    f = original_grid_faces(4)
    assert f.shape == (18, 3) and sorted(f.flatten().unique().tolist()) == list(range(16))
    # flat grid, row 0 at the top (y up), viewed from +z: every triangle is clockwise ...
    jj, ii = np.meshgrid(np.arange(4.0), np.arange(4.0))
    v = torch.tensor(np.stack((jj, -ii, 0 * ii), -1).reshape(16, 3))
    c = [v[f[:, k]] for k in range(3)]
    assert (torch.linalg.cross(c[1] - c[0], c[2] - c[0])[:, 2] < 0).all()
    # ... and each cell's diagonal joins its top-right and bottom-left corners (ours: the other two)
    assert {tuple(sorted(t)) for t in original_grid_faces(2).tolist()} == {(0, 1, 2), (1, 2, 3)}


def test_backface_original_known_answer_last_write_wins():
    """Vertex 0 is corner 1 of a triangle facing the camera (right angle, twice the area 4: z
    weight 4 * pi/2 = 2 pi) and of one facing away (right angle, twice the area 1: -pi/2). The
    sum is positive; the original keeps the last triangle's weight only."""
    v = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 2, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
    first_up = torch.tensor([[0, 2, 1], [0, 3, 4]])
    assert visibility_backface_original(v[None], first_up)[0].tolist() == [False, True, True, False, False]
    assert visibility_backface_original(v[None], first_up.flip(0))[0].tolist() == [True, True, True, False, False]
    n = _matlab_normals(v, first_up)
    assert torch.allclose(n[0], torch.tensor([0, 0, -math.pi / 2], dtype=torch.float64))
    assert torch.allclose(n[1], torch.tensor([0, 0, 4 * math.pi / 4], dtype=torch.float64))  # angle 45 deg
    # our rule sums both (unit normals x angle: pi/2 - pi/2 = 0, visible); so does the original's
    # own weighting summed over all triangles (2 pi - pi/2 > 0)
    assert visibility_backface(v[None], first_up[:, [0, 2, 1]])[0, 0]


def test_backface_original_matches_matlab_semantics_on_grids():
    """On a bumpy 5 x 5 grid in random poses the batched function equals the MATLAB semantics
    written out; the centre of a 3 x 3 grid sums triangles 4, 5 and 6 (of its six: 1-6), the
    last in the list where it is corner 1, 2 and 3, worked out by hand from the face list."""
    g = torch.Generator().manual_seed(0)
    res = 5
    jj, ii = np.meshgrid(np.arange(res) - 2.0, np.arange(res) - 2.0)
    flat = torch.tensor(np.stack((10 * jj, -10 * ii, 0 * ii), -1).reshape(-1, 3))
    faces = original_grid_faces(res)
    poses = []
    for k in range(6):
        bump = flat.clone()
        bump[:, 2] = 8 * torch.rand(res * res, generator=g, dtype=torch.float64)
        r = 1.2 * torch.randn(3, generator=g, dtype=torch.float64)
        poses.append(L.rotate(bump[None], L.axis_angle_to_rotation(r)[None])[0])
    v = torch.stack(poses)
    want = torch.stack([_matlab_normals(p, faces)[:, 2] >= 0 for p in v])
    assert torch.equal(visibility_backface_original(v), want)       # default: the original's faces
    assert torch.equal(visibility_backface_original(v, faces), want)
    assert (want != visibility_backface(v, faces[:, [0, 2, 1]])).any()  # our rule differs somewhere
    f3 = original_grid_faces(3)
    assert [f for f in range(8) if 4 in f3[f].tolist()] == [1, 2, 3, 4, 5, 6]
    p = torch.randn(9, 3, generator=g, dtype=torch.float64)
    c = [p[f3[:, k]] for k in range(3)]
    e1, e2, e3 = c[1] - c[0], c[2] - c[0], c[1] - c[2]
    tn = torch.linalg.cross(e1, e3)

    def ang(a, b):
        return torch.acos((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)))

    a1, a2 = ang(e1, e2), ang(e3, e1)
    a3 = math.pi - a1 - a2
    centre = tn[6] * a1[6] + tn[5] * a2[5] + tn[4] * a3[4]   # corner 1 of 6, corner 2 of 5, corner 3 of 4
    assert f3[6, 0] == 4 and f3[5, 1] == 4 and f3[4, 2] == 4
    assert torch.allclose(_matlab_normals(p, f3)[4], centre, atol=1e-12)


def test_backface_original_in_the_module(face_model):
    stn = MorphableSTN(face_model, visibility="backface-original", landmarks=None).double()
    r = syn.euler_to_axis_angle(math.radians(60.0), 0.0, dtype=torch.float64)
    theta = torch.zeros(1, stn.n_params, dtype=torch.float64)
    theta[0, :3] = r
    theta[0, 3:5] = 64.0
    out = stn(torch.ones(1, 3, 128, 128, dtype=torch.float64), theta)
    assert torch.equal(out.visibility, visibility_backface_original(out.posed))
    assert torch.equal(out.visibility, visibility_backface_original(out.posed, original_grid_faces(stn.res)))
    assert 0 < out.visibility.float().mean() < 1
    assert "backface-original" in repr(stn)


def _sphere_and_plane(dtype=torch.float64):
    """Sphere radius 50 at the origin; a square plane at z = 70 covering x in [5, 80] (right half)."""
    sv, sf = syn.make_sphere(50.0, 48, 96)
    pv, pf = syn.make_plane((5.0, 80.0), (-80.0, 80.0), 70.0, n=40)
    v = np.concatenate([sv, pv])
    f = np.concatenate([sf, pf + len(sv)])
    return _t(v, dtype)[None], _t(f, torch.long), len(sv)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_plane_in_front_of_sphere_known_answer(dtype):
    v, f, ns = _sphere_and_plane(dtype)
    a = visibility_backface(v, f)[0].numpy()
    b = visibility_depth(v, f)[0].numpy()
    x, z = v[0, :ns, 0].double().numpy(), v[0, :ns, 2].double().numpy() / 50.0
    front = z > 0.2                        # clearly front-facing sphere vertices
    behind_plane = front & (x > 9.0)       # hidden by the plane (margin ~ 2 buffer pixels)
    clear = front & (x < 1.0)              # nothing in front
    assert behind_plane.sum() > 200 and clear.sum() > 200
    assert a[:ns][behind_plane].all()            # (a) calls them visible: they face the camera
    assert not b[:ns][behind_plane].any()        # (b) sees the plane in front
    assert b[:ns][clear].all() and a[:ns][clear].all()
    assert not b[:ns][z < -0.05].any()           # back hemisphere: invisible for both
    assert b[ns:].all() and a[ns:].all()         # the plane itself is visible


def test_face_at_large_yaw_depth_matches_ray_casting_and_backface_does_not():
    """At yaw +-60 the nose hides part of the far cheek: (a) calls it visible, (b) does not.
    Ground truth: exact ray casting against every triangle (brute force). Grazing vertices
    (n_z < 0.25, next to silhouettes) are where a depth buffer of finite resolution may differ."""
    m = syn.make_face_model(40)
    faces = _t(m.faces, torch.long)
    for yaw in (60.0, -60.0):
        v = _posed(m, yaw)
        a = visibility_backface(v, faces)[0].numpy()
        b = visibility_depth(v, faces)[0].numpy()
        truth = syn.brute_force_visibility(v[0].numpy(), m.faces) & a
        steady = vertex_normals(v, faces)[0, :, 2].numpy() >= 0.25
        hidden_front = a & ~truth                          # front-facing but occluded: (a) is wrong
        assert hidden_front.sum() >= 60 and (hidden_front & steady).sum() >= 15
        assert not b[hidden_front & steady].any()          # (b) catches every non-grazing one
        assert (~b[hidden_front]).mean() >= 0.8            # and most grazing ones
        assert (b == truth).mean() >= 0.97
        assert (b == truth)[steady].mean() >= 0.99
        assert not (b & ~a).any()
        # the occluded vertices are on the far cheek (x > 0 turns away for positive yaw)
        col = np.arange(m.n_vertices) % m.res
        far_side = col >= m.res // 2 if yaw > 0 else col < m.res // 2
        assert far_side[hidden_front & ~b].all()


def test_frontal_face_is_fully_visible(face_model):
    v = _posed(face_model, 0.0)
    assert visibility_depth(v, _t(face_model.faces, torch.long)).all()


def test_depth_visibility_is_batched_like_a_loop_and_dtype_independent(face_model):
    m = face_model
    faces = _t(m.faces, torch.long)
    v = torch.cat([_posed(m, y, p) for y, p in [(0, 0), (35, 10), (-55, -15), (70, 5)]])
    batched = visibility_depth(v, faces)
    looped = torch.cat([visibility_depth(v[i:i + 1], faces) for i in range(len(v))])
    assert torch.equal(batched, looped)
    f32 = visibility_depth(v.float(), faces)
    assert (f32 == batched).float().mean() > 0.995
    assert torch.equal(visibility_backface(v, faces), torch.cat([visibility_backface(v[i:i + 1], faces) for i in range(4)]))
    # random shapes and poses in float32 (the sampling lattice must not depend on the rest of the batch)
    from stn3dmm.stn import MorphableSTN

    stn = MorphableSTN(syn.make_face_model(48))
    g = torch.Generator().manual_seed(0)
    th = torch.zeros(16, stn.n_params)
    th[:, :3] = syn.euler_to_axis_angle((torch.rand(16, generator=g).numpy() - 0.5) * 2.4,
                                        (torch.rand(16, generator=g).numpy() - 0.5) * 0.7, dtype=torch.float32)
    th[:, 3:5] = 112
    th[:, 6:] = torch.randn(16, stn.n_params - 6, generator=g)
    v = stn.geometry(th).posed
    assert torch.equal(visibility_depth(v, stn.faces), torch.cat([visibility_depth(v[i:i + 1], stn.faces)
                                                                  for i in range(16)]))


def test_depth_visibility_carries_no_gradient(face_model):
    v = _posed(face_model, 40).requires_grad_(True)
    out = visibility_depth(v, _t(face_model.faces, torch.long))
    assert out.dtype == torch.bool and not out.requires_grad


def test_sorted_rows_match_torch_sort_in_both_paths():
    """The exact step's row sort: numpy's int32 sort where the values fit, torch's where they do
    not (ids of 2^31 and more), the same values as torch.sort either way; pads of -1 sort first."""
    from stn3dmm.stn.visibility import _sorted_rows

    g = torch.Generator().manual_seed(0)
    small = torch.randint(-1, 80_000, (300, 72), generator=g)
    large = small * 2 ** 20                                   # up to about 8e10: beyond int32
    for rows in (small, large, torch.zeros((0, 9), dtype=torch.long)):
        got = _sorted_rows(rows)
        assert got.dtype == torch.long and torch.equal(got, torch.sort(rows, 1).values)
