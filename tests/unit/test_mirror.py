"""The mirror sink's pure parts and state, without rclone: which check a remote gets, when a
copy on the remote is not the library's bytes, mirror names, the queue across a version
move and a redelivered event, `require_mirror` in the cleanup and drain rules, its config
validation, the status line and the metrics."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from forge_syncd.cleanup.drain import wait_for_mirror
from forge_syncd.cleanup.rules import Action, PurgePolicy, decide
from forge_syncd.cli.commands.status import mirror_text, sink_lines
from forge_syncd.config import ConfigError, load_config
from forge_syncd.events.sinks.mirror.copier import Pinned, choose_check, mismatch
from forge_syncd.events.sinks.mirror.holds import mirror_check
from forge_syncd.events.sinks.mirror.sink import mirror_name
from forge_syncd.events.sinks.mirror.state import Copy, MirrorState, state_path
from forge_syncd.library.manifest import FileRecord
from forge_syncd.library.safety import CopyRules, FoundCopies
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import RemoteFile
from forge_syncd.service.metrics import StateCollector

NS = 10**9
H = "ab" * 32
OTHER = "cd" * 32


@pytest.mark.parametrize(
    ("hashes", "check"),
    [
        (["md5", "sha1", "whirlpool", "crc32", "sha256", "blake3"], "sha256"),
        (["md5", "sha1"], "sha1"),  # rclone 1.60 over SFTP
        (["MD5"], "md5"),
        (["quickxor"], "size"),  # nothing we compute here
        ([], "size"),
    ],
)
def test_the_best_hash_both_ends_make_checks_the_copy(hashes: list[str], check: str) -> None:
    """sha256 > sha1 > md5 among the hashes the remote makes; else size and modtime."""
    assert choose_check(hashes) == check


def pinned(data: bytes, mtime_ns: int = 1_700_000_000 * NS) -> Pinned:
    digests = {kind: hashlib.new(kind, data).hexdigest() for kind in ("sha256", "sha1", "md5")}
    return Pinned(-1, len(data), mtime_ns, digests)


def test_a_copy_with_other_bytes_size_or_time_is_refused() -> None:
    """The remote's copy must have the library file's size and hash (or, without a hash,
    its modtime at the remote's precision); a missing copy is refused too."""
    here = pinned(b"x" * 10)
    good = {"Size": 10, "Hashes": {"sha1": here.digests["sha1"]}}
    assert mismatch(good, here, "sha1", NS) == ""
    assert "sha1" in mismatch({"Size": 10, "Hashes": {"sha1": "0" * 40}}, here, "sha1", NS)
    assert "size" in mismatch({"Size": 9, "Hashes": good["Hashes"]}, here, "sha1", NS)
    assert "not on the remote" in mismatch(None, here, "sha1", NS)
    assert mismatch({"Size": 10, "ModTime": "2023-11-14T22:13:20Z"}, here, "size", NS) == ""
    late = {"Size": 10, "ModTime": "2023-11-14T22:13:25Z"}
    assert "modification time" in mismatch(late, here, "size", NS)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("2026/a b.png", "comfy-1/2026/a b.png"),
        (".versions/a.20261207.png", "comfy-1/.versions/a.20261207.png"),
        ("../escape.png", None),
        ("a/../../x", None),
        ("/abs.png", None),
        ("a//b", None),
        ("./a", None),
    ],
)
def test_mirror_names_stay_under_the_container(path: str, name: str | None) -> None:
    """`<container>/<path>`; a path that could leave the mirror's folder is refused."""
    assert mirror_name("comfy-1", path) == name


