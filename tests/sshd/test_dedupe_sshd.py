"""The remote-hash shortcut against a real sshd (the container hashes with its own python3
or sha256sum): a large file whose bytes the library holds is made from the library copy (a
reflink on XFS), not transferred; one whose bytes are new is transferred."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from forge_syncd.library import dedupe
from tests.conftest import make_container
from tests.support import reflink
from tests.support.runs import run_sync
from tests.support.sshd import SshdServer

MIB = 1024 * 1024
OLD = 1_700_000_000


def test_a_duplicate_on_the_container_is_made_from_the_library(
    sshd: SshdServer, tmp_path: Path, reflink_dir: Path
) -> None:
    """Container `b` holds a copy of a file container `a` synced, and a new file: over real
    SSH the copy is hashed on the container and made from the library (`file_made_locally`,
    a reflink sharing the first copy's blocks, the container's mtime), the new file is
    transferred, and both are recorded."""
    data = os.urandom(2 * MIB)
    for name, files in (("a", {"one.png": data}), ("b", {"dup.png": data, "new.png": b"x" * MIB})):
        root = tmp_path / name
        root.mkdir()
        for file_name, content in files.items():
            (root / file_name).write_bytes(content)
            os.utime(root / file_name, (OLD, OLD))
    media, state = reflink_dir / "media", reflink_dir / "state"
    dedupe.forget_filesystems()
    assert run_sync(make_container(sshd, tmp_path / "a", "a"), media, state).files == 1
    container = make_container(sshd, tmp_path / "b", "b", dedupe_min_size=MIB)
    with structlog.testing.capture_logs() as logs:
        outcome = run_sync(container, media, state)
    assert outcome.result == "success" and outcome.files == 2
    made = [(e["path"], e["how"]) for e in logs if e["event"] == "file_made_locally"]
    assert made == [("dup.png", "reflink")]
    dup = media / "b" / "dup.png"
    assert dup.read_bytes() == data and os.stat(dup).st_mtime_ns == OLD * 10**9
    assert reflink.share_extents(media / "a" / "one.png", dup)
    assert (media / "b" / "new.png").read_bytes() == b"x" * MIB
