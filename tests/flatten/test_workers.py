"""Worker processes of a flatten run: how many, each photo to one process, the same files as one
process writes, and a worker that dies or cannot be made."""

from __future__ import annotations

import json
import multiprocessing
import threading

import numpy as np
import pytest
from PIL import Image

from stn3dmm.flatten.workers import (MAX_WORKERS, MIN_PHOTOS_PER_WORKER, WORKER_BYTES, auto_workers, available_memory,
                                     claimed)


def test_auto_workers_needs_cores_photos_memory_and_the_cpu():
    plenty = 100 * WORKER_BYTES
    assert auto_workers(10, cores=2, memory=plenty) == 1                     # a short run does not repay a start
    assert auto_workers(MIN_PHOTOS_PER_WORKER, cores=2, memory=plenty) == 2
    assert auto_workers(10 ** 6, cores=2, memory=plenty) == 2
    assert auto_workers(10 ** 6, cores=1, memory=plenty) == 1
    assert auto_workers(3 * MIN_PHOTOS_PER_WORKER, cores=64, memory=plenty) == 4
    assert auto_workers(10 ** 6, cores=64, memory=plenty) == MAX_WORKERS
    assert auto_workers(10 ** 6, cores=64, memory=int(3.5 * WORKER_BYTES)) == 3
    assert auto_workers(10 ** 6, cores=64, memory=WORKER_BYTES // 2) == 1
    assert auto_workers(10 ** 6, device="cuda:0", cores=64) == 1
    memory = available_memory()
    assert memory is None or memory > 0


def test_each_job_goes_to_exactly_one_claimant():
    jobs = list(range(500))
    counter = multiprocessing.get_context("spawn").Value("q", 0)
    got = [[], [], []]

    def take(k):
        for j in claimed(jobs, counter):
            got[k].append(j)

    threads = [threading.Thread(target=take, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sum(got, [])) == jobs
    assert all(g == sorted(g) for g in got)                     # each takes them in order
    counter.value = 0
    assert list(claimed(jobs, counter, go_on=lambda: False)) == []


@pytest.fixture(scope="module")
def photos(source, tmp_path_factory):
    d = tmp_path_factory.mktemp("workers-in")
    for k in range(12):
        source.resize((200 + 8 * k, 234 + 9 * k)).save(d / f"p{k:02d}.jpg", quality=90)
    return d


def test_two_processes_write_what_one_writes_and_a_dead_worker_is_reported(photos, flattener, tmp_path):
    from stn3dmm.flatten import flatten_paths
    from stn3dmm.flatten.workers import WorkerPool

    one = flatten_paths([photos], tmp_path / "one", flattener, progress=False)
    again = flatten_paths([photos], tmp_path / "one", flattener, progress=False, workers=None)
    assert again.already_done == 12 and again.processes == 1      # auto: nothing left to share
    with WorkerPool(flattener, 1) as pool:
        two = flatten_paths([photos], tmp_path / "two", flattener, progress=False, pool=pool, chunk=2)
        assert two.succeeded == one.succeeded == 12 and two.faces == one.faces and not two.failures
        assert two.processes == 2 and 0 < two.by_others < 12, two.summary()
        assert "in 2 processes (the other did" in two.summary()
        for a in sorted((tmp_path / "one").glob("*_texture.png")):
            b = tmp_path / "two" / a.name
            diff = np.abs(np.asarray(Image.open(a), int) - np.asarray(Image.open(b), int))
            assert diff.max() <= 2, (a.name, diff.max())            # batches differ: float rounding only
            ta, tb = (json.loads((d / a.name.replace("_texture.png", ".json")).read_text())["theta"]
                      for d in (tmp_path / "one", tmp_path / "two"))
            np.testing.assert_allclose(ta, tb, atol=1e-3)
        pool.workers[0][0].kill()                                    # it dies: this process does every photo
        pool.workers[0][0].join()
        three = flatten_paths([photos], tmp_path / "three", flattener, progress=False, pool=pool)
    assert three.succeeded == 12 and three.by_others == 0
    assert [r for _, r in three.failures] and "worker died" in three.failures[0][1], three.summary()


def test_a_flattener_with_parts_passed_in_is_refused_before_any_work(photos, default_grid, tmp_path):
    from stn3dmm.flatten import Flattener, flatten_paths
    from stn3dmm.photos import FaceDetector

    fl = Flattener(default_grid[0], detector=FaceDetector())
    with pytest.raises(ValueError, match="cannot remake"):
        flatten_paths([photos], tmp_path / "out", fl, workers=2)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="workers must be >= 1"):
        flatten_paths([photos], tmp_path / "out", fl, workers=0)


def test_a_worker_still_starting_when_the_photos_run_out_is_not_waited_for(photos, flattener, tmp_path):
    """Two photos in two processes: this one does both before the worker has started (3-4 s); the
    run ends without waiting for it, and nothing is lost or reported."""
    import time

    from stn3dmm.flatten import flatten_paths

    one = photos / "p00.jpg"
    flatten_paths([photos / "p02.jpg"], tmp_path / "warm", flattener, progress=False)   # the landmark map cached
    t = time.perf_counter()
    rep = flatten_paths([one, photos / "p01.jpg"], tmp_path / "out", flattener, progress=False, workers=2)
    took = time.perf_counter() - t
    assert rep.succeeded == 2 and rep.processes == 2 and not rep.failures and not rep.notes, rep.summary()
    assert rep.by_others == 0 or took > 3.0, (rep.by_others, took)   # a worker that started took its share
    started = time.perf_counter()
    from stn3dmm.flatten.workers import WorkerPool

    with WorkerPool(flattener, 1):
        start_s = time.perf_counter() - started
    assert took < start_s, (took, start_s)       # the run did not wait for a worker's start
