"""The one atomic writer: a failed write leaves the old file and no temporary file behind."""

import os

import pytest

from stn3dmm.core.paths import write_atomically, write_bytes_atomically, write_text_atomically


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    assert write_text_atomically(p, "héllo") == p and p.read_text(encoding="utf-8") == "héllo"
    write_bytes_atomically(p, b"new", durable=True)
    assert p.read_bytes() == b"new"
    assert oct(p.stat().st_mode & 0o777) == oct(0o666 & ~_umask())       # not mkstemp's private 0600
    assert sorted(os.listdir(p.parent)) == ["a.txt"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")

    def half(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(p, half)
    assert p.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["a.bin"]


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m
