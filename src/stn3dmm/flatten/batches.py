"""One process's share of a run of ``stn3dmm flatten``: its photos read, detected, fitted and written.

Owns :class:`RunReport` (what a run did) and the loop over planned photos that each process of a
run drives (:func:`run_photos`): photos read and their faces detected on a reader thread, a few
photos ahead; the faces of a few photos fitted and flattened in one batch
(:class:`~stn3dmm.flatten.pipeline.Flattener`); their files written by a writer thread
(:mod:`stn3dmm.flatten.outputs`). Reading and detection, fitting and writing overlap.
The batch runner (:mod:`stn3dmm.flatten.runner`) lists and plans the photos and runs this loop in
its own process and, where asked, in worker processes (:mod:`stn3dmm.flatten.workers`).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..core.defaults import IMAGE_SIZE
from ..photos import PhotoError, read_photo
from .outputs import done_record, remove_face_files, write_photo_outputs
from .pipeline import Flattener


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
    processes: int = 1                                # processes that shared the photos (flatten.workers)
    by_others: int = 0                                # photos the other processes flattened
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
        shared = (f", in {self.processes} processes (the other{'s' * (self.processes > 2)} did {self.by_others})"
                  if self.processes > 1 else "")
        lines = [f"{self.succeeded} of {self.photos} photos flattened ({self.faces} faces) in {self.wall:.1f} s{rate}"
                 f"{shared}"]
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


class Batches:
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


def batch_size(chunk: int, flattener: Flattener) -> int:
    """Photos per batch: ``chunk`` at the default crop and texture sides, fewer for larger
    ones, whose memory per face grows with the square of the side."""
    size, res = getattr(flattener, "size", IMAGE_SIZE), getattr(flattener, "res", 112) or 112
    growth = max(1.0, size / IMAGE_SIZE, res / 224) ** 2
    return max(1, int(chunk / growth))


def run_photos(todo, work: Batches, rep: RunReport, chunk: int, bar) -> None:
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


__all__ = ["RunReport", "Batches", "batch_size", "run_photos"]
