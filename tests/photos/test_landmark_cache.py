"""The dense landmark map's disk cache: round trip, keys, and files it must not trust."""

from types import SimpleNamespace

import numpy as np
import pytest

from stn3dmm.photos import landmark_map as lm


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A small model, a map builder that counts its calls, an empty cache in tmp_path."""
    monkeypatch.setenv("STN3DMM_CACHE", str(tmp_path))
    monkeypatch.setattr(lm, "_CACHE", {})
    rng = np.random.default_rng(0)
    model = SimpleNamespace(mean=rng.normal(size=(50, 3)), faces=np.array([[0, 1, 2], [2, 1, 3]]),
                            mirror=np.arange(50)[::-1].copy())
    built = lm.LandmarkMap("dense", np.array([3, 1, 4, 1, 5]), np.array([[0, 0], [7, 7], [9, 9], [9, 9], [467, 467]]),
                           np.array([1.0, 0.5, 0.25, 0.25, 0.125]), np.array([0.1, 0.2, 0.3, 0.3, 2.4]))
    calls = []
    monkeypatch.setattr(lm, "_build_dense_map", lambda model, *a: calls.append(model) or built)
    return model, built, calls, tmp_path / "landmark_maps"


def test_round_trip_through_the_disk_cache(fake):
    model, built, calls, folder = fake
    assert lm.dense_map(model) is built and len(calls) == 1
    files = list(folder.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz" and files[0].name.startswith("dense-")
    lm._CACHE.clear()                                  # as in a new process
    again = lm.dense_map(model)
    assert len(calls) == 1 and again is not built
    for name in ("vertices", "sources", "weights", "residual"):
        a, b = getattr(again, name), getattr(built, name)
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert again.name == "dense"


def test_the_key_follows_the_model_and_the_options(fake):
    model, _, calls, folder = fake
    lm.dense_map(model)
    lm.dense_map(SimpleNamespace(mean=model.mean + 1.0, faces=model.faces, mirror=model.mirror))
    lm.dense_map(model, max_residual=3.0)
    assert len(calls) == 3 and len(list(folder.iterdir())) == 3


def test_unusable_cache_files_are_rebuilt(fake):
    model, built, calls, folder = fake
    lm.dense_map(model)
    path = next(folder.iterdir())
    bad = {"junk": b"not an npz",
           "pickled": None,                                              # an object array: never unpickled
           "does not fit the model": dict(vertices=np.array([3, 1, 4, 1, 50]))}
    for why, content in bad.items():
        if content is None:
            np.savez(path, vertices=np.array([object()] * 5, dtype=object), sources=built.sources,
                     weights=built.weights, residual=built.residual)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            np.savez(path, sources=built.sources, weights=built.weights, residual=built.residual, **content)
        assert lm.load_cached_map(path, len(model.mean)) is None, why
        n = len(calls)
        lm._CACHE.clear()
        assert lm.dense_map(model) is built and len(calls) == n + 1, why
        assert lm.load_cached_map(path, len(model.mean)) is not None, why   # replaced by a good file


def test_a_custom_detector_bypasses_both_caches(fake):
    model, built, calls, folder = fake
    lm.dense_map(model, detector=object())
    assert len(calls) == 1 and not folder.exists() and not lm._CACHE
    lm.dense_map(model)                                 # the default map is built, not the custom one reused
    lm.dense_map(model, detector=object())              # and a custom detector never takes the cached one
    assert len(calls) == 3 and len(list(folder.iterdir())) == 1
