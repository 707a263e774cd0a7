"""The batch runner behind ``stn3dmm flatten``: many photos in, the files of every face out.

Owns :func:`flatten_paths` and its :class:`RunReport`. It lists the photos (files and folder
trees, :func:`~stn3dmm.photos.walk_photos`; our own earlier outputs among them are ignored,
files that are not images by their extension are counted and skipped, entries that cannot be
photos are reported), reads them and detects their faces on a reader thread, a few photos
ahead, has the :class:`~stn3dmm.flatten.pipeline.Flattener` fit and flatten the faces of a few
photos at a time in one batch, and writes their files (:mod:`stn3dmm.flatten.outputs`) on a
writer thread: reading and detection, fitting and writing overlap.

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
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..core.defaults import IMAGE_SIZE
from ..photos import NOT_AN_IMAGE, PhotoError, read_photo, walk_photos
from .outputs import (done_record, is_flatten_output, is_output_name, output_folders, remove_face_files,
                      remove_stale_temporaries, unique_stems, write_photo_outputs)
from .pipeline import Flattener, check_options
from .state import Terminated, claim_output, signals_ignored, signals_interrupt


class NothingToFlatten(ValueError):
    """The inputs hold no photo at all."""


@dataclass
class RunReport:
    """What a batch did: counts, the problems by file, and where the time went."""

    photos: int = 0
    succeeded: int = 0
    faces: int = 0
    failures: list = field(default_factory=list)     # (path, reason)
    already_done: int = 0                             # photos complete from an earlier run, skipped
    redone: int = 0                                   # photos an earlier run left unfinished, done again
    skipped_outputs: int = 0                          # our own earlier outputs found among the inputs
    skipped_files: int = 0                            # files in the folders that are not images (extension)
    stale_temporaries: int = 0                        # temporary files of a killed run, removed
    notes: list = field(default_factory=list)
    interrupted: str | None = None                    # "Ctrl-C" or "SIGTERM" when the run was stopped
    seconds: dict = field(default_factory=lambda: defaultdict(float))
    wall: float = 0.0

    @property
    def exit_code(self) -> int:
        """130 (Ctrl-C) or 143 (SIGTERM) when interrupted; else 0 when any photo is done (now
        or by an earlier run), 1 when none is."""
        if self.interrupted:
            return 143 if self.interrupted == "SIGTERM" else 130
        return 0 if self.succeeded or self.already_done else 1

    def summary(self) -> str:
        worked = self.photos - self.already_done
        rate = f", {worked / self.wall:.1f} photos/s" if worked and self.wall > 0 else ""
        lines = [f"{self.succeeded} of {self.photos} photos flattened ({self.faces} faces) in {self.wall:.1f} s{rate}"]
        for n, text in ((self.already_done, "already done: {} photo(s), kept (their outputs are complete; "
                                            "--overwrite redoes them)"),
                        (self.redone, "finished {} photo(s) that an earlier run left incomplete"),
                        (self.stale_temporaries, "removed {} temporary file(s) left by an interrupted run"),
                        (self.skipped_files, "skipped {} non-image file(s)"),
                        (self.skipped_outputs, "ignored {} file(s) that are outputs of stn3dmm flatten")):
            if n:
                lines.append(text.format(n))
        lines += self.notes
        if self.seconds:
            tot = sum(self.seconds.values())
            lines.append("time: " + ", ".join(f"{k} {v:.1f} s ({100 * v / max(tot, 1e-9):.0f}%)"
                                              for k, v in self.seconds.items()))
        if self.failures:
            lines.append(f"{len(self.failures)} problem(s):")
            by = Counter(r.split(":")[0] for _, r in self.failures)
            lines += [f"  {p}: {r}" for p, r in self.failures]
            lines.append("  by kind: " + ", ".join(f"{k} x{v}" for k, v in by.items()))
        if self.interrupted:
            lines.append(f"interrupted ({self.interrupted}): the photos written are complete; run the same "
                         f"command again to do the rest")
        return "\n".join(lines)

    def fail(self, path, reason: str) -> None:
        self.failures.append((str(path), reason))


def _no_usable_face(faces, detector, photo) -> str:
    """The reason a photo gave nothing to fit; when nothing was detected, a tiled search for
    faces below ``detector.min_face`` tells "too small" from "none"."""
    min_face = detector.min_face
    tiny = [f.bbox for f in faces if f.tiny]
    if not faces and hasattr(detector, "small_faces"):
        tiny = [b for b, _ in detector.small_faces(photo)]
    if tiny:
        side = max(min(b[2] - b[0], b[3] - b[1]) for b in tiny)
        return f"face too small ({side:.0f} px < {min_face:.0f} px)"
    if not faces:
        return "no face found"
    return f"no landmarks: the face mesh found none on the {len(faces)} face(s) detected"


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


class _Batches:
    """One run's work after listing: a photo's faces found, their fitting in batches, their
    files written by one background thread, and the outcomes counted into the report."""

    def __init__(self, flattener: Flattener, out_dir: Path, rep: RunReport, *, overwrite, max_faces, mesh,
                 read_options):
        self.flattener, self.out_dir, self.rep = flattener, out_dir, rep
        self.overwrite, self.max_faces, self.mesh = overwrite, max_faces, mesh
        self.read_options = read_options or {}
        self.writes = []
        self.writer = ThreadPoolExecutor(max_workers=1)

    def already_done(self, path: Path, folder: Path, stem: str) -> bool:
        """True when an earlier run finished this photo (counted); a clash with another photo's
        finished outputs is a failure (noted, True); leftovers of an unfinished run are removed."""
        if self.overwrite:
            return False
        record = done_record(folder, stem)
        if record is None:
            if remove_face_files(folder, stem):
                self.rep.redone += 1
            return False
        if record and Path(record).name != path.name:
            self.rep.fail(path, f"outputs exist: {folder / stem}_face0.json belongs to {record} "
                                f"(use --overwrite, or another --out)")
        else:
            self.rep.already_done += 1
        return True

    def read_and_detect(self, path):
        """``(photo, faces to flatten, read s, detect s)``, or ``(None, the failure's reason, read s,
        detect s)``: unreadable, a detector error or no usable face. It runs on the reader thread,
        ahead of the fitting, and is the only caller of the detector (whose graphs must not run
        on two threads at once); it touches nothing shared."""
        t0 = time.perf_counter()
        try:
            photo = read_photo(path, **self.read_options)
        except PhotoError as e:
            return None, f"unreadable: {e.problem}", 0.0, 0.0
        t1 = time.perf_counter()
        try:
            faces = self.flattener.detect(photo)
            usable = [f for f in faces if not f.tiny and (f.points is not None or not self.flattener.needs_mesh)]
            if not usable:
                why = _no_usable_face(faces, self.flattener.detector, photo)
                return None, why, t1 - t0, time.perf_counter() - t1
        except Exception as e:  # a detector failure on one photo must not stop the batch
            return None, f"detector error: {e}", 0.0, 0.0
        usable = usable[:self.max_faces] if self.max_faces else usable
        return photo, usable, t1 - t0, time.perf_counter() - t1

    def faces_of(self, path, folder, stem, found):
        """``(path, folder, stem, photo, faces to flatten)`` from :meth:`read_and_detect`'s
        ``found``, its times counted, or None when the photo is a failure (noted)."""
        photo, faces, t_read, t_detect = found
        self.rep.seconds["read"] += t_read
        self.rep.seconds["detect"] += t_detect
        if photo is None:
            self.rep.fail(path, faces)
            return None
        return path, folder, stem, photo, faces

    def process(self, pending):
        """Fit and flatten the faces of ``pending`` photos in one batch and queue their files;
        when the batch fails, each photo again alone, so that only the failing one is lost."""
        items = [(ph.image, f) for *_, ph, faces in pending for f in faces]
        try:
            results = self.flattener.flatten_many(items)
        except (ValueError, RuntimeError) as e:
            if len(pending) == 1:
                self.rep.fail(pending[0][0], f"fit failed: {e}")
                return
            for one in pending:            # isolate the photo that failed
                self.process([one])
            return
        batch, k = [], 0
        for path, folder, stem, photo, faces in pending:
            batch.append((path, folder, stem, photo, results[k:k + len(faces)]))
            k += len(faces)
        for r in results:
            for name, v in r.seconds.items():
                self.rep.seconds[name] += v
        self.writes.append(self.writer.submit(self._write_all, batch))

    def _write_all(self, batch):
        """[(path, n faces, error or None)], seconds: each photo's faces written or none of them."""
        t, done = time.perf_counter(), []
        for path, folder, stem, photo, results in batch:
            try:
                if self.overwrite:         # no earlier file of this photo may pass for a new one
                    remove_face_files(folder, stem)
                write_photo_outputs(results, folder, stem, self.flattener.model, photo, mesh=self.mesh)
                done.append((path, len(results), None))
            except Exception as e:  # one photo's write error must not stop the batch
                done.append((path, 0, f"write failed: {type(e).__name__}: {e}"))
        return done, time.perf_counter() - t

    def collect(self, wait: bool) -> None:
        """Count the finished writes (all of them, waiting, when ``wait``) into the report."""
        while self.writes and (wait or self.writes[0].done()):
            future = self.writes.pop(0)
            if future.cancelled():
                continue
            done, dt = future.result()
            self.rep.seconds["write"] += dt
            for path, n, err in done:
                if err is None:
                    self.rep.succeeded += 1
                    self.rep.faces += n
                else:
                    self.rep.fail(path, err)

    def close(self, cancel: bool = False) -> None:
        """Let the writer finish (only the batch it is writing, when ``cancel``) and count it."""
        self.writer.shutdown(wait=True, cancel_futures=cancel)
        self.collect(wait=True)


