"""Model files made wrong on purpose, for the tests of the loader's checks."""

from __future__ import annotations

import numpy as np


def rewrite_npz(src, dst, **changes):
    """A copy of the ``.npz`` ``src`` at ``dst`` with arrays replaced (``name=array``) or removed
    (``name=None``); returns ``dst``."""
    z = dict(np.load(src, allow_pickle=False))
    for k, v in changes.items():
        if v is None:
            z.pop(k)
        else:
            z[k] = v
    np.savez(dst, **z)
    return dst
