"""The exact step of the depth test, compiled for the CPU (numba).

This module owns :func:`_exact_at_vertices_compiled`, the same ray test as
:func:`stn3dmm.stn.visibility._exact_at_vertices` (the reference, which also runs on CUDA), as
one loop per vertex instead of tensors of (vertex, triangle) pairs. The torch version builds,
sorts and de-duplicates those pairs (about 20 per vertex, thousands of vertices per face)
before gathering their corners; here each triangle is tested where it is met, and a vertex
stops at its first occluder. The arithmetic is the reference's, operation for operation, in the
vertices' dtype, so the verdicts agree bit for bit (``tests/stn/test_exact_cpu.py``).

numba (a dependency) is imported and the loop compiled at the first call, not at import: about
a second the first time, then read from numba's cache. Where numba is not installed,
:data:`AVAILABLE` is False and the depth test uses the torch version.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

AVAILABLE = importlib.util.find_spec("numba") is not None
_compiled = None


def _kernel(x, y, z, faces, sample, patches, ix, iy, vi, bi, eps, reach, tol_w, small, one, covered, occluded):
    """For candidate k (vertex ``vi[k]`` of image ``bi[k]``): the triangles of the front-most
    samples of the ``(2 reach + 1)^2`` buffer pixels around the vertex's pixel; ``covered[k]``:
    one's projection holds the vertex; ``occluded[k]``: such a one lies more than ``eps`` in
    front of it. ``x, y, z`` are ``(N, B)``; ``sample`` ``(B, Hb, Wb)``."""
    hb, wb = sample.shape[1], sample.shape[2]
    n_patch = patches.shape[1]
    for k in range(vi.shape[0]):
        v, b = vi[k], bi[k]
        px, py = ix[v, b], iy[v, b]
        xv, yv, limit = x[v, b], y[v, b], z[v, b] + eps[b]
        cov = False
        for dy in range(-reach, reach + 1):
            qy = min(max(py + dy, 0), hb - 1)
            for dx in range(-reach, reach + 1):
                qx = min(max(px + dx, 0), wb - 1)
                s = sample[b, qy, qx]
                if s < 0:
                    continue
                for j in range(n_patch):
                    f = patches[s, j]
                    if f < 0:
                        continue
                    i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
                    ax, ay = x[i0, b], y[i0, b]
                    v0x, v0y = x[i1, b] - ax, y[i1, b] - ay
                    v1x, v1y = x[i2, b] - ax, y[i2, b] - ay
                    den = v0x * v1y - v0y * v1x
                    if not abs(den) > small * (v0x * v0x + v0y * v0y + v1x * v1x + v1y * v1y):
                        continue
                    ddx, ddy = xv - ax, yv - ay
                    w1 = (ddx * v1y - ddy * v1x) / den
                    w2 = (v0x * ddy - v0y * ddx) / den
                    w0 = one - w1 - w2
                    if w0 >= -tol_w and w1 >= -tol_w and w2 >= -tol_w:
                        cov = True
                        if w0 * z[i0, b] + w1 * z[i1, b] + w2 * z[i2, b] > limit:
                            occluded[k] = True
                            break
                if occluded[k]:
                    break
            if occluded[k]:
                break
        covered[k] = cov


def _compiled_kernel():
    """:func:`_kernel` compiled (once per process; cached on disk where numba can write)."""
    global _compiled
    if _compiled is None:
        import numba

        try:
            _compiled = numba.njit(cache=True, nogil=True)(_kernel)
        except RuntimeError:             # no writable cache location: compile in memory only
            _compiled = numba.njit(nogil=True)(_kernel)
    return _compiled


def _exact_at_vertices_compiled(cm, faces, db, ix, iy, vi, bi, eps, reach: int = 1):
    """:func:`stn3dmm.stn.visibility._exact_at_vertices` on CPU tensors: ``(covered, occluded)``
    ``(K,)`` bool for the candidate vertices ``vi`` of images ``bi``."""
    k = len(vi)
    covered, occluded = np.zeros(k, np.bool_), np.zeros(k, np.bool_)
    if k:
        dt = cm.numpy().dtype.type
        x, y, z = (cm[j].numpy() for j in range(3))
        _compiled_kernel()(x, y, z, faces.numpy(), db["sample"].numpy(), db["patches"].numpy(), ix.numpy(), iy.numpy(),
                  vi.numpy(), bi.numpy(), eps.numpy(), reach, dt(1e-6 if dt is np.float64 else 1e-4), dt(1e-9), dt(1),
                  covered, occluded)
    return torch.from_numpy(covered), torch.from_numpy(occluded)


__all__ = ["AVAILABLE"]