def test_the_queue_follows_a_version_move_and_ignores_a_redelivered_event(
    tmp_path: Path,
) -> None:
    """A queued copy whose file moved to .versions/ becomes a copy of the version; the new
    bytes queue under the name; the first event read again queues nothing; bytes the mirror
    already holds under a name are not queued again."""
    state = MirrorState(state_path(tmp_path, "nas"))
    with state.transaction() as db:
        assert state.mark_applied(db, 1, "t")
        state.queue(db, "c/a.png", b"/lib/c/a.png", H, 10)
    with state.transaction() as db:
        assert state.mark_applied(db, 2, "t")
        assert state.repoint(db, "c/a.png", H, "c/.versions/a.1.png", b"/lib/c/.versions/a.1.png")
        assert state.mark_applied(db, 3, "t")
        state.queue(db, "c/a.png", b"/lib/c/a.png", OTHER, 12)
    with state.transaction() as db:
        assert not state.mark_applied(db, 1, "t")  # read again: the caller stops here
    queued = {(c.name, c.local_path, c.sha256) for c in state.next_copies(10)}
    assert queued == {
        ("c/.versions/a.1.png", b"/lib/c/.versions/a.1.png", H),
        ("c/a.png", b"/lib/c/a.png", OTHER),
    }
    version = next(c for c in state.next_copies(10) if c.sha256 == H)
    state.done(version, "sha256")
    with state.transaction() as db:
        assert not state.queue(db, "c/.versions/a.1.png", b"/x", H, 10)
    assert state.backlog(0.0).files == 1 and state.held("c/.versions/a.1.png") == (H, 10)
    state.close()


def test_a_copy_done_after_its_name_was_queued_again_leaves_the_new_one(tmp_path: Path) -> None:
    """A copy that finishes after the same name was queued with other bytes is recorded,
    and the newer copy stays queued; a dropped copy drops only itself."""
    state = MirrorState(state_path(tmp_path, "nas"))
    with state.transaction() as db:
        state.queue(db, "c/a.png", b"/a", H, 1)
    (first,) = state.next_copies(10)
    with state.transaction() as db:
        state.queue(db, "c/a.png", b"/a", OTHER, 2)
    state.done(first, "md5")
    state.drop(Copy(first.seq, first.name, first.local_path, H, 1))
    assert [c.sha256 for c in state.next_copies(10)] == [OTHER]
    state.close()


def test_require_mirror_reads_what_the_mirror_holds_by_name_and_bytes(tmp_path: Path) -> None:
    """The cleanup's check reads the sink's state: these bytes under `<container>/<path>`;
    other bytes, another container or no state file at all hold nothing."""
    assert not mirror_check(tmp_path, "nas", "c")(b"a.png", H)
    state = MirrorState(state_path(tmp_path, "nas"))
    state.done(Copy(1, "c/a.png", b"/a", H, 1), "sha256")
    state.close()
    assert mirror_check(tmp_path, "nas", "c")(b"a.png", H)
    assert not mirror_check(tmp_path, "nas", "c")(b"a.png", OTHER)
    assert not mirror_check(tmp_path, "nas", "d")(b"a.png", H)
    assert not mirror_check(tmp_path, "other", "c")(b"a.png", H)


def test_require_mirror_keeps_a_safe_file_until_mirrored() -> None:
    """A file the cleanup would purge is kept `not_mirrored` until the mirror holds its
    bytes; the drain moves verified files the mirror lacks to unsafe."""
    remote = RemoteFile(b"a.png", 100, 10 * NS)
    record = FileRecord(b"a.png", 100, 10 * NS, H, "synced")
    rules = CopyRules(Scope(("*",), ()), 0, 1 << 62)
    copies = FoundCopies({b"a.png": (100, 0)})
    held: set[tuple[bytes, str]] = set()
    policy = PurgePolicy((), NS, mirrored=lambda path, sha: (path, sha) in held)
    now = 100 * NS
    kept = decide(remote, record, copies, now, rules, policy, lambda _p: H)
    assert (kept.action, kept.reason) == (Action.KEEP, "not_mirrored")
    assert wait_for_mirror([remote], {b"a.png": H}, policy.mirrored or bool) == (
        [],
        [(b"a.png", "not_mirrored")],
    )
    held.add((b"a.png", H))
    purge = decide(remote, record, copies, now, rules, policy, lambda _p: H)
    assert (purge.action, purge.sha256) == (Action.PURGE, H)
    assert wait_for_mirror([remote], {b"a.png": H}, policy.mirrored or bool) == ([remote], [])


