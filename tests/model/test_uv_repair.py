"""Repairing a folded UV map into a bijection (stn3dmm.model.uv_repair), on a synthetic disk."""

import numpy as np
import pytest
from surfaces import grid_faces

from stn3dmm.model.uv import signed_areas
from stn3dmm.model.uv_repair import _longest_increasing, covers_once, make_bijective, monotone_boundary


def _square_grid(n=21):
    t = np.linspace(0, 1, n)
    u, v = np.meshgrid(t, 1 - t)
    uv = np.stack([u.ravel(), v.ravel()], 1)
    V = np.concatenate([uv * 100, np.zeros((len(uv), 1))], 1)
    return uv, V, grid_faces(n, n, mirror_diagonals=False)


def test_longest_increasing_subsequence():
    x = np.array([3.0, 1, 2, 5, 4, 6, 0])
    np.testing.assert_array_equal(x[_longest_increasing(x)], [1, 2, 4, 6])
    assert len(_longest_increasing(np.array([]))) == 0


def test_folds_and_a_misordered_rim_are_repaired_locally():
    uv, V, F = _square_grid()
    assert covers_once(uv, F)
    n = 21
    bad = uv.copy()
    k = 10 * n + 15                               # an interior vertex on the right pushed across two cells
    bad[k] += [0.1, 0.03]
    rim = 12 * n + n - 1                          # a right-side rim vertex moved against the loop order
    bad[rim] = [0.999, bad[rim, 1] + 0.08]
    assert (signed_areas(bad, F) <= 0).sum() > 0 and not covers_once(bad, F)
    anchor = uv[:, 0] < 0.5                       # the "Tutte" half
    fixed, moved, rounds = make_bijective(bad, V, F, anchor)
    A = signed_areas(fixed, F)
    assert A.min() > 0 and covers_once(fixed, F) and rounds >= 1
    # the rim vertex is back between its neighbours, on the square's side
    assert fixed[rim, 0] == 1 and fixed[rim - n, 1] > fixed[rim, 1] > fixed[rim + n, 1]
    # nothing on the anchored half moved, and the repair stayed near the damage
    assert not moved[anchor].any()
    far = np.linalg.norm(uv - uv[k], axis=1) > 0.35
    far &= np.linalg.norm(uv - uv[rim], axis=1) > 0.35
    np.testing.assert_allclose(fixed[far], bad[far], atol=1e-12)


def test_monotone_boundary_needs_an_anchor():
    uv, V, F = _square_grid(5)
    with pytest.raises(ValueError, match="anchor"):
        monotone_boundary(uv, V, np.arange(5), np.zeros(len(uv), bool))
