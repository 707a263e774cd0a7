"""Worker processes: more of a machine's cores for one run of ``stn3dmm flatten``.

Owns :class:`WorkerPool`, :func:`auto_workers`, :func:`claimed` and the run's :class:`SharedBar`.
In one process the stages of flattening overlap on threads, but much of their work holds
Python's interpreter lock, so a run keeps only about 1.6 of 2 cores busy. A pool adds
processes, each with its own :class:`~stn3dmm.flatten.pipeline.Flattener` made from the same recipe
(:meth:`~stn3dmm.flatten.pipeline.Flattener.recipe`: the model and the options; a detector or
localiser passed in by hand cannot be remade, and is refused). During a run every process, this
one included, takes the next planned photo from one shared counter (:func:`claimed`), so that a
slow photo holds up only its own process, and runs the same loop on it
(:func:`~stn3dmm.flatten.batches.run_photos`). A worker reports each photo for the progress bar,
then its :class:`~stn3dmm.flatten.batches.RunReport`, which the run adds to its own.

Starting a worker costs a few seconds (imports, the model, the detector's and the localiser's
graphs), so :func:`auto_workers` asks for one only on runs long enough to repay it. Ctrl-C reaches
every process of the terminal's group; SIGTERM reaches the run's own process, which passes it on
as SIGINT: each process then finishes the photos it is writing. A worker stops taking photos when
the run's process is gone (the output folder's lock goes with it). A worker that dies is reported
as a problem of the run: the photos it held are left unfinished, for the next run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import traceback
from pathlib import Path

import torch

from .batches import Batches, RunReport, batch_size, run_photos
from .state import signals_deferred, signals_ignored, signals_interrupt

#: :func:`auto_workers` starts one more process per this many photos: a worker's start costs about
#: 4 s of CPU, taken from the run's own process on 2 cores (docs/benchmarks.md, "Speed of flattening").
MIN_PHOTOS_PER_WORKER = 200
#: :func:`auto_workers` starts at most this many processes.
MAX_WORKERS = 8
#: Memory :func:`auto_workers` counts per process: each holds its own model, detector and networks
#: (1.0-1.3 GB resident in the all-LFW run, docs/benchmarks.md), with room for large photos.
WORKER_BYTES = 2 * 1024 ** 3
#: Seconds to wait for a worker to be ready before the pool gives up on it.
START_TIMEOUT = 300.0


def auto_workers(photos: int, device="cpu", cores: int | None = None, memory: int | None = None) -> int:
    """Processes for a run of ``photos`` photos on ``device``: one per core available to this
    process (at most :data:`MAX_WORKERS`, and no more than ``memory`` bytes, default the memory
    available now, hold at :data:`WORKER_BYTES` each), but one more only per
    :data:`MIN_PHOTOS_PER_WORKER` photos, so that a short run does not pay for starting them.
    Always 1 on a GPU."""
    if torch.device(device).type != "cpu":
        return 1
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory = available_memory() if memory is None else memory
    room = MAX_WORKERS if memory is None else int(memory // WORKER_BYTES)
    return max(1, min(MAX_WORKERS, cores, room, 1 + photos // MIN_PHOTOS_PER_WORKER))


def available_memory() -> int | None:
    """Bytes of memory available to new processes now (``MemAvailable`` of ``/proc/meminfo``), or
    None where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def claimed(jobs: list, counter, go_on=lambda: True, claims=None, slot: int = 0):
    """The items of ``jobs`` that this process claims, in order, from the shared ``counter`` (a
    ``multiprocessing.Value``): each item goes to exactly one of the processes sharing it. Stops
    when the jobs run out or ``go_on()`` turns false. Each claim is counted in ``claims[slot]``
    (a shared array), under the counter's lock, when given."""
    while go_on():
        with counter.get_lock():
            i = counter.value
            if i >= len(jobs):
                return
            counter.value = i + 1
            if claims is not None:
                claims[slot] += 1
        yield jobs[i]


class SharedBar:
    """The run's progress bar, fed by this process's loop and by the workers' listener threads:
    photos done add up, and the faces and problems shown are the sums over the processes.
    :meth:`part` gives one process's view, with the two calls :func:`run_photos` makes."""

    def __init__(self, bar):
        self.bar, self.lock, self.counts = bar, threading.Lock(), {}

    def update(self, n: int = 1) -> None:
        with self.lock:
            self.bar.update(n)

    def counted(self, key, faces: int, failed: int) -> None:
        with self.lock:
            self.counts[key] = (faces, failed)
            self.bar.set_postfix(faces=sum(c[0] for c in self.counts.values()),
                                 failed=sum(c[1] for c in self.counts.values()), refresh=False)

    def part(self, key) -> "_Part":
        return _Part(self.update, lambda faces, failed: self.counted(key, faces, failed))