def _batch_size(chunk: int, flattener: Flattener) -> int:
    """Photos per batch: ``chunk`` at the default crop and texture sides, fewer for larger
    ones, whose memory per face grows with the square of the side."""
    size, res = getattr(flattener, "size", IMAGE_SIZE), getattr(flattener, "res", 112) or 112
    growth = max(1.0, size / IMAGE_SIZE, res / 224) ** 2
    return max(1, int(chunk / growth))


def _run(todo, work: _Batches, rep: RunReport, chunk: int, bar) -> None:
    """The loop over the planned photos (interrupted by KeyboardInterrupt or Terminated). Up to
    ``chunk`` photos are read and their faces detected ahead, on a reader thread, while the
    faces of the photos before them are fitted and flattened (the detector's graphs leave the
    interpreter free while they run). A batch is up to ``chunk`` photos: fewer where the next
    photo is not detected yet, so that the fitting does not sit idle waiting for the reader (at
    the start of a run, the first photo is fitted while the next are being read)."""
    reader, ahead, todo = ThreadPoolExecutor(max_workers=1), deque(), iter(todo)

    def read_ahead():
        while len(ahead) < chunk:
            job = next(todo, None)
            if job is None:
                return
            if work.already_done(*job):
                bar.update(1)
            else:
                ahead.append((job, reader.submit(work.read_and_detect, job[0])))

    pending = []
    try:
        read_ahead()
        while ahead:
            if pending and not ahead[0][1].done():
                work.process(pending)
                pending = []
            (path, folder, stem), found = ahead.popleft()
            item = work.faces_of(path, folder, stem, found.result())
            read_ahead()
            bar.update(1)
            if item is not None:
                pending.append(item)
            if len(pending) >= chunk:
                work.process(pending)
                pending = []
            work.collect(wait=False)
            bar.set_postfix(faces=rep.faces, failed=len(rep.failures), refresh=False)
        if pending:
            work.process(pending)
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
    work.collect(wait=True)
    bar.set_postfix(faces=rep.faces, failed=len(rep.failures))


