"""The batch runner behind ``stn3dmm flatten``: many photos in, the files of every face out.

Owns :func:`flatten_paths` and its :class:`RunReport`. It lists the photos (files and folders;
our own earlier outputs among them are ignored, other non-photos reported), reads them and
detects their faces one by one, has the :class:`~stn3dmm.flatten.pipeline.Flattener` fit and
flatten the faces of a few photos at a time in one batch, and writes their files
(:mod:`stn3dmm.flatten.outputs`) on a background thread while the next photos are read. Each
face's files are named ``<photo stem>_face<k>`` (k = 0 for the largest face; photos whose stems
clash get ``-2``, ``-3``, ... see :func:`~stn3dmm.flatten.outputs.unique_stems`). Every file is
written atomically; existing outputs are never replaced without ``overwrite``. A bad photo, or
a photo whose files cannot be written, is reported and skipped; the run goes on.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..photos import PhotoError, iter_photos, read_photo
from .outputs import is_flatten_output, output_names, unique_stems, write_outputs
from .pipeline import Flattener, check_options


@dataclass
class RunReport:
    """What a batch did: counts, the problems by file, and where the time went."""

    photos: int = 0
    succeeded: int = 0
    faces: int = 0
    failures: list = field(default_factory=list)     # (path, reason)
    skipped_outputs: int = 0                          # our own earlier outputs found among the inputs
    seconds: dict = field(default_factory=lambda: defaultdict(float))
    wall: float = 0.0

    def summary(self) -> str:
        lines = [f"{self.succeeded} of {self.photos} photos flattened ({self.faces} faces) in {self.wall:.1f} s"]
        if self.skipped_outputs:
            lines.append(f"ignored {self.skipped_outputs} file(s) that are outputs of stn3dmm flatten")
        if self.seconds:
            tot = sum(self.seconds.values())
            lines.append("time: " + ", ".join(f"{k} {v:.1f} s ({100 * v / max(tot, 1e-9):.0f}%)"
                                              for k, v in self.seconds.items()))
        if self.failures:
            lines.append(f"{len(self.failures)} problem(s):")
            by = Counter(r.split(":")[0] for _, r in self.failures)
            lines += [f"  {p}: {r}" for p, r in self.failures]
            lines.append("  by kind: " + ", ".join(f"{k} x{v}" for k, v in by.items()))
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


def _list_photos(inputs, rep: RunReport) -> list:
    """The photos among ``inputs``: our own earlier outputs are counted in ``rep`` and left out,
    other files that are not photos are ``rep``'s failures."""
    def skip(p, why):
        if is_flatten_output(p):
            rep.skipped_outputs += 1
        else:
            rep.fail(p, f"not a photo: {why}")

    paths = []
    for p in iter_photos(inputs, on_skip=skip):
        if is_flatten_output(p):
            rep.skipped_outputs += 1
        else:
            paths.append(p)
    return paths


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

    def faces_of(self, path, stem):
        """``(path, stem, photo, faces to flatten)``, or None when the photo is a failure (noted):
        unreadable, a detector error, no usable face, or outputs in the way."""
        t0 = time.perf_counter()
        try:
            photo = read_photo(path, **self.read_options)
        except PhotoError as e:
            self.rep.fail(path, f"unreadable: {e.problem}")
            return None
        t1 = time.perf_counter()
        try:
            faces = self.flattener.detect(photo)
        except Exception as e:  # a detector failure on one photo must not stop the batch
            self.rep.fail(path, f"detector error: {e}")
            return None
        self.rep.seconds["read"] += t1 - t0
        self.rep.seconds["detect"] += time.perf_counter() - t1
        usable = [f for f in faces if not f.tiny and f.points is not None]
        if not usable:
            self.rep.fail(path, _no_usable_face(faces, self.flattener.detector, photo))
            return None
        usable = usable[:self.max_faces] if self.max_faces else usable
        clash = [] if self.overwrite else self._existing_outputs(stem, len(usable))
        if clash:
            self.rep.fail(path, f"outputs exist: {clash[0].name} (use --overwrite)")
            return None
        return path, stem, photo, usable

    def _existing_outputs(self, stem, n_faces) -> list:
        """The output files of the first ``n_faces`` faces of ``stem`` already in the folder."""
        return [self.out_dir / n for k in range(n_faces) for n in output_names(stem, k, self.mesh).values()
                if (self.out_dir / n).exists() or (self.out_dir / n).is_symlink()]

    def process(self, pending):
        """Fit and flatten the faces of ``pending`` photos in one batch and queue their files;
        when the batch fails, each photo again alone, so that only the failing one is lost."""
        items = [(ph.image, f) for _, _, ph, faces in pending for f in faces]
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
        for path, stem, photo, faces in pending:
            batch.append((path, stem, photo, results[k:k + len(faces)]))
            k += len(faces)
        for r in results:
            for name, v in r.seconds.items():
                self.rep.seconds[name] += v
        self.writes.append(self.writer.submit(self._write_all, batch))

    def _write_all(self, batch):
        """[(path, n faces, error or None)], seconds: each photo's faces written or none of them."""
        t, done = time.perf_counter(), []
        for path, stem, photo, results in batch:
            written = []
            try:
                for r in results:
                    written += write_outputs(r, self.out_dir, stem, self.flattener.model, photo, overwrite=True,
                                             mesh=self.mesh)
                done.append((path, len(results), None))
            except Exception as e:  # one photo's write error must not stop the batch
                for p in written:
                    p.unlink(missing_ok=True)
                done.append((path, 0, f"write failed: {type(e).__name__}: {e}"))
        return done, time.perf_counter() - t

    def collect(self, wait: bool) -> None:
        """Count the finished writes (all of them, waiting, when ``wait``) into the report."""
        while self.writes and (wait or self.writes[0].done()):
            done, dt = self.writes.pop(0).result()
            self.rep.seconds["write"] += dt
            for path, n, err in done:
                if err is None:
                    self.rep.succeeded += 1
                    self.rep.faces += n
                else:
                    self.rep.fail(path, err)

    def close(self) -> None:
        self.writer.shutdown(wait=True)


