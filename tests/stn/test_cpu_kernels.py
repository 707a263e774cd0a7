"""The depth test's loops compiled for the CPU (stn/cpu_kernels.py) against the torch code they
stand in for (which CUDA runs), on the real default model at poses up to profile, in float32 and
float64: the same verdicts of the exact step, candidate by candidate, and the same depth buffers
and sample ids."""

import math
import sys

import pytest
import torch

from stn3dmm.stn import MorphableSTN, cpu_kernels, depth_buffer
from stn3dmm.stn import visibility as vis
from stn3dmm.stn.layers import axis_angle_to_rotation

pytestmark = pytest.mark.skipif(not cpu_kernels.AVAILABLE,
                                reason="numba is not installed (a dependency: pip install -e .)")


@pytest.fixture(scope="module")
def posed(default_grid):
    """The real model's mean face, randomly reshaped, at 12 poses: yaw to 90, pitch and roll too."""
    stn = MorphableSTN(default_grid[0])
    g = torch.Generator().manual_seed(3)
    shapes = stn.geometry(torch.cat([torch.zeros(12, 6), torch.randn(12, stn.n_params - 6, generator=g)], 1))
    out = []
    for k, v in enumerate(shapes.posed.detach().double()):
        yaw, pitch, roll = math.radians(-90 + 15 * k), math.radians(20 * math.sin(k)), math.radians(10 * math.cos(k))
        r = axis_angle_to_rotation(torch.tensor([0.0, yaw, 0.0], dtype=torch.float64))
        r = axis_angle_to_rotation(torch.tensor([pitch, 0.0, roll], dtype=torch.float64)) @ r
        out.append(v @ r.T)
    return torch.stack(out), stn.faces


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_exact_step_gives_the_reference_verdicts(posed, dtype, monkeypatch):
    vertices, faces = posed
    calls = []
    compiled = cpu_kernels._exact_at_vertices_compiled

    def both(cm, faces_, db, ix, iy, vi, bi, eps, reach=1):
        got = compiled(cm, faces_, db, ix, iy, vi, bi, eps, reach)
        calls.append((got, vis._exact_at_vertices(cm, faces_, db, ix, iy, vi, bi, eps, reach)))
        return got

    monkeypatch.setattr(cpu_kernels, "_exact_at_vertices_compiled", both)
    fast = vis.visibility_depth(vertices.to(dtype), faces)
    (covered, occluded), (ref_covered, ref_occluded) = calls[0]
    assert len(covered) > 5000                                  # thousands of candidates were tested
    assert torch.equal(covered, ref_covered) and torch.equal(occluded, ref_occluded)
    assert 0 < int(occluded.sum()) < len(occluded)              # both verdicts occur
    monkeypatch.setattr(cpu_kernels, "AVAILABLE", False)
    assert torch.equal(fast, vis.visibility_depth(vertices.to(dtype), faces))


def test_no_candidates_gives_empty_verdicts(posed):
    vertices, faces = posed
    empty = torch.zeros(0, dtype=torch.long)
    covered, occluded = cpu_kernels._exact_at_vertices_compiled(vertices, faces, {}, empty, empty, empty, empty, None)
    assert covered.shape == occluded.shape == (0,) and covered.dtype == torch.bool


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_splat_gives_the_reference_buffers(posed, dtype, monkeypatch):
    vertices, faces = posed[0][::3].to(dtype), posed[1]

    def buffers():
        return depth_buffer(vertices, faces, pixel=0.5), vis.visibility_depth(vertices, faces, return_buffer=True)[1]

    fast, keyed = buffers()
    monkeypatch.setattr(cpu_kernels, "AVAILABLE", False)
    ref, ref_keyed = buffers()
    assert fast["samples"] > 2                          # the per-triangle lattices were splatted too
    assert torch.isfinite(fast["buffer"]).float().mean() > 0.3
    assert torch.equal(fast["buffer"], ref["buffer"])
    assert torch.equal(keyed["buffer"], ref_keyed["buffer"]) and torch.equal(keyed["sample"], ref_keyed["sample"])


def test_a_numba_that_cannot_be_imported_leaves_the_torch_code_with_one_warning(posed, monkeypatch):
    vertices, faces = posed[0][:2], posed[1]
    expected = vis.visibility_depth(vertices, faces)
    monkeypatch.setitem(sys.modules, "numba", None)            # `import numba` now fails
    monkeypatch.setattr(cpu_kernels, "AVAILABLE", True)
    with pytest.warns(RuntimeWarning, match="numba is installed but cannot be imported"):
        assert torch.equal(vis.visibility_depth(vertices, faces), expected)
    assert not cpu_kernels.AVAILABLE
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")                         # said once, not on every call
        assert torch.equal(vis.visibility_depth(vertices, faces), expected)
