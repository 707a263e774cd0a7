"""load_model: a model named by None (the default), a path, or its name in the cache."""

import numpy as np
import pytest

from stn3dmm.model import ModelFileError, MorphableModel, save_model
from stn3dmm.model.prepare import PREPARED_BY
from stn3dmm.model.store import load_model
from stn3dmm.model.store import default_model_path, model_name, parse_model_name, prepared_models


def _model(res=4, source="test", prepared_by=PREPARED_BY):
    n = res * res
    rng = np.random.default_rng(res)
    return MorphableModel(mean=rng.normal(size=(n, 3)), basis_id=rng.normal(size=(2, n, 3)),
                          basis_exp=np.zeros((0, n, 3)), faces=np.array([[0, 1, 2]]),
                          landmarks={"aflw21": np.arange(21) % n, "ibug68": np.arange(68) % n},
                          source=source, res=res,
                          extras={"prepared_by": np.str_(prepared_by)} if prepared_by else {})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STN3DMM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_names_and_paths_of_prepared_models(cache):
    assert default_model_path() == cache / "models" / "grid_model.npz"
    assert default_model_path(64, "bfm2017").name == "grid_model_bfm2017_r64.npz"
    assert model_name(default_model_path()) == "default"
    assert model_name(default_model_path(64, "bfm2017")) == "bfm2017_r64"
    assert model_name(default_model_path(112, "bfm2017")) == "bfm2017"
    assert model_name(default_model_path(64)) == "default_r64"
    assert model_name("elsewhere.npz") is None
    assert parse_model_name("bfm2017_r64") == ("bfm2017", 64) and parse_model_name("bfm2009") == ("bfm2009", 112)


def test_load_by_name_path_and_none(cache, tmp_path):
    save_model(_model(4, "a"), default_model_path(112, "bfm2017"))
    save_model(_model(5, "b"), default_model_path(64, "bfm2017"))
    save_model(_model(6, "c"), default_model_path(64))
    save_model(_model(7, "d"), default_model_path())
    assert list(prepared_models()) == ["bfm2017", "bfm2017_r64", "default", "default_r64"]
    assert load_model("bfm2017").source == "a"
    assert load_model("bfm2017_r64").source == "b"
    assert load_model("default_r64").source == "c"
    assert load_model("default").source == "d" and load_model(None).source == "d"
    assert load_model(None, res=64).source == "c"
    p = save_model(_model(8, "e"), tmp_path / "mine.npz")
    assert load_model(p).source == "e" and load_model(str(p)).source == "e"


def test_unknown_name_lists_the_prepared_models(cache):
    save_model(_model(5), default_model_path(64, "bfm2017"))
    with pytest.raises(ModelFileError, match=r"bfm2009: .*not the name of a prepared model.*bfm2017_r64") as e:
        load_model("bfm2009")
    assert "prepare-model --source bfm2009" in str(e.value)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model("missing.npz")


def test_a_default_model_cached_by_an_earlier_version_is_prepared_again(cache, monkeypatch):
    import stn3dmm.model.prepare as prep
    import stn3dmm.model.sources as sources

    save_model(_model(6, "stale", prepared_by=None), default_model_path())
    calls = []
    monkeypatch.setattr(sources, "load_default_source", lambda log=None: "source")
    monkeypatch.setattr(prep, "prepare_grid_model", lambda src, res, log: (calls.append((src, res)) or _model(7, "new"), None))
    logged = []
    assert load_model(None, log=logged.append).source == "new"
    assert calls == [("source", 112)] and "earlier stn3dmm" in logged[0]
    assert load_model(None).source == "new" and len(calls) == 1          # the new file is current