class _Part:
    """One process's view of a progress bar: ``update(n)`` and ``set_postfix(faces=, failed=)``."""

    def __init__(self, update, counted):
        self.update, self._counted = update, counted

    def set_postfix(self, faces: int = 0, failed: int = 0, **_) -> None:
        self._counted(faces, failed)


def _ticks(conn) -> _Part:
    """A worker's progress bar: sends each photo done, and its counts, to the run's process."""
    return _Part(lambda n=1: conn.send(("tick", n)), lambda faces, failed: conn.send(("counts", (faces, failed))))


def _worker_main(recipe: dict, conn, counter, claims, slot: int) -> None:
    """A worker process: make the Flattener, say ready, then do runs until told to close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # between runs; a run turns it back on
    try:
        from .pipeline import Flattener

        torch.set_num_threads(1)                        # the other processes of the run hold the other cores

        flattener = Flattener(**recipe)
        _warm_up(flattener)
        conn.send(("ready", os.getpid()))
    except BaseException as e:  # noqa: BLE001 -- any failure to start is the pool's error to report
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    parent = multiprocessing.parent_process()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):                    # the run's process is gone
            return
        if msg[0] != "run":
            return
        try:
            conn.send(("report", _worker_run(flattener, msg[1], (counter, claims, slot), conn, parent)))
        except (EOFError, OSError):                    # BrokenPipeError among them: the run's process is gone
            return
        except BaseException:  # noqa: BLE001 -- a bug in a worker must reach the run, not vanish
            conn.send(("error", traceback.format_exc()))


def _warm_up(flattener) -> None:
    """Flatten the first sample photo's main face once, in memory: what the first photo of a run
    would otherwise pay for (the landmark map read, the networks' first passes)."""
    from ..photos import read_photo
    from ..photos.samples import sample_photo_paths

    photo = read_photo(sample_photo_paths()[0])
    faces = [f for f in flattener.detect(photo) if not f.tiny][:1]
    flattener.flatten_many([(photo.image, f) for f in faces])


def _worker_run(flattener, job: dict, shared: tuple, conn, parent) -> RunReport:
    rep = RunReport()
    work = Batches(flattener, job["out_dir"], rep, overwrite=job["overwrite"], max_faces=job["max_faces"],
                   mesh=job["mesh"], read_options=job["read_options"])
    counter, claims, slot = shared
    todo = claimed(job["jobs"], counter, go_on=lambda: parent is None or parent.is_alive(), claims=claims, slot=slot)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with signals_interrupt():
            run_photos(todo, work, rep, batch_size(job["chunk"], flattener), _ticks(conn))
    except KeyboardInterrupt:
        rep.interrupted = "Ctrl-C"
    finally:
        with signals_ignored():
            work.close(cancel=rep.interrupted is not None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return rep


#: Said when a worker fails to start: the usual cause when flatten_paths runs from a script.
_START_HINT = ("; a script that asks for more than one process must keep its own code under "
               "if __name__ == '__main__': each worker imports it again")


def _receive(process, conn, timeout: float | None = None) -> tuple:
    """The next message from a worker, or ``("died", why)`` when it has ended (its pipe may stay
    open in other processes, so its end is watched too), or ``("error", ...)`` on a timeout."""
    from multiprocessing.connection import wait

    if not wait([conn, process.sentinel], timeout):
        return "error", f"no word from it within {timeout:.0f} s"
    try:
        if conn.poll():
            return conn.recv()
    except (EOFError, OSError):
        pass
    process.join(timeout=5)
    code = process.exitcode
    return "died", f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"


class WorkerPool:
    """``processes`` worker processes, each holding a Flattener made from ``flattener``'s recipe,
    ready when the constructor returns (``wait=False``: still starting; a run sent to them starts
    when they are ready, and one that fails to start is a note of that run). Use as a context
    manager, or :meth:`close` it.

    Raises:
        ValueError: ``flattener`` cannot be remade in another process (a detector or localiser
            was passed in by hand).
        RuntimeError: a worker failed to start (its error is in the message).
    """

    def __init__(self, flattener, processes: int = 1, *, wait: bool = True):
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        recipe = flattener.recipe()
        ctx = multiprocessing.get_context("spawn")      # fork would copy the detector's running threads
        self.counter = ctx.Value("q", 0)
        self.claims = ctx.Array("q", processes, lock=False)     # photos each worker took this run
        self.workers = []                               # (process, connection)
        self.ready = [False] * processes
        try:
            for slot in range(processes):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=_worker_main, args=(recipe, theirs, self.counter, self.claims, slot),
                                daemon=True, name="stn3dmm-flatten-worker")
                with signals_deferred():        # cut mid-way, the worker would read half its data
                    p.start()
                    self.workers.append((p, mine))      # before a held-back signal is raised: closed with the rest
                theirs.close()
            for i, (p, conn) in enumerate(self.workers if wait else ()):
                kind, what = _receive(p, conn, START_TIMEOUT)
                if kind != "ready":
                    raise RuntimeError(f"a flatten worker failed to start: {what}{_START_HINT}")
                self.ready[i] = True
        except BaseException:
            self.close()
            raise

    @property
    def processes(self) -> int:
        return len(self.workers)

    def run(self, jobs: list, out_dir: Path, *, bar: SharedBar, rep: RunReport, **options) -> "_Run":
        """Start the workers on ``jobs`` (from the shared counter, reset here); return the run,
        whose :meth:`_Run.finish` waits for their reports and adds them to ``rep``."""
        self.counter.value = 0
        self.claims[:] = [0] * self.processes
        job = dict(jobs=jobs, out_dir=Path(out_dir), **options)
        return _Run(self, job, bar, rep)

    def close(self) -> None:
        """Close the workers: a ready one is told to end, one still starting (which holds no photo)
        is killed, so that it does not go on starting after this process has gone."""
        for (p, conn), ready in zip(self.workers, self.ready):
            try:
                conn.send(("close", None)) if ready else p.kill()
            except OSError:
                pass
            conn.close()
        for p, _ in self.workers:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
        self.workers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Run:
    """One run's workers: a listener thread per worker counts its photos on the bar and keeps its report."""

    def __init__(self, pool: WorkerPool, job: dict, bar, rep: RunReport):
        self.pool, self.bar, self.rep = pool, bar, rep
        self.results = [None] * pool.processes
        self.threads, self.dismissed = [], set()
        for i, (p, conn) in enumerate(pool.workers):
            try:
                conn.send(("run", job))
            except OSError:                             # it has died since the last run
                p.join(timeout=5)
                self.results[i] = ("died", f"exit code {p.exitcode}")       # (or a signal's, negative)
                continue
            t = threading.Thread(target=self._listen, args=(i, conn), daemon=True)
            t.start()
            self.threads.append(t)

    def _listen(self, i: int, conn) -> None:
        while True:
            kind, what = _receive(self.pool.workers[i][0], conn)
            if kind == "ready":
                self.pool.ready[i] = True
            elif kind == "tick":
                self.bar.update(what)
            elif kind == "counts":
                self.bar.counted(i, *what)
            else:
                self.results[i] = (kind, what)
                return

    def interrupt(self) -> None:
        """Have every worker stop after the photos it is writing (SIGINT, as Ctrl-C would; one still
        starting finds no photo left to take)."""
        with self.pool.counter.get_lock():
            self.pool.counter.value = 2 ** 62
        for p, _ in self.pool.workers:
            if p.is_alive():
                os.kill(p.pid, signal.SIGINT)

    def dismiss_idle(self) -> None:
        """Kill the workers still starting that have taken no photo, once no photo is left to take
        (this process has claimed the rest, or the run was interrupted): they can take none now,
        so nothing is lost, and the run need not wait for them to start. Only for a pool made for
        this run (a killed worker is gone for later runs)."""
        with self.pool.counter.get_lock():
            self.pool.counter.value = 2 ** 62
            idle = [i for i in range(self.pool.processes) if not self.pool.ready[i] and not self.pool.claims[i]]
        for i in idle:
            self.dismissed.add(i)
            self.pool.workers[i][0].kill()

    def wait(self) -> None:
        """Wait for every worker's report."""
        for t in self.threads:
            t.join()

    def finish(self) -> None:
        """Wait for every worker's report and add it to the run's (once)."""
        self.wait()
        results, self.results = self.results, []
        for i, ((p, _), (kind, what)) in enumerate(zip(self.pool.workers, results)):
            if i in self.dismissed and kind != "report":
                continue
            if kind == "report":
                _merge(self.rep, what)
            elif not self.pool.ready[i]:
                self.rep.notes.append(f"a worker process failed to start ({what.strip().splitlines()[-1]}"
                                      f"{_START_HINT}); the other processes did its share")
            elif kind == "died":
                self.rep.fail(f"worker process {p.pid}", f"worker died: {what}; any photos it held are "
                                                         f"unfinished, run the same command again to finish them")
            else:
                self.rep.fail(f"worker process {p.pid}", f"worker error: {what.strip().splitlines()[-1]}")


def _merge(rep: RunReport, other: RunReport) -> None:
    for name in ("succeeded", "faces", "already_done", "redone"):
        setattr(rep, name, getattr(rep, name) + getattr(other, name))
    rep.by_others += other.succeeded
    rep.failures += other.failures
    for k, v in other.seconds.items():
        rep.seconds[k] += v


__all__ = ["WorkerPool", "SharedBar", "auto_workers", "available_memory", "claimed", "MIN_PHOTOS_PER_WORKER"]
