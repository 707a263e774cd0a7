"""The real default model, prepared once per run (tests/conftest.py): its recovered mesh,
its UV map, the grid's symmetry and resampling error, and the file contract."""

import subprocess
import sys

import numpy as np
import pytest

from stn3dmm.model import load_model_file
from stn3dmm.model.mesh import genus, mesh_report



def test_recovered_mesh_is_a_clean_disk(default_grid, default_source):
    model, rep, _ = default_grid
    F = model.extras["source_faces"]
    m = mesh_report(default_source.mean.astype(float), F)
    assert m.is_disk, m                      # one connected oriented 2-manifold, one boundary loop
    assert m.unused_vertices == 0 and genus(F) == 0
    assert m.long_triangles < 300, m         # no bridging triangles
    assert len(F) > 105_000                  # a full mesh: about 2 faces per vertex
    assert rep.seconds["mesh"] < 60          # the budget is 30 s on a quiet machine


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


def test_grid_geometry(default_grid):
    model, rep, _ = default_grid
    R = model.res
    g = model.mean.reshape(R, R, 3)
    assert g[0, :, 1].mean() > g[-1, :, 1].mean()          # row 0 is the top of the face
    # mirror error of the grid: a property of the surface (median vertex mismatch 0.4 mm)
    assert rep.grid_mirror_error[0] < 0.5 and rep.grid_mirror_error[1] < 2.0
    # the resampled surface stays on the original one
    assert rep.resampling_rms < 0.5
    # no tears: neighbouring grid vertices are close
    d = np.concatenate([np.linalg.norm(np.diff(g, axis=a), axis=-1).ravel() for a in (0, 1)])
    assert np.percentile(d, 99.9) / np.median(d) < 8
    # landmarks: nose tip the most forward AFLW-21 point, chin the lowest, pairs mirrored
    P = model.mean[model.landmarks["aflw21"]]
    assert np.argmax(P[:, 2]) == 14 and np.argmin(P[:, 1]) == 20
    pairs = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 16), (13, 15), (17, 19)]
    assert np.mean([abs(P[a, 0] + P[b, 0]) for a, b in pairs]) < 3.0
    assert model.landmarks["ibug68"].shape == (68,)


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