BASE = """media_root: /m
state_dir: /s
ingest:
  - {{name: catalog, type: catalog, path: /s/c.sqlite}}
  - {{name: nas, type: mirror, remote: "{remote}", rclone_config: {conf}}}
defaults:
  cleanup: {{require_mirror: {default}}}
containers:
  - name: forge-a
    kind: forge
    transport: local
    root: /box
    cleanup: {{require_mirror: {own}}}
"""


def config_text(tmp_path: Path, **values: str) -> Path:
    conf = tmp_path / "rclone.conf"
    conf.touch()
    fields = {"remote": "nas:forge-media", "conf": str(conf), "default": "null", "own": "nas"}
    path = tmp_path / "forge-sync.yaml"
    path.write_text(BASE.format(**{**fields, **values}))
    return path


def test_a_mirror_sink_and_require_mirror_load(tmp_path: Path) -> None:
    """The sink's keys land in its options; `require_mirror` names it."""
    config = load_config(config_text(tmp_path))
    (sink,) = [s for s in config.ingest if s.type == "mirror"]
    assert sink.options["remote"] == "nas:forge-media"
    assert config.containers[0].cleanup.require_mirror == "nas"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"own": "catalog"},
            "forge-sync.yaml:13: containers[0].cleanup.require_mirror: 'catalog' is not a"
            " mirror sink of ingest: (mirror sinks: nas)",
        ),
        (
            {"default": "nope"},
            "forge-sync.yaml:7: defaults.cleanup.require_mirror: 'nope' is not a mirror sink",
        ),
        (
            {"remote": "/srv/copy"},
            "forge-sync.yaml:5: ingest[1].remote: expected a remote of the rclone config",
        ),
        ({"remote": ":sftp,pass=x:/a"}, "forge-sync.yaml:5: ingest[1].remote: expected a remote"),
        (
            {"conf": "/nonexistent/rclone.conf"},
            "forge-sync.yaml:5: ingest[1].rclone_config: /nonexistent",
        ),
    ],
)
def test_bad_mirror_settings_name_file_line_and_key(
    tmp_path: Path, values: dict[str, str], expected: str
) -> None:
    """A `require_mirror` naming no mirror sink, a remote that is not `name:path` of the
    rclone config, a missing rclone config: each reported with file, line and key."""
    with pytest.raises(ConfigError) as caught:
        load_config(config_text(tmp_path, **values))
    assert expected in str(caught.value)


def test_check_config_exits_2_on_a_bad_require_mirror(tmp_path: Path) -> None:
    """`forge-syncd --check-config` exits 2 naming the key, without a traceback."""
    path = config_text(tmp_path, own="nowhere")
    done = subprocess.run(
        [sys.executable, "-m", "forge_syncd.cli.syncd", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "containers[0].cleanup.require_mirror" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_status_shows_the_mirror_backlog() -> None:
    """`status` adds the mirror's backlog to its sink: files, bytes, age, failures."""
    waiting = {
        "pending_files": 12,
        "pending_bytes": 31 * 1024 * 1024,
        "oldest_pending_s": 240.0,
        "mirrored_files": 5,
        "failures": 3,
        "last_error": "RcloneError: no space left\x1b[31m",
    }
    text = mirror_text(waiting)
    assert text.startswith("mirror: 12 files (31.0 MiB) to copy, oldest 4m")
    assert "failing 3 times: RcloneError: no space left\\x1b[31m" in text
    done = {"pending_files": 0, "mirrored_files": 1204}
    line = sink_lines([{"name": "nas", "pending": 0, "mirror": done}])
    assert line == ["events: nas up to date, mirror: all copied (1204 files)"]


def test_the_mirror_gauges_by_sink() -> None:
    """forge_sync_mirror_pending_files{sink} and forge_sync_mirror_failures{sink}."""
    registry = CollectorRegistry()
    registry.register(StateCollector(list, mirror_backlog=lambda: {"nas": (7, 2)}))
    assert registry.get_sample_value("forge_sync_mirror_pending_files", {"sink": "nas"}) == 7
    assert registry.get_sample_value("forge_sync_mirror_failures", {"sink": "nas"}) == 2
