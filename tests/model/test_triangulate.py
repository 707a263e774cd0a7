"""Mesh recovery from a scanline-ordered point cloud (synthetic; the default model's real
mesh is checked in test_default_model.py)."""

import numpy as np
from surfaces import scanline_cloud

from stn3dmm.model.mesh import genus, longest_edges, mesh_report
from stn3dmm.model.triangulate import recover_mesh, split_strips, zip_chains


def test_split_strips_finds_columns():
    P = scanline_cloud()
    s, e = split_strips(P, min_jump=3.0)
    assert len(s) == 61 + 50 and set((e - s).tolist()) == {57, 25}


def test_zip_chains_is_an_optimal_ladder():
    # two parallel chains with different spacing: every rung is short, every vertex used
    A = np.stack([np.linspace(0, 10, 11), np.zeros(11), np.zeros(11)], 1)
    B = np.stack([np.linspace(0, 10, 7), np.ones(7), np.zeros(7)], 1)
    P = np.concatenate([A, B])
    tris = np.array(zip_chains(P, np.arange(11), 11 + np.arange(7)))
    assert len(tris) == 11 + 7 - 2 and set(tris.ravel()) == set(range(18))
    assert longest_edges(P, tris).max() < 2.0


def test_recover_mesh_makes_one_clean_disk():
    P = scanline_cloud()
    F = recover_mesh(P)
    rep = mesh_report(P, F)
    assert rep.is_disk, rep
    assert rep.unused_vertices == 0 and genus(F) == 0
    assert rep.long_triangles == 0, rep
    # outward normals (the surface faces +z on the whole)
    n = np.cross(P[F[:, 1]] - P[F[:, 0]], P[F[:, 2]] - P[F[:, 0]])
    assert (n[:, 2] > 0).mean() > 0.95
    # deterministic
    np.testing.assert_array_equal(F, recover_mesh(P))
