"""A run's hold on its output folder, and the signals that end a run.

Owns :func:`claim_output` (with :class:`OutputInUse`) and :func:`signals_interrupt` (with
:class:`Terminated`), :func:`signals_ignored` and :func:`signals_deferred`.

Two runs writing into one output folder would mix their files: a face's ``.json`` from one
run beside its texture from the other. So a run claims the folder first with an exclusive
``flock`` on the hidden file :data:`LOCK_NAME` in it, held until the run ends; the kernel
drops it when the process dies, however it dies, so a killed run never leaves the folder
claimed. A second run is refused at once with :class:`OutputInUse` (it does not wait: two
batches into one folder are more likely a mistake than a plan). The lock file stays: deleting
it would let a third run lock a new file while a second still holds the old one.

``SIGTERM`` is turned into :class:`Terminated` (a ``KeyboardInterrupt``), so that a run ends
as cleanly on ``kill`` as on Ctrl-C: the photo being written is finished, the rest is left
for the next run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None

#: The hidden file in an output folder that a running ``stn3dmm flatten`` holds locked.
LOCK_NAME = ".stn3dmm-flatten.lock"


class OutputInUse(OSError):
    """Another run holds the output folder."""


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM."""


@contextlib.contextmanager
def claim_output(out_dir, log=print):
    """Hold ``out_dir`` (created if missing) for this run: raises :class:`OutputInUse` when
    another process holds it. Where the file system cannot lock, says so and goes on."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise OutputInUse(f"{out_dir}: another stn3dmm flatten (pid {holder}) is writing into this folder; "
                                  f"wait for it to end, or give another --out") from None
            except OSError as e:
                log(f"warning: {out_dir} cannot be locked ({e.strerror or e}): "
                    f"do not run two stn3dmm flatten into it at once")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield out_dir
    finally:
        os.close(fd)


@contextlib.contextmanager
def signals_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (as Ctrl-C
    raises KeyboardInterrupt). Elsewhere than in the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise Terminated()

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def signals_ignored():
    """Within the block, SIGINT and SIGTERM are ignored (main thread only): for the moment
    an interrupted run finishes the photo it is writing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_deferred():
    """Within the block, SIGINT and SIGTERM are held back (main thread only), then raised as
    KeyboardInterrupt or :class:`Terminated` when it ends: for work that must not be cut in the
    middle, such as handing a new worker process its start-up data."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if got:
        raise Terminated() if got[0] == signal.SIGTERM else KeyboardInterrupt()


__all__ = ["LOCK_NAME", "OutputInUse", "Terminated", "claim_output", "signals_interrupt", "signals_ignored",
           "signals_deferred"]
