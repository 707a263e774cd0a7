"""The symmetric UV map and the grid resampling on synthetic symmetric surfaces."""

import numpy as np
import pytest
from surfaces import face_surface

from stn3dmm.model import MorphableModel
from stn3dmm.model.prepare import prepare_grid_model
from stn3dmm.model.resample import grid_faces, grid_mirror, grid_uv, locate_uv
from stn3dmm.model.symmetry import canonical_frame, cut_at_midplane, mirror_plane
from stn3dmm.model.uv import embed_half, signed_areas


def test_mirror_plane_recovered_from_a_moved_surface():
    V, _ = face_surface()
    a = np.deg2rad(7.0)
    Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    W = V @ Rz.T + [12.0, -3.0, 5.0]
    n, d = mirror_plane(W)
    np.testing.assert_allclose(n, Rz[:, 0], atol=1e-6)
    Rot, off = canonical_frame(n, d)
    C = (W - off) @ Rot.T
    np.testing.assert_allclose(C[:, 0], V[:, 0], atol=1e-6)


@pytest.mark.parametrize("asym", [0.0, 0.05])
def test_half_embedding_is_bijective_onto_the_half_square(asym):
    V, F = face_surface(asym=asym)
    n, d = mirror_plane(V)
    Rot, off = canonical_frame(n, d)
    Vh, Fh, Wh, onp = cut_at_midplane((V - off) @ Rot.T, F)
    h = np.median(np.linalg.norm(V[F[:, 0]] - V[F[:, 1]], axis=1))
    assert np.all(Vh[:, 0] <= 1e-3 * h) and np.allclose(Vh[onp, 0], 0, atol=1e-3 * h)
    emb = embed_half(Vh, Fh, Wh, onp)
    A = signed_areas(emb.uv, emb.F)
    assert A.min() > 0                                   # no flipped or degenerate triangles
    assert abs(A.sum() - 0.5) < 1e-12                    # and they tile [0, 0.5] x [0, 1]
    mid = np.isin(np.arange(len(emb.V)), np.where(onp)[0])
    np.testing.assert_allclose(emb.uv[mid, 0], 0.5)
    # every half vertex is the stated combination of original vertices
    np.testing.assert_allclose(emb.W @ ((V - off) @ Rot.T), emb.V, atol=1e-9)


def test_locate_points_on_edges_boundary_and_midline():
    uv = np.array([[0, 0], [0.5, 0], [0.5, 1], [0, 1], [0.25, 0.5]])
    F = np.array([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    pts = np.array([[0, 0], [0.5, 0.5], [0.25, 0.25], [0, 0.7], [0.5, 1], [0.1, 0.5]])
    t, b = locate_uv(uv, F, pts)
    assert np.all(t >= 0)
    np.testing.assert_allclose(np.einsum("mk,mkd->md", b, uv[F[t]]), pts, atol=1e-12)


def _synthetic_model(asym=0.0):
    V, F = face_surface(asym=asym)
    x, y = V[:, 0], V[:, 1]
    sym = np.stack([np.zeros_like(x), 0.02 * y, 3 * np.exp(-(x / 30) ** 2)], -1)       # symmetric field
    anti = np.stack([np.full_like(x, 1.0), np.zeros_like(x), 0.05 * x], -1)            # antisymmetric
    lm = np.argsort(np.abs(V[:, 1] - 10) + np.abs(V[:, 0]))[:21]
    return MorphableModel(mean=V, basis_id=np.stack([sym, anti]), basis_exp=np.stack([sym * 0.5]),
                          faces=F, landmarks={"aflw21": lm}, source="synthetic")


@pytest.mark.parametrize("res", [16, 33])
def test_grid_is_mirror_symmetric_and_on_the_surface(res):
    src = _synthetic_model()
    model, rep = prepare_grid_model(src, res=res, log=lambda m: None)
    R = res
    g = model.mean.reshape(R, R, 3)
    flip = g[:, ::-1] * [-1, 1, 1]
    assert np.abs(flip - g).max() < 1e-6                # an exactly symmetric surface stays so
    b = model.basis_id.reshape(2, R, R, 3)
    assert np.abs(b[0][:, ::-1] * [-1, 1, 1] - b[0]).max() < 1e-6      # symmetric component
    assert np.abs(b[1][:, ::-1] * [-1, 1, 1] + b[1]).max() < 1e-6      # antisymmetric one
    assert rep.uv_flipped == 0 and rep.resampling_rms < 0.5
    # grid corners and mid-line are where the UV map puts them
    assert g[0, :, 1].mean() > g[-1, :, 1].mean() and g[:, -1, 0].mean() > g[:, 0, 0].mean()
    np.testing.assert_array_equal(model.mirror, grid_mirror(R))
    assert model.faces.shape == (2 * (R - 1) ** 2, 3)


def test_asymmetric_surface_mirror_error_is_reported():
    _, rep = prepare_grid_model(_synthetic_model(asym=0.03), res=24, log=lambda m: None)
    assert rep.grid_mirror_error[0] > 0.05              # the surface is not symmetric: it shows


def test_grid_layout_helpers():
    uv = grid_uv(5).reshape(5, 5, 2)
    assert uv[0, 0].tolist() == [0, 1] and uv[-1, -1].tolist() == [1, 0]
    F = grid_faces(5)
    a = signed_areas(grid_uv(5), F)
    assert np.all(a > 0) and abs(a.sum() - 1) < 1e-12
