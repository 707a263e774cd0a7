"""What every benchmark here shares: memory readings, a timed call, child processes, test models.

Each script under ``benchmarks/`` imports this (it runs with ``benchmarks/`` first on the
path). Two ways of measuring peak memory are used: a fresh child process per row reads its
own high-water mark (:func:`rss_kb` of ``VmHWM`` against ``VmRSS`` before the run), and an
in-process row samples the resident size on a thread (:func:`measure`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_kb(field: str = "VmRSS:") -> int:
    """A ``/proc/self/status`` memory field in kB (``VmRSS:`` now, ``VmHWM:`` the peak); 0 if absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib() -> float:
    """The resident size now, MiB."""
    return rss_kb("VmRSS:") / 1024


def measure(fn, *args, sample_s: float = 0.005, **kwargs):
    """``(result, wall s, CPU s, peak MiB above the start)`` of one call; the resident size is
    sampled on a thread every ``sample_s`` seconds."""
    start, peak, done = rss_mib(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib() - start)
            time.sleep(sample_s)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t, c = time.perf_counter(), time.process_time()
    try:
        out = fn(*args, **kwargs)
    finally:
        dt, dc = time.perf_counter() - t, time.process_time() - c
        done.set()
        th.join()
    return out, dt, dc, max(peak[0], rss_mib() - start)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) another process of this machine has used so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()     # from field 3 (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(script: str, args: list[str], check: bool = True) -> dict:
    """Run ``script --child ARGS`` in a fresh Python with this checkout's ``src`` first on the
    path and return the JSON object its last output line holds. Raises RuntimeError with the
    child's error output when it fails (``check``), else returns ``{"error": ...}``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, script, "--child", *map(str, args)], capture_output=True, text=True, env=env)
    if out.returncode:
        msg = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit code {out.returncode}"
        if check:
            raise RuntimeError(f"{Path(script).name} {' '.join(map(str, args))} failed:\n{out.stderr[-3000:]}")
        return {"error": msg}
    return json.loads(out.stdout.strip().splitlines()[-1])


def synthetic_models():
    """The tests' synthetic face models (``tests/testkit/synthetic_models.py``): ``make_face_model(res)``,
    ``euler_to_axis_angle``, ``brute_force_visibility``."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from testkit import synthetic_models

    return synthetic_models
