"""`forge-syncctl dedupe` on a library made before (copies): the pass shares what the
manifest says is identical, after hashing every copy; dry runs change nothing; a kill -9
in the middle of a real pass loses no byte and leaves no half-shared file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from forge_syncd.jobs.record import container_lock
from forge_syncd.library import dedupe
from forge_syncd.library.dedupepass import DedupePass
from forge_syncd.logs import get_logger
from tests.dedupe.conftest import OLD, Library
from tests.support import reflink
from tests.support.trees import tree_files, version_files

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


def made_before(lib: Library, groups: int, copies: int, size: int = MIB) -> list[bytes]:
    """Sync `groups` sets of `copies` identical files (over containers a, b, c) with
    `dedupe: off`: a library of copies. Return each group's bytes."""
    dedupe.configure("off")
    contents = [os.urandom(size) for _ in range(groups)]
    for n, data in enumerate(contents):
        for c in range(copies):
            lib.remote("abc"[c % 3]).write(b"g%02d/copy%d.png" % (n, c), data, OLD)
    for name in "abc"[:copies]:
        lib.sync(name)
    dedupe.configure("auto")
    return contents


def hold_for(state: Path) -> Callable[[str], AbstractContextManager[None]]:
    return lambda name: container_lock(state, name)


def every_file_matches_the_manifest(lib: Library) -> int:
    """Assert every recorded library file hashes to its manifest sha256; return how many."""
    checked = 0
    for name in lib.remotes:
        for path, record in lib.manifest.files.records(name).items():
            data = (lib.media / name / os.fsdecode(path)).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record.sha256, path
            checked += 1
    return checked


def test_a_pass_shares_the_copies_a_library_holds(xfs_library: Library) -> None:
    """On XFS a dry run counts the copies it would share and changes nothing; the pass then
    shares them (reflinks: shared extents, mtimes kept), reports files and bytes saved and
    the gauge's total; a second pass finds them already shared."""
    lib = xfs_library
    contents = made_before(lib, groups=3, copies=3)
    before = tree_files(lib.media)
    state = lib.manifest.path.parent
    dry = DedupePass(lib.manifest, os.fsencode(lib.media), get_logger(), hold_for(state))
    report = dry.run(dry_run=True)
    assert (report.files, report.bytes, report.groups) == (6, 6 * MIB, 3)
    assert tree_files(lib.media) == before and report.saved_bytes == 0
    done = DedupePass(lib.manifest, os.fsencode(lib.media), get_logger(), hold_for(state)).run()
    assert (done.files, done.bytes, done.left) == (6, 6 * MIB, 0)
    assert tree_files(lib.media) == before  # same bytes, same mtimes
    first = lib.media / "a" / "g00" / "copy0.png"
    assert reflink.share_extents(first, lib.media / "b" / "g00" / "copy1.png")
    assert done.saved_bytes == lib.manifest.shared.saved_bytes() == 6 * MIB
    again = DedupePass(lib.manifest, os.fsencode(lib.media), get_logger(), hold_for(state)).run()
    assert (again.files, again.already_files, again.already_bytes) == (0, 6, 6 * MIB)
    assert every_file_matches_the_manifest(lib) == 9 and len(contents) == 3


def test_a_pass_leaves_a_copy_edited_since_it_was_recorded(xfs_library: Library) -> None:
    """A copy whose bytes no longer hash to the manifest's sha256 (edited by hand) is
    neither a source nor replaced: its new bytes stay."""
    lib = xfs_library
    made_before(lib, groups=1, copies=3)
    edited = lib.media / "b" / "g00" / "copy1.png"
    edited.write_bytes(b"mine now")
    state = lib.manifest.path.parent
    done = DedupePass(lib.manifest, os.fsencode(lib.media), get_logger(), hold_for(state)).run()
    assert (done.files, done.left) == (1, 1)
    assert edited.read_bytes() == b"mine now"


def test_a_busy_container_is_skipped_and_named(xfs_library: Library) -> None:
    """A container whose lock a run holds is skipped (named in `busy`); its copies stay."""
    lib = xfs_library
    made_before(lib, groups=1, copies=2)
    state = lib.manifest.path.parent
    with container_lock(state, "b"):
        done = DedupePass(lib.manifest, os.fsencode(lib.media), get_logger(), hold_for(state)).run()
    assert done.busy == {"b"} and done.files == 0


