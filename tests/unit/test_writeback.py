"""`localfs.start_writeback_later`: the writeback of a finished file asked for on a thread
of its own (a reader never waits while the disk's queue is full), on a descriptor of its
own that it closes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from forge_syncd.library import localfs


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settled_fds(expected: int, timeout_s: float = 10.0) -> int:
    """The number of open descriptors once it is `expected`, or when `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while (count := open_fds()) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


def test_a_big_file_is_written_back_on_a_descriptor_the_thread_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller closes its descriptor at once; the thread asks for each file's writeback
    on a copy of its own, then closes it (none left open however many files)."""
    asked: list[bytes] = []

    class Libc:
        """libc's sync_file_range, recording which file each call was for."""

        def sync_file_range(self, fd: int, *_args: object) -> int:
            asked.append(os.readlink(f"/proc/self/fd/{fd}").encode())
            return 0

    monkeypatch.setattr(localfs, "_libc", Libc())
    before = open_fds()
    data = b"x" * (localfs.WRITEBACK_MIN * 2)
    for n in range(20):
        fd = os.open(tmp_path / f"{n}.png", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, data)
        localfs.start_writeback_later(fd, len(data))
        os.close(fd)
    assert settled_fds(before) == before
    deadline = time.monotonic() + 10
    while len(asked) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(asked) == sorted(os.fsencode(tmp_path / f"{n}.png") for n in range(20))


def test_a_small_file_is_left_to_the_batch_syncfs(tmp_path: Path) -> None:
    """Under WRITEBACK_MIN nothing is duplicated or queued."""
    fd = os.open(tmp_path / "small.png", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"x" * 1000)
    before = open_fds()
    localfs.start_writeback_later(fd, 1000)
    assert open_fds() == before
    os.close(fd)


def test_a_reader_never_waits_for_the_disk_and_holds_a_bounded_number_of_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the disk's queue is full (sync_file_range blocks), the caller goes on at once
    and at most WRITEBACK_QUEUED descriptors wait (plus the one being written back); the
    rest are left to the batch's syncfs. Once the disk moves, every copy is closed."""
    disk_moves = threading.Event()

    class Libc:
        def sync_file_range(self, fd: int, *_args: object) -> int:
            disk_moves.wait(30)
            return 0

    monkeypatch.setattr(localfs, "_libc", Libc())
    before = open_fds()
    path = tmp_path / "big.png"
    path.write_bytes(b"x" * localfs.WRITEBACK_MIN)
    fd = os.open(path, os.O_RDONLY)
    for _ in range(localfs.WRITEBACK_QUEUED * 3):
        localfs.start_writeback_later(fd, localfs.WRITEBACK_MIN)  # returns while blocked
    os.close(fd)
    assert before < open_fds() <= before + localfs.WRITEBACK_QUEUED + 1
    disk_moves.set()
    assert settled_fds(before) == before
