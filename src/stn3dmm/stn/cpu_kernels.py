"""The depth test's inner loops, compiled for the CPU (numba).

This module owns the loops of :func:`stn3dmm.stn.visibility.visibility_depth`, each the same
computation as the torch code it stands in for (which CUDA runs), with the same arithmetic in
the same order, so that the results agree bit for bit (``tests/stn/test_cpu_kernels.py``):

* :func:`_splat_compiled`: a group of depth samples splatted into the buffer (their pixels and
  a max per pixel), for :func:`stn3dmm.stn.depth._depth_buffer_cm`, in one pass instead of
  building index and key tensors for ``scatter_reduce``;
* :func:`_lattice_compiled`: the same for every triangle's lattice points, made on the fly
  instead of as one ``(3, F, B)`` tensor per barycentric weight;
* :func:`_exact_at_vertices_compiled`: the exact ray test of
  :func:`stn3dmm.stn.visibility._exact_at_vertices`, one loop per vertex that stops at its
  first occluder, instead of sorting and de-duplicating tensors of (vertex, triangle) pairs
  (about 20 per vertex, thousands of vertices per face).

numba (a dependency) is imported and the loops compiled at their first use (:func:`ready`), not
at import: about a second the first time, then read from numba's cache. Where numba is not
installed, :data:`AVAILABLE` is False and the torch code runs; where it is installed but cannot
be imported (say, beside a NumPy it does not support), the first use warns once and the torch
code runs from then on.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import torch

AVAILABLE = importlib.util.find_spec("numba") is not None
_COMPILED: dict = {}


def ready(device) -> bool:
    """Whether the compiled loops serve tensors on ``device``: the CPU, with numba importable.

    Examples:
        >>> ready("cuda")                 # CUDA tensors keep the torch code
        False
        >>> ready("cpu") == AVAILABLE     # the CPU uses the loops wherever numba imports
        True
    """
    global AVAILABLE
    if not AVAILABLE or torch.device(device).type != "cpu":
        return False
    try:
        import numba  # noqa: F401
    except Exception as e:            # installed but broken: the torch code gives the same results
        AVAILABLE = False
        warnings.warn(f"numba is installed but cannot be imported ({type(e).__name__}: {e}); the depth test "
                      "runs in torch instead (the same results, slower)", RuntimeWarning, stacklevel=2)
        return False
    return True


def _exact_kernel(x, y, z, faces, sample, patches, ix, iy, vi, bi, eps, reach, tol_w, small, one, covered, occluded):
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


def _compiled(fn):
    """``fn`` compiled (once per process; cached on disk where numba can write)."""
    if fn not in _COMPILED:
        import numba

        try:
            _COMPILED[fn] = numba.njit(cache=True, nogil=True)(fn)
        except RuntimeError:             # no writable cache location: compile in memory only
            _COMPILED[fn] = numba.njit(nogil=True)(fn)
    return _COMPILED[fn]


def _splat_kernel(x, y, zbits, z, image, sid, lo_x, lo_y, h, hb, wb, keys, buf):
    """Max by buffer pixel of the samples ``(R, C)``: sample (r, c) is of image ``image[r]``
    (``c`` where ``image`` is empty), at pixel column ``trunc((x - lo_x) / h)`` and row
    ``trunc((y - lo_y) / h)`` of that image, clamped. Into ``keys`` ``(B Hb Wb,)``: its depth's
    float32 bits ``zbits`` packed with its id ``sid[r]`` (:func:`stn3dmm.stn.depth._pack`), where
    ``keys`` is not empty; else its depth ``z`` into ``buf``."""
    rows, cols = x.shape
    keyed = keys.shape[0] > 0
    for r in range(rows):
        for c in range(cols):
            b = image[r] if image.shape[0] > 0 else c
            hh = h[b]
            ix = min(max(int((x[r, c] - lo_x[b]) / hh), 0), wb - 1)
            iy = min(max(int((y[r, c] - lo_y[b]) / hh), 0), hb - 1)
            i = (b * hb + iy) * wb + ix
            if keyed:
                bits = np.int64(zbits[r, c])
                key = ((bits ^ ((bits >> 31) & 0x7FFFFFFF)) << 32) | (sid[r] + 1)
                if key > keys[i]:
                    keys[i] = key
            elif z[r, c] > buf[i]:
                buf[i] = z[r, c]


def _splat_compiled(x, y, z, image, sid, lo_x, lo_y, h, hb: int, wb: int, out: torch.Tensor) -> None:
    """Splat samples ``x, y, z`` ``(R, C)`` (CPU tensors) of images ``image`` ``(R, 1)`` (None:
    column c is image c) into ``out``: (depth, sample id ``sid`` ``(R, 1)``) keys when ``out`` is
    int64, else depths. The torch code it replaces: :func:`stn3dmm.stn.depth._depth_buffer_cm`."""
    keyed = out.dtype == torch.long
    x, y, z = x.contiguous().numpy(), y.contiguous().numpy(), z.contiguous().numpy()
    zbits = z.astype(np.float32).view(np.int32) if keyed else np.zeros((0, 0), np.int32)
    no_ids = np.zeros(0, np.int64)
    no_out = (np.zeros(0, np.int64), np.zeros(0, z.dtype))
    _compiled(_splat_kernel)(x, y, zbits, z, no_ids if image is None else image.reshape(-1).numpy(),
                             sid.reshape(-1).numpy() if keyed else no_ids, lo_x.numpy(), lo_y.numpy(), h.numpy(),
                             hb, wb, out.numpy() if keyed else no_out[0], no_out[1] if keyed else out.numpy())


def _lattice_kernel(x, y, z, faces, weights, first_id, lo_x, lo_y, h, hb, wb, keys, buf, one32):
    """:func:`_splat_kernel` of the points ``w0 c0 + w1 c1 + w2 c2`` of every triangle (corners
    c0, c1, c2 of ``faces``, in ``x, y, z`` ``(N, B)``) at every weight row of ``weights``
    ``(L, 3)``, each with sample id ``first_id + f``, without building them; ``one32`` is a
    float32 scratch of one element (the depth's float32 bits are read through it)."""
    keyed = keys.shape[0] > 0
    bits32 = one32.view(np.int32)
    for r in range(weights.shape[0]):
        w0, w1, w2 = weights[r, 0], weights[r, 1], weights[r, 2]
        for f in range(faces.shape[0]):
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            for b in range(x.shape[1]):
                px = w0 * x[i0, b] + w1 * x[i1, b] + w2 * x[i2, b]
                py = w0 * y[i0, b] + w1 * y[i1, b] + w2 * y[i2, b]
                pz = w0 * z[i0, b] + w1 * z[i1, b] + w2 * z[i2, b]
                hh = h[b]
                ix = min(max(int((px - lo_x[b]) / hh), 0), wb - 1)
                iy = min(max(int((py - lo_y[b]) / hh), 0), hb - 1)
                i = (b * hb + iy) * wb + ix
                if keyed:
                    one32[0] = pz
                    bits = np.int64(bits32[0])
                    key = ((bits ^ ((bits >> 31) & 0x7FFFFFFF)) << 32) | (first_id + f + 1)
                    if key > keys[i]:
                        keys[i] = key
                elif pz > buf[i]:
                    buf[i] = pz


def _lattice_compiled(cm, faces, weights, first_id: int, lo_x, lo_y, h, hb: int, wb: int, out: torch.Tensor) -> None:
    """Splat every triangle's points at ``weights`` ``(L, 3)`` (the dtype of ``cm`` ``(3, N, B)``)
    into ``out`` as :func:`_splat_compiled` does. The torch code it replaces:
    :func:`stn3dmm.stn.depth._lattice_groups`, each group then splatted."""
    keyed = out.dtype == torch.long
    x, y, z = (cm[j].numpy() for j in range(3))
    none = (np.zeros(0, np.int64), np.zeros(0, x.dtype))
    _compiled(_lattice_kernel)(x, y, z, faces.numpy(), weights.numpy(), first_id, lo_x.numpy(), lo_y.numpy(),
                               h.numpy(), hb, wb, out.numpy() if keyed else none[0], none[1] if keyed else out.numpy(),
                               np.zeros(1, np.float32))


def _exact_at_vertices_compiled(cm, faces, db, ix, iy, vi, bi, eps, reach: int = 1):
    """:func:`stn3dmm.stn.visibility._exact_at_vertices` on CPU tensors: ``(covered, occluded)``
    ``(K,)`` bool for the candidate vertices ``vi`` of images ``bi``."""
    k = len(vi)
    covered, occluded = np.zeros(k, np.bool_), np.zeros(k, np.bool_)
    if k:
        dt = cm.numpy().dtype.type
        x, y, z = (cm[j].numpy() for j in range(3))
        tol_w = dt(1e-6 if dt is np.float64 else 1e-4)         # the reference's tolerances, in its dtype
        _compiled(_exact_kernel)(x, y, z, faces.numpy(), db["sample"].numpy(), db["patches"].numpy(), ix.numpy(),
                                 iy.numpy(), vi.numpy(), bi.numpy(), eps.numpy(), reach, tol_w, dt(1e-9), dt(1),
                                 covered, occluded)
    return torch.from_numpy(covered), torch.from_numpy(occluded)


__all__ = ["AVAILABLE", "ready"]
