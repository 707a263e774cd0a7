"""Benchmark: photos per second of ``stn3dmm flatten`` end to end, and where the time goes.

    python benchmarks/flatten.py [--photos 40] [--threads 2] [--rounds 5]

Makes ``--photos`` one-face photos from the sample photos (rotated, scaled and shifted
copies, 400-1200 px), prepares nothing (the model is loaded before the clock starts; the
landmark map is built during a warm-up photo), and runs the batch runner into a temporary
folder. Rows, all measured in this run:

* baseline "read + detect": reading the photos and face detection alone (mediapipe), the
  floor any pipeline on this detector pays;
* ours, full outputs (texture, completion, overlay, JSON, textured OBJ);
* ours, without the OBJ (``--no-mesh``);
* ours with the original's back-face visibility instead of the depth test;
* ours with 2 torch threads in fitting and sampling (the setting before: on a busy machine
  every one of their many small operations waits for the other thread's core);
* ours with ``--method localiser`` (the detector's box and the trained localiser instead of the
  face mesh and the landmark fit), when the package holds a trained localiser;
* ours with ``--method auto`` (the localiser on every face, the landmark fit on those below its switch);
* ours with ``--method auto`` in two processes (``--workers 2``; on a machine with 2 or more cores): this
  one and a worker process (:mod:`stn3dmm.flatten.workers`), started and warmed up before the clock
  starts as this one is; its start is timed apart and printed under the table.

With ``--rounds N`` (N > 0), the landmark fit and ``--method localiser`` (and ``auto``, and ``auto`` in two
processes on 2 or more cores; with
``--shift S`` also both with test-time shift averaging of S pixels, 0: without it) then run head to head N more
times, in turn, each round into a fresh folder: on a shared machine the load drifts between rows, and the median of the per-round ratios is the figure to quote.

With ``--stages``, first the CPU each stage of ``--method auto`` costs per photo with no other
thread running (read, detect, fit + flatten in batches of 8, write, each timed by the process's CPU
clock, best of 3 rounds), and the rate the sum allows at most on this machine's cores: the ceiling of
any overlap of the stages on threads.

Each row also gives the process's CPU time per photo (all its threads) and the cores it kept busy
(CPU time over wall time): a pipeline near the machine's core count is bound by its CPU work, one
well below it by waiting. Then where the time goes, per photo: read, detect, crop + landmark map + fit, sample (grid and
bilinear sampling, masks, completion), visibility (the depth test), write (the background
writer thread, overlapping the rest). Run ``uptime`` beside it: the machine's load matters.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import measure, process_cpu_s




def make_photos(n, dest):
    from PIL import Image

    from stn3dmm.photos.samples import sample_photo_paths

    srcs = [Image.open(p).convert("RGB") for p in sample_photo_paths()]
    rng = np.random.default_rng(0)
    paths = []
    for k in range(n):
        im = srcs[k % len(srcs)]
        im = im.rotate(float(rng.uniform(-25, 25)), resample=Image.Resampling.BILINEAR, expand=True)
        s = rng.uniform(0.8, 2.0)
        im = im.resize((int(im.width * s), int(im.height * s)), Image.Resampling.BILINEAR)
        p = Path(dest) / f"photo{k:03d}.jpg"
        im.save(p, quality=90)
        paths.append(p)
    return paths


def shipped_localiser() -> bool:
    """Whether the package holds a trained localiser (the ``--method localiser`` row needs one)."""
    from stn3dmm.nets.shipped import WEIGHTS, WEIGHTS_DIR

    return (WEIGHTS_DIR / WEIGHTS).is_file()


def run(label, fn):
    extra, dt, cpu, peak = measure(fn, sample_s=0.01)
    return label, dt, peak, extra, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=0, help="head-to-head rounds of the methods after the table")
    ap.add_argument("--shift", type=int, help="head to head: also the localiser and auto with test-time shift "
                                              "averaging of this many pixels on the last pass (0: without it)")
    ap.add_argument("--photos-from", metavar="DIR", help="the first --photos images of DIR (sorted by name) instead "
                                                         "of turned copies of the sample photos, e.g. the held-out "
                                                         "head renders of large_pose.py, most of them turned")
    ap.add_argument("--stages", action="store_true", help="first the CPU per photo of each stage, one at a time")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from stn3dmm.flatten import Flattener, flatten_paths
    from stn3dmm.model.store import load_model
    from stn3dmm.photos import FaceDetector, detect_faces, read_photo

    model = load_model()
    work = Path(tempfile.mkdtemp(prefix="stn3dmm-bench-flatten-"))
    try:
        photos = photos_from(args.photos_from, args.photos) if args.photos_from else make_photos(args.photos, work)
        warm = Flattener(model)
        flatten_paths([photos[0]], work / "warm", warm, progress=False)   # builds the landmark map
        if args.stages and shipped_localiser():
            stage_costs(photos, work / "stages", Flattener(model, method="auto"))

        def detect_only():
            det = FaceDetector()
            for p in photos:
                detect_faces(read_photo(p), det)

        rows = [run("baseline: read + detect only (mediapipe)", detect_only)]
        reports = {}
        for label, kw, fl_kw in (("ours: full outputs", {}, {}),
                                 ("ours: without the OBJ mesh", {"mesh": False}, {}),
                                 ("ours: back-face visibility", {}, {"visibility": "backface"}),
                                 ("ours: 2 threads in fit + sampling (before)", {}, {"threads": 2}),
                                 ("ours: --method localiser", {}, {"method": "localiser"}),
                                 ("ours: --method auto", {}, {"method": "auto"})):
            if fl_kw.get("method") in ("localiser", "auto") and not shipped_localiser():
                continue
            fl = Flattener(model, **fl_kw)
            out = work / label.replace(" ", "_").replace(":", "")
            rows.append(run(label, lambda: reports.setdefault(label, flatten_paths(photos, out, fl, progress=False,
                                                                                   **kw))))
        started = None
        if shipped_localiser() and (os.cpu_count() or 1) >= 2:
            from stn3dmm.flatten.workers import WorkerPool

            fl = Flattener(model, method="auto")
            label = "ours: --method auto, 2 processes"
            t0 = time.perf_counter()
            with WorkerPool(fl, 1) as pool:
                started = time.perf_counter() - t0
                pid = pool.workers[0][0].pid
                before = process_cpu_s(pid)
                row = run(label, lambda: reports.setdefault(label, flatten_paths(
                    photos, work / "auto_2_processes", fl, progress=False, pool=pool)))
                rows.append(row[:4] + (row[4] + process_cpu_s(pid) - before,))   # CPU of both processes
        what = f"from {args.photos_from}" if args.photos_from else "one face each, 400-1200 px"
        print(f"{len(photos)} photos ({what}), torch threads {args.threads} "
              f"(fit + sampling: 1 unless stated), load average {os.getloadavg()[0]:.2f} at the end")
        print(f"{'pipeline':<44} {'s':>7} {'photos/s':>9} {'ms/photo':>9} {'peak MiB':>9} {'CPU ms/photo':>13} "
              f"{'cores used':>11}")
        for label, dt, pk, _, cpu in rows:
            print(f"{label:<44} {dt:>7.2f} {len(photos) / dt:>9.1f} {1000 * dt / len(photos):>9.1f} {pk:>9.0f} "
                  f"{1000 * cpu / len(photos):>13.0f} {cpu / dt:>11.2f}")
        if started is not None:
            print(f"(the worker process of the last row took {started:.1f} s to start and warm up, before the clock)")
        for label in ("ours: full outputs", "ours: 2 threads in fit + sampling (before)"):
            print(f"\nwhere the time goes ({label}):")
            rep = reports[label]
            tot = sum(rep.seconds.values())
            for k, v in rep.seconds.items():
                print(f"  {k:<20} {1000 * v / len(photos):7.1f} ms/photo  {100 * v / tot:5.1f}%")
            print(f"  faces flattened: {rep.faces}, problems: {len(rep.failures)}")
        if args.rounds > 0 and shipped_localiser():
            head_to_head(photos, work, model, args.rounds, args.shift)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stage_costs(photos, out: Path, flattener, rounds: int = 3) -> None:
    """Print the CPU ms per photo of each stage of ``flattener`` run one after another on this
    thread (best of ``rounds``), and the photos/s their sum allows on all of this machine's cores."""
    from stn3dmm.flatten.outputs import write_photo_outputs
    from stn3dmm.photos import read_photo

    out.mkdir(parents=True, exist_ok=True)
    best = {}
    for _ in range(rounds):
        cpu = dict.fromkeys(("read", "detect", "fit + flatten", "write"), 0.0)

        def timed(stage, fn, *a):
            c = time.process_time()
            result = fn(*a)
            cpu[stage] += time.process_time() - c
            return result

        for lo in range(0, len(photos), 8):
            read = [(p, timed("read", read_photo, p)) for p in photos[lo:lo + 8]]
            found = [(p, ph, [f for f in timed("detect", flattener.detect, ph) if not f.tiny][:1]) for p, ph in read]
            results = timed("fit + flatten", flattener.flatten_many, [(ph.image, f) for _, ph, fs in found for f in fs])
            k = 0
            for p, ph, fs in found:
                timed("write", write_photo_outputs, results[k:k + len(fs)], out, p.stem, flattener.model, ph)
                k += len(fs)
        best = {s: min(v, best.get(s, v)) for s, v in cpu.items()}
    total, cores = sum(best.values()), os.cpu_count() or 1
    print(f"CPU per photo by stage, --method auto, one stage at a time (best of {rounds} rounds):")
    for stage, v in best.items():
        print(f"  {stage:<14} {1000 * v / len(photos):7.1f} ms  {100 * v / total:5.1f}%")
    print(f"  {'all':<14} {1000 * total / len(photos):7.1f} ms: at most {cores * len(photos) / total:.1f} photos/s "
          f"on {cores} cores, with every core busy all the time\n")


