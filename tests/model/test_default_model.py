"""The real default model, prepared once per run (tests/conftest.py): its recovered mesh,
its UV map, the grid's symmetry and resampling error, and the file contract."""

import subprocess
import sys

import numpy as np
import pytest

from stn3dmm.model import load_model_file
from stn3dmm.model.mesh import closest_points_on_mesh, genus, mesh_report
from stn3dmm.model.morphable import MorphableModel
from stn3dmm.model.prepare import resample_model, symmetric_uv
from stn3dmm.model.uv import signed_areas
from stn3dmm.model.uv_repair import covers_once



def test_recovered_mesh_is_a_clean_disk(default_grid, default_source):
    model, rep, _ = default_grid
    F = model.extras["source_faces"]
    m = mesh_report(default_source.mean.astype(float), F)
    assert m.is_disk, m                      # one connected oriented 2-manifold, one boundary loop
    assert m.unused_vertices == 0 and genus(F) == 0
    assert m.long_triangles < 300, m         # no bridging triangles
    assert len(F) > 105_000                  # a full mesh: about 2 faces per vertex


def test_uv_map_is_bijective_and_symmetric(default_grid):
    model, rep, _ = default_grid
    assert rep.uv_flipped == 0 and rep.uv_min_area > 1e-14
    uv = model.extras["source_uv"]
    assert uv.min() >= -1e-6 and uv.max() <= 1 + 1e-6
    # symmetric: a vertex and its mirror vertex get mirrored UVs (up to the vertex mismatch)
    mir = model.extras["source_mirror"]
    du = np.abs(uv[:, 0] + uv[mir, 0] - 1)
    dv = np.abs(uv[:, 1] - uv[mir, 1])
    assert np.median(du) < 0.003 and np.median(dv) < 0.003


def test_whole_source_uv_map_is_a_bijection(default_grid):
    """The stored source UV map (left half from Tutte, right half through the mirror,
    repaired where the mirror folds): no flipped or degenerate triangle, nothing overlaps."""
    model, rep, _ = default_grid
    uv, F = model.extras["source_uv"].astype(np.float64), model.extras["source_faces"]
    A = signed_areas(uv, F)
    assert (A <= 0).sum() == 0 and A.min() > 1e-14, A.min()
    assert covers_once(uv, F)
    assert uv.min() >= 0 and uv.max() <= 1
    assert abs(A.sum() - 1) < 1e-3                      # all of the square but chord notches
    # the mirror map folded ~190 triangles at the ears; the repair moved few vertices, little
    assert 100 < rep.source_uv_folded < 400
    assert rep.source_uv_moved < 0.03 * len(uv)         # measured 1,193 of 53,215
    assert rep.source_uv_asym[1] < 0.03                 # measured max 0.021 (2.3 cells at R=112)
    assert rep.source_uv_asym[0] < 0.005                # measured mean 0.0021


def test_grid_geometry(default_grid):
    model, rep, _ = default_grid
    R = model.res
    g = model.mean.reshape(R, R, 3)
    assert g[0, :, 1].mean() > g[-1, :, 1].mean()          # row 0 is the top of the face
    # mirror error of the grid: a property of the surface (median vertex mismatch 0.4 mm)
    assert rep.grid_mirror_error[0] < 0.5 and rep.grid_mirror_error[1] < 2.0
    # the resampled surface stays on the original one, measured both ways (measured at R=112:
    # original -> grid 0.25 mm (inner face 0.16), grid -> original 0.10 mm (inner face 0.07))
    assert rep.resampling_rms < 0.5 and rep.resampling_rms_face < 0.3
    assert rep.grid_to_source_rms < 0.5 and rep.grid_to_source_rms_face < 0.3
    # folds: grid cells spanning the ears' folds (where the harmonic map compresses the ear
    # 4-7x), the lips' seam and a sliver at the right rim's top corner face backwards;
    # measured 25 of 24,642
    assert rep.grid_folds <= 25
    # no tears: neighbouring grid vertices are close
    d = np.concatenate([np.linalg.norm(np.diff(g, axis=a), axis=-1).ravel() for a in (0, 1)])
    assert np.percentile(d, 99.9) / np.median(d) < 8
    # landmarks: nose tip the most forward AFLW-21 point, chin the lowest, pairs mirrored
    P = model.mean[model.landmarks["aflw21"]]
    assert np.argmax(P[:, 2]) == 14 and np.argmin(P[:, 1]) == 20
    pairs = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 16), (13, 15), (17, 19)]
    assert np.mean([abs(P[a, 0] + P[b, 0]) for a, b in pairs]) < 3.0
    assert model.landmarks["ibug68"].shape == (68,)


def test_mirroring_the_grid_mirrors_every_basis_column(default_grid, default_source):
    """Resampling commutes with mirroring: the grid of the mirrored source deformation equals
    the grid deformation with columns j <-> R-1-j swapped and x negated. The source mirror
    is taken on the surface (closest point to the reflected vertex), not by vertex pairing."""
    model, _, _ = default_grid
    R, F = model.res, model.extras["source_faces"]
    suv = symmetric_uv(default_source.mean.astype(np.float64), F)
    S = np.array([-1.0, 1, 1])
    t, b, _ = closest_points_on_mesh(suv.Vc, F, suv.Vc * S)

    def mirrored(B):
        Bc = B.astype(np.float64) @ suv.Rot.T
        return (np.einsum("mk,nmkd->nmd", b, Bc[:, F[t]]) * S) @ suv.Rot

    src = MorphableModel(default_source.mean, mirrored(default_source.basis_id), mirrored(default_source.basis_exp),
                         np.zeros((0, 3)), source="mirrored")
    _, b_id, b_exp, _ = resample_model(src, suv, F, R)
    for grid, want in ((model.basis_id, b_id), (model.basis_exp, b_exp)):
        got = grid.reshape(-1, R, R, 3)[:, :, ::-1] * S
        err = np.linalg.norm(got - want.reshape(-1, R, R, 3), axis=-1)
        size = np.sqrt((np.linalg.norm(grid.reshape(-1, R, R, 3), axis=-1) ** 2).mean((1, 2)))
        # measured: relative RMS <= 0.0041, largest error 0.22 mm over the 20 columns
        assert (np.sqrt((err ** 2).mean((1, 2))) / size).max() < 0.01
        assert err.max() < 0.5


def test_file_contract_round_trip_and_shared_checker(default_grid, shared_dir):
    model, _, path = default_grid
    z = np.load(path, allow_pickle=False)
    R = int(z["res"])
    assert z["mean"].shape == (R, R, 3) and z["basis_id"].shape == (10, R, R, 3)
    assert z["basis_exp"].shape == (10, R, R, 3) and z["faces"].shape == (2 * (R - 1) ** 2, 3)
    back = load_model_file(path)
    np.testing.assert_array_equal(back.mean, model.mean)
    CHECKER = shared_dir / "tools" / "check_grid_model.py"
    if not CHECKER.exists():
        pytest.skip(f"{CHECKER} not present")
    out = subprocess.run([sys.executable, str(CHECKER), str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok:")
