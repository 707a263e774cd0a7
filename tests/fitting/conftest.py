"""Fixtures of the fitting tests: a synthetic face model, its STN, and one torch thread."""

import pytest
import torch

from stn3dmm.stn import MorphableSTN
from testkit import synthetic_models as syn


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """The fits are tiny problems: one intra-op thread avoids OpenMP/MKL contention on a busy
    machine (more threads slow them down badly when another process uses a core)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model():
    return syn.make_face_model(48)


@pytest.fixture(scope="module")
def stn(model):
    return MorphableSTN(model, landmarks="ibug68", visibility="none").double()