def photos_from(folder, n: int) -> list:
    """The first ``n`` images of ``folder`` by name; an error naming the folder where it has none."""
    exts = {".jpg", ".jpeg", ".png"}
    paths = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in exts)[:n]
    if not paths:
        raise SystemExit(f"{folder}: no .jpg or .png images")
    return paths


def head_to_head(photos, work, model, rounds: int, shift: int | None = None) -> None:
    """Each method in turn, ``rounds`` times, all outputs; photos/s per round and the median of the
    per-round ratio to the landmark fit. ``shift``: also the localiser and auto with that shift
    averaging (``load_localiser(shift=)``; 0: without it). On 2 or more cores also auto in two
    processes ("auto x2": a worker started before the rounds), with its ratio to auto in one."""
    import contextlib

    from stn3dmm.fitting.localiser import load_localiser
    from stn3dmm.flatten import Flattener, flatten_paths
    from stn3dmm.flatten.workers import WorkerPool

    flatteners = {m: Flattener(model, method=m) for m in ("landmarks", "localiser", "auto")}
    if shift is not None:
        fitter = load_localiser(model=model, shift=shift)
        flatteners.update({f"{m}+shift{shift}": Flattener(model, method=m, localiser=fitter)
                           for m in ("localiser", "auto")})
    with contextlib.ExitStack() as stack:
        pools = {}
        if (os.cpu_count() or 1) >= 2:
            flatteners["auto x2"] = Flattener(model, method="auto")
            pools["auto x2"] = stack.enter_context(WorkerPool(flatteners["auto x2"], 1))
        methods = tuple(flatteners)
        rate = {m: [] for m in methods}
        w = max(11, max(len(m) for m in methods) + 1)          # column widths
        v = w + len(" / landmarks")
        print(f"\nhead to head, {rounds} rounds of {len(photos)} photos, all outputs (photos/s):")
        print(f"{'round':>6}" + "".join(f"{m:>{w}}" for m in methods)
              + "".join(f"{m + ' / landmarks':>{v}}" for m in methods[1:]) + ("  auto x2 / auto" if pools else ""))
        for r in range(rounds):
            for m in methods:
                _, dt, _, _ = measure(flatten_paths, photos, work / f"round{r}_{m}", flatteners[m], progress=False,
                                      pool=pools.get(m))
                rate[m].append(len(photos) / dt)
            print(f"{r + 1:>6}" + "".join(f"{rate[m][-1]:>{w}.1f}" for m in methods)
                  + "".join(f"{rate[m][-1] / rate['landmarks'][-1]:>{v}.2f}" for m in methods[1:])
                  + (f"{rate['auto x2'][-1] / rate['auto'][-1]:>17.2f}" if pools else ""))
        print(f"{'median':>6}" + "".join(f"{np.median(rate[m]):>{w}.1f}" for m in methods)
              + "".join(f"{np.median(np.array(rate[m]) / np.array(rate['landmarks'])):>{v}.2f}" for m in methods[1:])
              + (f"{np.median(np.array(rate['auto x2']) / np.array(rate['auto'])):>17.2f}" if pools else "")
              + f"   (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