def flatten_paths(inputs, out_dir, flattener: Flattener, *, overwrite=False, max_faces=None, mesh=True,
                  progress=True, log=print, chunk: int = 8, read_options: dict | None = None) -> RunReport:
    """Flatten every face of every photo in ``inputs`` (files and folders) into ``out_dir``.

    Photos are read and their faces detected one by one; the faces of up to ``chunk`` photos
    are then fitted and flattened in one batch, and their files written by a background
    thread while the next photos are read. A photo counts as flattened once all its files
    are written; a write error is that photo's failure (its partial files are removed).

    Args:
        max_faces: at most this many faces per photo, largest first (None: all; must be >= 1).
        read_options: keyword arguments for :func:`~stn3dmm.photos.read_photo` (``max_side``,
            ``max_pixels``).
    """
    from tqdm import tqdm

    check_options(max_faces=max_faces)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = RunReport()
    paths = _list_photos(inputs, rep)
    stems = unique_stems(paths)
    work = _Batches(flattener, out_dir, rep, overwrite=overwrite, max_faces=max_faces, mesh=mesh,
                    read_options=read_options)
    t_start = time.perf_counter()
    pending = []
    # a manual bar: iterating a tqdm closes it when the photos run out, before the last
    # batch's faces are counted, so its final line would undercount
    bar = tqdm(total=len(paths), desc="flatten", unit="photo", disable=not progress, dynamic_ncols=True)
    try:
        for path, stem in zip(paths, stems):
            bar.update(1)
            rep.photos += 1
            item = work.faces_of(path, stem)
            if item is None:
                continue
            pending.append(item)
            if len(pending) >= chunk:
                work.process(pending)
                pending = []
            work.collect(wait=False)
            bar.set_postfix(faces=rep.faces, failed=len(rep.failures), refresh=False)
        if pending:
            work.process(pending)
        work.collect(wait=True)
        bar.set_postfix(faces=rep.faces, failed=len(rep.failures))
    finally:
        bar.close()
        work.close()
    rep.wall = time.perf_counter() - t_start
    return rep


__all__ = ["RunReport", "flatten_paths"]