def test_hardlink_pass_links_versions_too_read_only(xfs_hardlink_library: Library) -> None:
    """`dedupe: hardlink`: a kept version with the same bytes as a file becomes a read-only
    second name of it."""
    lib = xfs_hardlink_library
    dedupe.configure("off")
    data = os.urandom(MIB)
    lib.remote("a").write(b"x.png", data, OLD)
    lib.sync("a")
    lib.remote("a").write(b"x.png", b"other", OLD + 10)
    lib.sync("a")
    lib.remote("a").write(b"y.png", data, OLD)
    lib.sync("a")
    dedupe.configure("hardlink")
    state = lib.manifest.path.parent
    done = DedupePass(lib.manifest, os.fsencode(lib.media), get_logger(), hold_for(state)).run()
    assert done.files == 1
    (version,) = version_files(lib.media / "a").values()
    assert version == data
    y = lib.media / "a" / "y.png"
    (version_path,) = (lib.media / "a" / ".versions").iterdir()
    assert os.stat(version_path).st_ino == os.stat(y).st_ino
    assert os.stat(y).st_mode & 0o222 == 0


PASS_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from forge_syncd import logs
    from forge_syncd.jobs.record import container_lock
    from forge_syncd.library.dedupepass import DedupePass
    from forge_syncd.library.manifest import Manifest
    from forge_syncd.logs import get_logger
    logs.configure("info", None)
    state, media = Path(sys.argv[1]), sys.argv[2]
    manifest = Manifest.open(state)
    DedupePass(manifest, os.fsencode(media), get_logger(),
               lambda name: container_lock(state, name), "auto").run()
    """
)


def test_kill_9_during_a_pass_loses_no_byte(xfs_library: Library) -> None:
    """A real process running a pass is killed with SIGKILL as soon as it has shared its
    first file: every library file still hashes to the manifest's sha256 (each name holds
    its old copy or the shared one, whole); a new pass finishes the job."""
    lib = xfs_library
    made_before(lib, groups=12, copies=3, size=4 * MIB)
    state = lib.manifest.path.parent
    with subprocess.Popen(
        [sys.executable, "-c", PASS_SCRIPT, str(state), str(lib.media)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stderr is not None
        with contextlib.suppress(ValueError):
            for line in process.stderr:
                if b'"file_deduped"' in line:
                    process.send_signal(signal.SIGKILL)
                    break
        process.wait(60)
    assert process.returncode == -signal.SIGKILL
    assert every_file_matches_the_manifest(lib) == 36
    done = DedupePass(lib.manifest, os.fsencode(lib.media), get_logger(), hold_for(state)).run()
    assert done.files + done.already_files == 24 and done.left == 0
    assert done.files > 0  # the kill did stop the first pass before its end
    assert every_file_matches_the_manifest(lib) == 36


def test_the_control_method_and_the_gauge(xfs_library: Library) -> None:
    """The `dedupe` control method runs a pass over the daemon's library (`dry_run` only
    counts; a wrong param type is `bad_params`), and `forge_sync_dedupe_saved_bytes` reads
    the saved bytes from the manifest at scrape time."""
    from types import SimpleNamespace

    import pytest
    from prometheus_client import CollectorRegistry

    from forge_syncd.control.protocol import Request, RequestError
    from forge_syncd.service.dedupe import DedupeMethod, SavedBytesCollector

    lib = xfs_library
    made_before(lib, groups=2, copies=2)
    registry = CollectorRegistry()
    registry.register(SavedBytesCollector(lib.manifest))
    daemon = SimpleNamespace(
        runners={}, manifest=lib.manifest, config=SimpleNamespace(media_root=lib.media)
    )
    method = DedupeMethod(daemon)  # type: ignore[arg-type]
    dry = method.dedupe(Request(1, "dedupe", {"dry_run": True}))
    assert (dry["files"], dry["bytes"], dry["dry_run"]) == (2, 2 * MIB, True)
    assert registry.get_sample_value("forge_sync_dedupe_saved_bytes") == 0
    done = method.dedupe(Request(2, "dedupe", {}))
    assert (done["files"], done["saved_bytes"]) == (2, 2 * MIB)
    assert registry.get_sample_value("forge_sync_dedupe_saved_bytes") == 2 * MIB
    with pytest.raises(RequestError) as refused:
        method.dedupe(Request(3, "dedupe", {"dry_run": "yes"}))
    assert refused.value.code == "bad_params"


def test_a_pass_without_reflinks_keeps_every_copy_and_says_so(plain_library: Library) -> None:
    """On a filesystem that cannot reflink, a pass (`auto`) shares nothing, reports the
    filesystem as unable (the CLI then exits 1), and every copy keeps its bytes."""
    lib = plain_library
    made_before(lib, groups=2, copies=2)
    state = lib.manifest.path.parent
    before = tree_files(lib.media)
    done = DedupePass(lib.manifest, os.fsencode(lib.media), get_logger(), hold_for(state)).run()
    assert done.unavailable and done.files == 0 and done.saved_bytes == 0
    assert tree_files(lib.media) == before
