"""CPU thread control for the many-small-operation parts of the system (fitting, flattening).

Owns :func:`cpu_threads`. Fitting theta runs hundreds of tiny tensor operations; with more
than one intra-op thread every one of them is an OpenMP fork/join, which buys nothing at
these sizes and, when other processes keep the cores busy, costs a great deal (every
fork/join waits for a core that another process holds). So those parts run single-threaded on
the CPU unless asked otherwise. CUDA is unaffected. OpenCV, which box-filters photos for crops
(:mod:`stn3dmm.photos.crop`), gets the same count: its own pool would otherwise take the other
core for each photo-sized filter.

``torch.set_num_threads`` is process-wide: do not change it concurrently from two Python
threads (the flattening pipeline's writer thread does no torch work).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def cpu_threads(n: int | None, device=None):
    """Run the block with ``n`` torch intra-op threads and ``n`` OpenCV threads when ``device`` is
    the CPU (or None).

    ``n=None`` or a CUDA device leaves the settings alone; the previous counts are restored."""
    if n is None or (device is not None and torch.device(device).type != "cpu"):
        yield
        return
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    import cv2

    old, old_cv = torch.get_num_threads(), cv2.getNumThreads()
    if old != n:
        torch.set_num_threads(n)
    if old_cv != n:
        cv2.setNumThreads(n)
    try:
        yield
    finally:
        if old != n:
            torch.set_num_threads(old)
        if old_cv != n:
            cv2.setNumThreads(old_cv)


__all__ = ["cpu_threads"]