def flatten_paths(inputs, out_dir, flattener: Flattener, *, overwrite=False, max_faces=None, mesh=True,
                  progress=True, log=print, chunk: int = 8, read_options: dict | None = None) -> RunReport:
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

    Raises:
        NothingToFlatten: the inputs hold no photo (nothing is created).
        OutputInUse: another run holds ``out_dir``.
    """
    from tqdm import tqdm

    check_options(max_faces=max_faces)
    out_dir = Path(out_dir)
    rep = RunReport()
    todo = _plan(_list_photos(inputs, rep, out_dir))
    if not todo:
        problems = "; ".join(f"{p}: {r}" for p, r in rep.failures[:5])
        raise NothingToFlatten("nothing to flatten: " + "; ".join(rep.notes + ([problems] if problems else []) or
                                                                 ["no photos given"]))
    rep.photos = len(todo)
    t_start = time.perf_counter()
    with claim_output(out_dir, log=log):
        rep.stale_temporaries = remove_stale_temporaries(out_dir)
        work = _Batches(flattener, out_dir, rep, overwrite=overwrite, max_faces=max_faces, mesh=mesh,
                        read_options=read_options)
        # a manual bar: iterating a tqdm closes it when the photos run out, before the last
        # batch's faces are counted, so its final line would undercount
        bar = tqdm(total=len(todo), desc="flatten", unit="photo", disable=not progress, dynamic_ncols=True)
        try:
            with signals_interrupt():
                _run([(p, out_dir / f, s) for p, f, s in todo], work, rep, _batch_size(chunk, flattener), bar)
        except KeyboardInterrupt as e:
            rep.interrupted = "SIGTERM" if isinstance(e, Terminated) else "Ctrl-C"
        finally:
            with signals_ignored():
                bar.close()
                work.close(cancel=rep.interrupted is not None)
    rep.wall = time.perf_counter() - t_start
    return rep


__all__ = ["RunReport", "NothingToFlatten", "flatten_paths"]
