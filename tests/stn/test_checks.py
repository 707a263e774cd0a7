"""Tests of the front-door input checks (stn/checks.py): bad theta and landmarks raise clear errors."""

import numpy as np
import pytest
import torch

from stn3dmm.stn.checks import check_landmarks, check_theta


def test_check_theta_rejects_bad_input():
    ok = torch.zeros(2, 10)
    assert check_theta(ok, 2, 2) is ok
    bad = ok.clone()
    bad[1, 4] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        check_theta(bad, 2, 2)
    bad[1, 4] = float("inf")
    with pytest.raises(ValueError, match="row"):
        check_theta(bad, 2, 2)
    with pytest.raises(ValueError, match="shape"):
        check_theta(torch.zeros(2, 9), 2, 2)
    with pytest.raises(ValueError, match="shape"):
        check_theta(torch.zeros(10), 2, 2)
    with pytest.raises(ValueError, match="floating"):
        check_theta(torch.zeros(2, 10, dtype=torch.long), 2, 2)
    with pytest.raises(ValueError, match="dtype"):
        check_theta(ok, 2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="Tensor"):
        check_theta(np.zeros((2, 10)), 2, 2)
    with pytest.raises(ValueError, match="batch"):
        check_theta(ok, 2, 2, batch=3)


def test_check_landmarks_rejects_far_points_and_allows_missing():
    lm = torch.tensor([[[10.0, 20.0], [float("nan"), float("nan")], [100.0, 50.0]]])
    out, vis = check_landmarks(lm, image_size=(224, 224))
    assert vis.tolist() == [[1.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="visible"):
        check_landmarks(lm, torch.ones(1, 3))
    far = lm.clone()
    far[0, 0] = torch.tensor([500.0, 20.0])
    with pytest.raises(ValueError, match="far outside"):
        check_landmarks(far, image_size=(224, 224))
    check_landmarks(far)  # no image size: no bounds check
    with pytest.raises(ValueError):
        check_landmarks(lm[0])
