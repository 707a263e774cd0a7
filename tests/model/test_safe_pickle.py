"""Tests of the restricted unpickler (stn3dmm.model.safe_pickle)."""

import builtins
import io
import os
import pickle
import subprocess
from collections import OrderedDict

import numpy as np
import pytest

from stn3dmm.model.safe_pickle import safe_load


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_loads_dict_of_arrays(tmp_path, protocol):
    data = {"param_mean": np.arange(62, dtype=np.float32), "param_std": np.linspace(1, 2, 62),
            "ints": np.arange(6, dtype=np.int64).reshape(2, 3), "scalar": np.float32(2.5),
            "nested": [(1, 2.0, "x", b"y", None, True)], "od": OrderedDict(a=1), "s": {1, 2}}
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    got = safe_load(path)
    assert set(got) == set(data)
    np.testing.assert_array_equal(got["param_mean"], data["param_mean"])
    assert got["param_mean"].dtype == np.float32
    np.testing.assert_array_equal(got["param_std"], data["param_std"])
    np.testing.assert_array_equal(got["ints"], data["ints"])
    assert got["scalar"] == np.float32(2.5) and got["scalar"].dtype == np.float32
    assert got["nested"] == data["nested"] and got["od"] == data["od"] and got["s"] == {1, 2}
    # a file object works too
    with open(path, "rb") as f:
        np.testing.assert_array_equal(safe_load(f)["ints"], data["ints"])


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


class _Popen:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return subprocess.Popen, (["touch", str(self.marker)],)


@pytest.mark.parametrize("cls, glob", [(_System, f"{os.system.__module__}.system"), (_Eval, "builtins.eval"),
                                       (_Popen, "subprocess.Popen")])
def test_refuses_malicious_pickle(tmp_path, cls, glob):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    # hide the payload inside an innocent-looking dict of arrays
    path.write_bytes(pickle.dumps({"param_std": np.ones(3), "x": cls(marker)}))
    with pytest.raises(pickle.UnpicklingError) as e:
        safe_load(path)
    assert not marker.exists()
    msg = str(e.value)
    assert glob in msg and str(path) in msg and "refused" in msg
    # the plain unpickler would have run it: the test's payload is real
    if cls is _System:
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_refuses_other_numpy_callables(tmp_path):
    path = tmp_path / "np.pkl"
    path.write_bytes(b"cnumpy\nload\n(S'x'\ntR.")  # numpy.load('x'): a global outside the list
    with pytest.raises(pickle.UnpicklingError, match="numpy.load"):
        safe_load(path)


def test_garbage_names_the_stream():
    f = io.BytesIO(b"not a pickle at all")
    with pytest.raises(pickle.UnpicklingError, match="not a valid pickle"):
        safe_load(f)
