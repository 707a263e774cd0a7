"""stn3dmm flatten against hostile or unlucky input, case by case (issues 9 and 11): for each,
the clear message, the exit code, and no partial or mixed output. Then the cases that need real
processes: runs killed (SIGKILL, SIGTERM, Ctrl-C) and rerun, and two runs on one output folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import stn3dmm
from stn3dmm.cli import main

SUFFIXES = {"_texture.png", "_completed.png", "_overlay.png", ".json", ".obj", ".mtl"}
_FACE = re.compile(r"^(.+_face\d+)(_texture\.png|_completed\.png|_overlay\.png|\.json|\.obj|\.mtl)$")


def output_state(out: Path):
    """(complete faces, partial faces, temporary files) under ``out``; faces as 'folder/base'."""
    faces, temps = defaultdict(set), []
    for p in out.rglob("*") if out.exists() else ():
        if p.name.endswith(".tmp"):
            temps.append(p)
        elif m := _FACE.match(p.name):
            faces[p.parent.relative_to(out).joinpath(m.group(1)).as_posix()].add(m.group(2))
    complete = {k for k, v in faces.items() if v == SUFFIXES}
    return complete, set(faces) - complete, temps


@pytest.fixture(scope="module")
def small(source):
    """The sample photo at 200 x 234, as JPEG bytes: a face found quickly."""
    import io

    b = io.BytesIO()
    source.resize((200, 234)).save(b, format="JPEG", quality=90)
    return b.getvalue()


def _claim_65000(data: bytes) -> bytes:
    d = bytearray(data)
    i = d.find(b"\xff\xc0")
    d[i + 5:i + 9] = (65000).to_bytes(2, "big") * 2
    return bytes(d)


def _write(d: Path, files: dict) -> Path:
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    return d


def _pipe(d: Path, name: str):
    os.mkfifo(d / name)


# case -> (files, extra setup, extra args, exit code, messages, complete faces afterwards)
CASES = {
    "symlink loop": ({"a.jpg": "small"}, lambda d: (d / "loop.jpg").symlink_to("loop.jpg"), [], 0,
                     ["loop.jpg: not a photo: symbolic link loop", "1 of 1 photos flattened"], {"a_face0"}),
    "FIFO named .jpg": ({"a.jpg": "small"}, lambda d: _pipe(d, "pipe.jpg"), [], 0,
                        ["pipe.jpg: not a photo: not a regular file (a named pipe)"], {"a_face0"}),
    "JPEG cut in half, end marker added": (
        {"a.jpg": "small", "cut.jpg": "cut"}, None, [], 0,
        ["cut.jpg: unreadable: truncated or corrupt image data", "1 of 2 photos flattened"], {"a_face0"}),
    "JPEG claiming 65000 x 65000": (
        {"a.jpg": "small", "claim.jpg": "claim"}, None, [], 0,
        ["claim.jpg: unreadable: too large: 65000 x 65000 = 4225000000 pixels declared"], {"a_face0"}),
    "space in the name": ({"my photo.jpg": "small"}, None, [], 0, ["1 of 1 photos flattened"], {"my_photo_face0"}),
    "line break in the name": ({"a\nmtllib evil.mtl.jpg": "small"}, None, [], 0, ["1 of 1 photos flattened"],
                               {"a_mtllib_evil.mtl_face0"}),
    "--size 40000": ({"a.jpg": "small"}, None, ["--size", "40000"], 2, ["--size must be at most 2048"], None),
    "--res 30000": ({"a.jpg": "small"}, None, ["--res", "30000"], 2, ["--res must be at most 1024"], None),
    "empty folder": ({}, None, [], 2, ["nothing to flatten", "no photos in this folder or its sub-folders"], None),
    "people tree with sidecars": (
        {"Ann/Ann_0001.jpg": "small", "Ann/Ann_0001.mat": "text", "notes.txt": "text"}, None, [], 0,
        ["1 of 1 photos flattened", "skipped 2 non-image file(s)"], {"Ann/Ann_0001_face0"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input(case, small, default_grid, tmp_path, capsys):
    files, setup, extra, rc_want, messages, complete = CASES[case]
    data = {"small": small, "cut": small[:len(small) // 2] + b"\xff\xd9", "claim": _claim_65000(small),
            "text": b"not an image"}
    d = _write(tmp_path / "in", {k: data[v] for k, v in files.items()})
    d.mkdir(exist_ok=True)
    if setup:
        setup(d)
    out = tmp_path / "out"
    rc = main(["flatten", str(d), "--out", str(out), "--model", str(default_grid[2]), "--quiet"] + extra)
    err = capsys.readouterr().err
    assert rc == rc_want, err
    for m in messages:
        assert m in err, (m, err)
    assert "Traceback" not in err
    if complete is None:
        assert not out.exists()
        return
    done, partial, temps = output_state(out)
    assert done == complete and not partial and not temps, (done, partial, temps)
    for face in complete:                          # the mesh references open in MeshLab: one line each, safe
        obj, mtl = (out / f"{face}.obj").read_text(), (out / f"{face}.mtl").read_text()
        name = Path(face).name
        assert [ln for ln in obj.splitlines() if ln.startswith("mtllib")] == [f"mtllib {name}.mtl"]
        assert [ln for ln in mtl.splitlines() if ln.startswith("map_Kd")] == [f"map_Kd {name}_completed.png"]


def _flatten(d, out, default_grid, capsys, *extra):
    rc = main(["flatten", str(d), "--out", str(out), "--model", str(default_grid[2]), "--quiet", *extra])
    return rc, capsys.readouterr().err


def test_a_rerun_skips_what_is_done_and_finishes_what_is_not(small, default_grid, tmp_path, capsys):
    d = _write(tmp_path / "in", {"a.jpg": small, "b.jpg": small})
    out = tmp_path / "out"
    assert _flatten(d, out, default_grid, capsys)[0] == 0
    rc, err = _flatten(d, out, default_grid, capsys)                 # a rerun of a finished batch
    assert rc == 0 and "0 of 2 photos flattened" in err and "already done: 2 photo(s)" in err and "problem" not in err
    (out / "b_face0.json").unlink()                                  # as a kill before b's record leaves it
    (out / "b_face0_overlay.png").unlink()
    (out / ".b_face0.obj.x1y2z3w4.tmp").write_text("half")
    rc, err = _flatten(d, out, default_grid, capsys)
    assert rc == 0 and "1 of 2 photos flattened" in err and "already done: 1" in err, err
    assert "finished 1 photo(s) that an earlier run left incomplete" in err and "removed 1 temporary file" in err
    assert output_state(out) == ({"a_face0", "b_face0"}, set(), [])


def test_a_folder_held_by_another_run_is_refused(small, default_grid, tmp_path, capsys):
    from stn3dmm.flatten.state import claim_output

    d = _write(tmp_path / "in", {"a.jpg": small})
    with claim_output(tmp_path / "out"):
        rc, err = _flatten(d, tmp_path / "out", default_grid, capsys)
    assert rc == 2 and "another stn3dmm flatten (pid" in err and "is writing into this folder" in err
    assert output_state(tmp_path / "out") == (set(), set(), [])


# ---------------------------------------------------------------- real processes

def _start(d, out, grid_path, *extra, stderr=subprocess.PIPE):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(stn3dmm.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    # SIGINT restored to its default (a shell without job control starts background jobs with
    # it ignored, and Python then keeps it ignored), so that Ctrl-C can be sent
    return subprocess.Popen([sys.executable, "-m", "stn3dmm.cli", "flatten", str(d), "--out", str(out), "--model",
                             str(grid_path), "--quiet", *extra], env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _when(pred, proc, timeout=120.0):
    """Wait until ``pred()`` holds (True) or the process ends (False)."""
    t = time.time()
    while time.time() - t < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise TimeoutError


def _records(out: Path) -> int:
    return len(list(out.glob("*_face0.json")))


def test_killed_runs_leave_nothing_half_done_and_a_rerun_finishes(small, default_grid, tmp_path, capsys):
    """SIGKILL mid-write, then SIGTERM and Ctrl-C mid-run, then a run to the end (issue 11 item 4)."""
    n = 30
    d = _write(tmp_path / "in", {f"p{k:02d}.jpg": small for k in range(n)})
    out = tmp_path / "out"
    _flatten(d / "p00.jpg", tmp_path / "warm", default_grid, capsys)   # the landmark map in the cache, once
    p = _start(d, out, default_grid[2])
    assert _when(lambda: any(out.glob("*_texture.png")), p)            # writing its first batch
    p.kill()
    p.communicate()
    done, partial, _ = output_state(out)
    assert {q.name[:-len(".json")] for q in out.glob("*.json")} <= done     # a record only beside a whole face
    for sig, code, word in ((signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")):
        before = _records(out)
        p = _start(d, out, default_grid[2])
        assert _when(lambda: _records(out) > before, p)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        assert p.returncode == code and f"interrupted ({word})" in err and "Traceback" not in err, err
        done, partial, temps = output_state(out)
        assert not partial and not temps, (partial, temps)             # the batch being written was finished
        assert len(done) == _records(out) < n
    before = _records(out)
    p = _start(d, out, default_grid[2])
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0 and f"already done: {before} photo(s)" in err and "problem" not in err, err
    assert output_state(out) == ({f"p{k:02d}_face0" for k in range(n)}, set(), [])


def test_a_run_in_two_processes_ends_cleanly_on_sigterm_and_a_rerun_finishes(small, default_grid, tmp_path, capsys):
    """--workers 2: SIGTERM to the run's process stops both after the photos they are writing;
    the rerun, in two processes again, does the rest."""
    n = 40
    d = _write(tmp_path / "in", {f"p{k:02d}.jpg": small for k in range(n)})
    out = tmp_path / "out"
    _flatten(d / "p00.jpg", tmp_path / "warm", default_grid, capsys)   # the landmark map in the cache, once
    p = _start(d, out, default_grid[2], "--workers", "2")
    assert _when(lambda: _records(out) >= 2, p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143 and "interrupted (SIGTERM)" in err and "Traceback" not in err, err
    done, partial, temps = output_state(out)
    assert not partial and not temps, (partial, temps)
    assert len(done) == _records(out) < n
    before = _records(out)
    p = _start(d, out, default_grid[2], "--workers", "2")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0 and f"already done: {before} photo(s)" in err and "problem" not in err, err
    assert re.search(r"in 2 processes \(the other did \d+\)", err), err
    assert output_state(out) == ({f"p{k:02d}_face0" for k in range(n)}, set(), [])


def test_two_runs_on_one_folder_never_mix(source, default_grid, tmp_path, capsys):
    """Same photo names, different photos: one run holds the folder, the other is refused."""
    import io

    def jpeg(im):
        b = io.BytesIO()
        im.resize((200, 234)).save(b, format="JPEG", quality=90)
        return b.getvalue()

    red = Image.fromarray((np.asarray(source) * [1.0, 0.45, 0.45]).astype(np.uint8))
    dirs = {"plain": _write(tmp_path / "plain", {f"p{k:02d}.jpg": jpeg(source) for k in range(16)}),
            "red": _write(tmp_path / "red", {f"p{k:02d}.jpg": jpeg(red) for k in range(16)})}
    out = tmp_path / "out"
    _flatten(dirs["plain"] / "p00.jpg", tmp_path / "warm", default_grid, capsys)
    procs = {k: _start(v, out, default_grid[2]) for k, v in dirs.items()}
    res = {k: (p.communicate(timeout=300)[1], p.returncode) for k, p in procs.items()}
    done, partial, temps = output_state(out)
    assert len(done) == 16 and not partial and not temps
    first = Path(json.loads((out / "p00_face0.json").read_text())["photo"])
    winner = next(k for k, v in dirs.items() if first.parent == v)
    loser_err, loser_rc = res["red" if winner == "plain" else "plain"]
    assert res[winner][1] == 0
    if loser_rc == 2:        # the runs overlapped: the second was refused
        assert "another stn3dmm flatten (pid" in loser_err and "is writing into this folder" in loser_err
    else:                    # the second started after the first had ended: it found every photo done
        assert loser_rc == 0 and "0 of 16 photos flattened" in loser_err and "already done: 16" in loser_err
    for face in done:
        assert Path(json.loads((out / f"{face}.json").read_text())["photo"]).parent == dirs[winner]
        tex = np.asarray(Image.open(out / f"{face}_texture.png")).astype(float)
        seen = tex[..., 3] > 0
        redness = tex[seen, 0].mean() / tex[seen, 1].mean()
        assert (redness > 1.6) == (winner == "red"), (face, redness)
