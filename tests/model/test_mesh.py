"""Mesh topology helpers against known answers on small meshes."""

import numpy as np
from surfaces import face_surface

from stn3dmm.model.mesh import (boundary_loops, clean_faces, closest_points_on_mesh, flip_caps, genus,
                                mesh_report, nonmanifold_vertex_fans, orientation_conflicts)
from stn3dmm.model.triangulate import fill_holes


def torus(n=12, m=8):
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, n, endpoint=False), np.linspace(0, 2 * np.pi, m, endpoint=False))
    V = np.stack([(3 + np.cos(v)) * np.cos(u), (3 + np.cos(v)) * np.sin(u), np.sin(v)], -1).reshape(-1, 3)
    F = []
    for i in range(m):
        for j in range(n):
            a, b, c, d = i * n + j, i * n + (j + 1) % n, ((i + 1) % m) * n + j, ((i + 1) % m) * n + (j + 1) % n
            F += [[a, b, d], [a, d, c]]
    return V, np.array(F)


def test_disk_report_and_genus():
    V, F = face_surface(11, 9)
    rep = mesh_report(V, F)
    assert rep.is_disk and rep.euler == 1 and rep.boundary_loops == [2 * (11 + 9) - 4]
    assert genus(F) == 0
    Vt, Ft = torus()
    assert genus(Ft) == 1 and mesh_report(Vt, Ft).boundary_loops == []
    # a handle made by gluing two separate holes of one disk with a tube is genus 1 too:
    # here simply: the torus with one face removed
    assert genus(Ft[1:]) == 1


def test_bowtie_and_conflicts_detected_and_cleaned():
    V, F = face_surface(7, 7)
    # a stray triangle touching the mesh at one vertex only -> bowtie at vertex 0
    V2 = np.vstack([V, V[0] + [0, 5, 0], V[0] + [5, 5, 0]])
    n = len(V)
    F2 = np.vstack([F, [[0, n, n + 1]]])
    bad = nonmanifold_vertex_fans(F2)
    assert list(bad) == [0] and sorted(map(len, bad[0])) == [1, 2]
    F3 = F.copy()
    F3[5] = F3[5][::-1]
    assert len(orientation_conflicts(F3)) >= 2
    inside = np.array([0.0, 0.0, -200.0])
    Fc = clean_faces(V2, np.vstack([F3, [[0, n, n + 1]]]), inside, min_component=2)
    assert len(nonmanifold_vertex_fans(Fc)) == 0 and len(orientation_conflicts(Fc)) == 0


def test_boundary_loops_follow_faces_and_holes_fill():
    V, F = face_surface(15, 15)
    hole = np.isin(F, [7 * 15 + 7]).any(1)              # remove the 6 faces around a vertex
    Fh = F[~hole]
    loops = boundary_loops(Fh)
    assert sorted(map(len, loops)) == [6, 2 * (15 + 15) - 4]
    half = {(a, b) for t in Fh.tolist() for a, b in zip(t, t[1:] + t[:1])}
    for lp in loops:  # each loop step is a face's half-edge
        assert all((a, b) in half for a, b in zip(lp, lp[1:] + lp[:1]))
    filled = fill_holes(V, Fh)
    assert mesh_report(V, filled).is_disk and len(filled) == len(Fh) + 4   # 6-gon -> 4 triangles


def test_closest_points_against_brute_force():
    V, F = face_surface(9, 9)
    rng = np.random.default_rng(1)
    Q = V[rng.integers(0, len(V), 50)] + rng.normal(scale=3, size=(50, 3))
    t, b, d = closest_points_on_mesh(V, F, Q, k=len(F))
    P = np.einsum("mk,mkd->md", b, V[F[t]])
    np.testing.assert_allclose(np.linalg.norm(P - Q, axis=1), d, atol=1e-9)
    # brute force over dense samples of every triangle: nothing is closer
    s = np.stack(np.meshgrid(np.linspace(0, 1, 12), np.linspace(0, 1, 12)), -1).reshape(-1, 2)
    s = s[s.sum(1) <= 1]
    bary = np.concatenate([1 - s.sum(1, keepdims=True), s], 1)
    samples = np.einsum("sk,tkd->tsd", bary, V[F]).reshape(-1, 3)
    brute = np.min(np.linalg.norm(samples[None] - Q[:, None], axis=2), axis=1)
    assert np.all(d <= brute + 1e-9) and np.all(b >= -1e-12)


def test_flip_caps_removes_a_vertex_on_an_edge():
    V = np.array([[0, 0, 0], [2, 0, 0], [1, 0, 0], [1, 1, 0], [1, -1, 0.]])
    F = np.array([[0, 2, 3], [2, 1, 3], [0, 4, 2], [2, 4, 1]])      # fine
    Fbad = np.array([[0, 1, 3], [0, 2, 1], [0, 4, 2], [2, 4, 1]])   # (0, 2, 1) is a flat cap
    assert mesh_report(V, Fbad).orientation_conflicts == 0
    Ff = flip_caps(V, Fbad)
    ang = []
    for t in Ff:
        a, b, c = V[t]
        ang.append(np.cross(b - a, c - a)[2])
    assert min(ang) > 0 and len(Ff) == 4 and mesh_report(V, Ff).is_disk
    assert mesh_report(V, F).is_disk
