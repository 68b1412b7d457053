"""files.write_atomic: the destination is always whole, the temporary file never stays behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from exec_analytics.files import remove_stale_tmp, write_atomic


def test_write_atomic_creates_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "f.bin"
    write_atomic(path, lambda tmp: tmp.write_bytes(b"one"))
    write_atomic(path, lambda tmp: tmp.write_text("two", encoding="utf-8"))
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    seen: list[Path] = []

    def fail(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, fail)
    assert path.read_bytes() == b"old"
    assert seen[0].name.startswith(".f.bin.") and seen[0].suffix == ".tmp"  # hidden from dataset readers
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_concurrent_writers_never_share_a_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    names: list[str] = []
    barrier = threading.Barrier(8)

    def write(tmp: Path) -> None:
        names.append(tmp.name)
        barrier.wait(timeout=10)  # all eight temporaries exist at once
        tmp.write_bytes(tmp.name.encode())

    threads = [threading.Thread(target=write_atomic, args=(path, write)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 8
    assert path.read_bytes().decode() in names  # one whole write won


def test_remove_stale_tmp_removes_only_temporaries(tmp_path: Path) -> None:
    (tmp_path / ".f.bin.123-abcd.tmp").write_bytes(b"killed writer")
    (tmp_path / "f.bin").write_bytes(b"data")
    remove_stale_tmp(tmp_path)
    remove_stale_tmp(tmp_path / "missing")
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
