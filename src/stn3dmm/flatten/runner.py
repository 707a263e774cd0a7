"""The batch runner behind ``stn3dmm flatten``: many photos in, the files of every face out.

Owns :func:`flatten_paths`. It lists the photos (files and folder trees,
:func:`~stn3dmm.photos.walk_photos`; our own earlier outputs among them are ignored, files that
are not images by their extension are counted and skipped, entries that cannot be photos are
reported), plans their outputs, and runs the loop of :mod:`stn3dmm.flatten.batches` over them
(reading and detection, fitting and writing overlap on threads), in this process and, where
asked or where the run is long (``workers``), in worker processes that share the photos
(:mod:`stn3dmm.flatten.workers`). The :class:`~stn3dmm.flatten.batches.RunReport` says what it did.

Outputs mirror the input tree: a photo ``DIR/Name/x.jpg`` of the folder ``DIR`` gets its files
in ``OUT/Name/``; a photo named itself, or directly in ``DIR``, in ``OUT``. Each face's files
are named ``<photo stem>_face<k>`` (k = 0 for the main face, see photos.detect.prominence; names made safe and unique
within their folder, see :mod:`stn3dmm.flatten.outputs`).

A run holds its output folder (:func:`~stn3dmm.flatten.state.claim_output`: a second run into
it is refused) and can be rerun like ``make``: a photo whose ``<stem>_face0.json`` exists is
already done and is skipped without being read; a photo without it is done (again), its
leftover files removed first; temporary files of a killed run are removed at the start.
``overwrite`` redoes every photo. Ctrl-C or SIGTERM ends the run after the photos being
written; the next run finishes the rest. A bad photo, or a photo whose files cannot be
written, is reported and skipped; the run goes on.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

from ..core.threads import cpu_threads
from ..photos import NOT_AN_IMAGE, walk_photos
from .batches import Batches, RunReport, batch_size, run_photos
from .outputs import (is_flatten_output, is_output_name, output_folders, output_names, remove_stale_temporaries,
                      unique_stems)
from .pipeline import Flattener, check_options
from .state import Terminated, claim_output, signals_ignored, signals_interrupt
from .workers import SharedBar, WorkerPool, auto_workers, claimed


class NothingToFlatten(ValueError):
    """The inputs hold no photo at all."""


def _list_photos(inputs, rep: RunReport, out_dir: Path) -> list:
    """The :class:`~stn3dmm.photos.Listed` photos among ``inputs``: our own outputs are counted
    in ``rep`` and left out (those with their ``.json`` beside them anywhere, and any of our
    names inside ``out_dir``), files that are not images by extension are counted, other
    entries that cannot be photos are ``rep``'s failures. Input folders without a photo are
    noted."""
    out_real = os.path.realpath(out_dir)

    def ours(p: Path) -> bool:
        if is_flatten_output(p):
            return True
        return is_output_name(p.name) and (os.path.realpath(p.parent) + os.sep).startswith(out_real + os.sep)

    def skip(p, why):
        if ours(Path(p)):
            rep.skipped_outputs += 1
        elif why == NOT_AN_IMAGE:
            rep.skipped_files += 1
        else:
            rep.fail(p, f"not a photo: {why}")

    listed = []
    for item in inputs:
        before = rep.skipped_files
        found = []
        for x in walk_photos([item], on_skip=skip, exclude=[out_dir]):
            if ours(x.path):
                rep.skipped_outputs += 1
            else:
                found.append(x)
        if not found and os.path.isdir(item):
            others = rep.skipped_files - before
            rep.notes.append(f"{item}: no photos in this folder or its sub-folders"
                             + (f" ({others} non-image file(s))" if others else ""))
        listed += found
    return listed


def _plan(listed) -> list:
    """``(path, output folder relative to the output root, stem)`` per listed photo: folders
    mirrored and made safe, stems made safe and unique within each output folder."""
    folders = output_folders([x.folder for x in listed])
    groups = defaultdict(list)
    for i, x in enumerate(listed):
        groups[folders[x.folder]].append(i)
    stems = [""] * len(listed)
    for members in groups.values():
        for i, stem in zip(members, unique_stems([listed[i].path for i in members])):
            stems[i] = stem
    return [(x.path, Path(*folders[x.folder]), stems[i]) for i, x in enumerate(listed)]


def _to_do(jobs, overwrite: bool) -> int:
    """How many of the planned photos have no record of being done (all, with ``overwrite``)."""
    if overwrite:
        return len(jobs)
    return sum(not (folder / output_names(stem, 0)["json"]).exists() for _, folder, stem in jobs)


def _run_shared(jobs, work: Batches, rep: RunReport, bar, *, extra: int, pool, chunk: int, options: dict) -> None:
    """Run ``jobs`` in this process and, when there is a ``pool`` or ``extra`` > 0 (then a new pool,
    closed after), in worker processes that take photos from the same counter. Ctrl-C or SIGTERM
    stops them all after the photos they are writing; their reports are added to ``rep``."""
    flattener, shared, own, others = work.flattener, SharedBar(bar), None, None
    try:
        with signals_interrupt():
            if extra:
                try:
                    pool = own = WorkerPool(flattener, extra, wait=False)   # they join when ready
                    bar.set_description(f"flatten ({1 + extra} processes)")
                except (OSError, RuntimeError) as e:                          # e.g. no room for a process
                    rep.notes.append(f"could not start worker processes ({e}): this process did every photo")
            if pool is not None:
                rep.processes = 1 + pool.processes
                others = pool.run(jobs, work.out_dir, bar=shared, rep=rep, chunk=chunk, **options)
                jobs = claimed(jobs, pool.counter)
            with cpu_threads(1 if pool is not None else None, getattr(flattener, "device", "cpu")):  # cores shared
                run_photos(jobs, work, rep, batch_size(chunk, flattener), shared.part("main"))
            if others is not None:
                if own is not None:
                    others.dismiss_idle()      # no photo left: a worker still starting is not waited for
                others.wait()
    except BaseException as e:         # Ctrl-C, SIGTERM or a failure: the workers stop too
        if others is not None:
            others.interrupt()
            if own is not None:
                others.dismiss_idle()
        if not isinstance(e, KeyboardInterrupt):
            raise
        rep.interrupted = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C"
    finally:
        with signals_ignored():
            work.close(cancel=rep.interrupted is not None)
            if others is not None:
                others.finish()
            if own is not None:
                own.close()


def flatten_paths(inputs, out_dir, flattener: Flattener, *, overwrite=False, max_faces=None, mesh=True,
                  progress=True, log=print, chunk: int = 8, read_options: dict | None = None,
                  workers: int | None = 1, pool: WorkerPool | None = None) -> RunReport:
    """Flatten every face of every photo in ``inputs`` (files and folder trees) into ``out_dir``.

    Photos are read and their faces detected on a reader thread, up to ``chunk`` photos ahead;
    the faces of up to ``chunk`` photos are fitted and flattened in one batch, and their files
    written by a writer thread while the next photos are fitted. A photo counts as flattened once
    all its files are written; a write error is that photo's failure (its partial files are removed).
    See the module docstring for the output tree, reruns and interruptions.

    Args:
        max_faces: at most this many faces per photo, main face first (None: all; must be >= 1).
        read_options: keyword arguments for :func:`~stn3dmm.photos.read_photo` (``max_side``,
            ``max_pixels``).
        workers: processes for the run, this one included (:mod:`stn3dmm.flatten.workers`; the
            others are started for the run and closed after it); None: :func:`auto_workers` of
            the photos not done yet (one more per 200, up to the cores).
        pool: a started :class:`WorkerPool` to use instead (kept open); ``workers`` is then ignored.

    Raises:
        NothingToFlatten: the inputs hold no photo (nothing is created).
        OutputInUse: another run holds ``out_dir``.
        ValueError: ``workers`` is below 1, or above 1 with a detector or localiser passed in by hand.
    """
    from tqdm import tqdm

    check_options(max_faces=max_faces)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    rep = RunReport()
    todo = _plan(_list_photos(inputs, rep, out_dir))
    if not todo:
        problems = "; ".join(f"{p}: {r}" for p, r in rep.failures[:5])
        raise NothingToFlatten("nothing to flatten: " + "; ".join(rep.notes + ([problems] if problems else []) or
                                                                 ["no photos given"]))
    rep.photos = len(todo)
    jobs = [(p, out_dir / f, s) for p, f, s in todo]
    device = getattr(flattener, "device", "cpu")
    extra = 0 if pool is not None else (workers or auto_workers(_to_do(jobs, overwrite), device)) - 1
    if extra:
        flattener.recipe()                 # a flattener that cannot be remade is refused before any work
    t_start = time.perf_counter()
    with claim_output(out_dir, log=log):
        rep.stale_temporaries = remove_stale_temporaries(out_dir)
        work = Batches(flattener, out_dir, rep, overwrite=overwrite, max_faces=max_faces, mesh=mesh,
                       read_options=read_options)
        # a manual bar: iterating a tqdm closes it when the photos run out, before the last
        # batch's faces are counted, so its final line would undercount
        bar = tqdm(total=len(todo), desc="flatten", unit="photo", disable=not progress, dynamic_ncols=True)
        try:
            _run_shared(jobs, work, rep, bar, extra=extra, pool=pool, chunk=chunk,
                        options=dict(overwrite=overwrite, max_faces=max_faces, mesh=mesh, read_options=read_options))
        finally:
            bar.close()
    rep.wall = time.perf_counter() - t_start
    return rep


__all__ = ["RunReport", "NothingToFlatten", "flatten_paths"]
