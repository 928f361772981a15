"""Pure decisions: what to fetch, which names to trust, how globs match, how listings parse."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forge_syncd.manifest import FileRecord
from forge_syncd.mtimes import parse_seconds
from forge_syncd.paths import local_path, unsafe_reason
from forge_syncd.patterns import FileFilter, glob_matches
from forge_syncd.remote.hashing import parse_sha256sum_z
from forge_syncd.remote.listing import (
    RemoteFile,
    find_script,
    parse_find_output,
    plainly_safe,
)
from forge_syncd.sync import plan_sync

NS = 10**9
NOW = 2_000_000_000 * NS
ALL = FileFilter(("*",), ())


class Copies:
    """Local copies given as {path: (size, mtime_ns)}."""

    def __init__(self, found: dict[bytes, tuple[int, int]]) -> None:
        self.found = found

    def get(self, path: bytes, /) -> tuple[int, int] | None:
        return self.found.get(path)

    def has_size(self, path: bytes, size: int, /) -> bool:
        return path in self.found and self.found[path][0] == size


def plan(files, records=None, local=None, wants=ALL, settle=0, max_size=10**12):  # type: ignore[no-untyped-def]
    return plan_sync(files, records or {}, Copies(local or {}), wants, NOW, settle * NS, max_size)


def test_new_file_is_fetched_and_unchanged_file_is_not() -> None:
    """New remote files are fetched; a manifest match with a local copy is unchanged."""
    new = RemoteFile(b"new.png", 10, 1000 * NS)
    old = RemoteFile(b"old.png", 20, 1000 * NS)
    records = {b"old.png": FileRecord(b"old.png", 20, 1000 * NS + 5, None, "synced")}
    result = plan([new, old], records, {b"old.png": (20, 0)})
    assert result.fetch == [new] and result.unchanged == 1


@pytest.mark.parametrize(
    ("record_size", "record_mtime", "local", "decision"),
    [
        (20, 1000, (20, 0), "unchanged"),
        (21, 1000, (20, 0), "fetch"),  # size changed on the remote
        (20, 999, (20, 0), "fetch"),  # mtime changed on the remote
        (20, 1000, None, "fetch"),  # local copy gone
        (20, 1000, (7, 0), "fetch"),  # local copy truncated
    ],
)
def test_manifest_and_local_state_decide_refetch(
    record_size: int, record_mtime: int, local: tuple[int, int] | None, decision: str
) -> None:
    """A changed remote file, or a missing or resized local copy, is fetched again."""
    remote = RemoteFile(b"a.png", 20, 1000 * NS)
    records = {b"a.png": FileRecord(b"a.png", record_size, record_mtime * NS, None, "synced")}
    result = plan([remote], records, {b"a.png": local} if local else {})
    assert (result.fetch == [remote]) == (decision == "fetch")
    assert (result.unchanged == 1) == (decision == "unchanged")


def test_settle_too_large_and_adopt() -> None:
    """Young files wait, big files are skipped, same-size same-mtime local copies are adopted."""
    young = RemoteFile(b"young.png", 1, NOW - 2 * NS)
    big = RemoteFile(b"big.mp4", 5000, 1000 * NS)
    there = RemoteFile(b"there.png", 3, 1000 * NS + 123)
    result = plan(
        [young, big, there], local={b"there.png": (3, 1000 * NS)}, settle=5, max_size=4000
    )
    assert result.skipped == [(young, "settling"), (big, "too_large")]
    assert result.adopt == [there] and result.fetch == []


def test_filters_apply_before_anything_else() -> None:
    """Excluded and non-included files are neither fetched nor counted."""
    wants = FileFilter(("*.png",), ("*grid*",))
    files = [RemoteFile(p, 1, 0) for p in (b"a.png", b"grid-1.png", b"a.txt")]
    result = plan(files, wants=wants)
    assert [f.path for f in result.fetch] == [b"a.png"] and len(result.wanted) == 1


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.png", b"a/b/c.png", True),
        ("*.png", b"a/b/c.PNG", False),
        ("*favorite*", b"x/my favorite.png", True),
        ("keep/**", b"keep/a/b.png", True),
        ("keep/**", b"other/keep/b.png", False),
        ("**/grids/*.png", b"grids/a.png", True),
        ("**/grids/*.png", b"x/y/grids/a.png", True),
        ("txt2img-images/*.png", b"txt2img-images/d/a.png", False),
        ("[!a]*.png", b"b.png", True),
        ("[!a]*.png", b"a.png", False),
        ("?.png", b"\xff.png", True),
        ("*.png", b"new\nline.png", True),
    ],
)
def test_glob_matching(pattern: str, path: bytes, matches: bool) -> None:
    """Globs match like the shell; with a `/` they match the relative path, `**` spans."""
    assert glob_matches(pattern, path) is matches


@pytest.mark.parametrize(
    "name",
    [
        b"",
        b"/etc/passwd",
        b"../x.png",
        b"a/../../x.png",
        b"a//b.png",
        b"./a.png",
        b"a\0b",
        b"a/" + b"x" * 256,
        b"d/.fs-0123456789abcdef.part",
    ],
)
def test_unsafe_names_are_refused(name: bytes) -> None:
    """Absolute paths, `..`, empty or `.` components, NUL, overlong names and names like
    our temporary files are refused."""
    assert unsafe_reason(name) is not None
    with pytest.raises(ValueError):
        local_path(b"/srv/media/c", name)


@given(st.binary(min_size=1, max_size=300))
def test_accepted_names_stay_inside_the_container(name: bytes) -> None:
    """Whatever bytes a remote sends, an accepted name maps inside the container folder."""
    if unsafe_reason(name) is None:
        joined = local_path(b"/srv/media/c", name)
        assert joined.startswith(b"/srv/media/c/")
        assert os.path.normpath(joined) == joined


def record(kind: bytes, size: bytes, mtime: bytes, path: bytes) -> bytes:
    return b"\0".join([kind, size, mtime, path]) + b"\0"


def test_find_output_parsing_trusts_nothing() -> None:
    """Regular files are kept; links, FIFOs, devices, `..`, absolute and malformed records
    are skipped with a reason; an unterminated tail is ignored with a warning."""
    data = (
        record(b"f", b"12", b"1700000000.5000000000", b"./a/new\nline.png")
        + record(b"l", b"7", b"1700000000", b"./a/link.png")
        + record(b"p", b"0", b"1700000000", b"./a/fifo.png")
        + record(b"c", b"0", b"1700000000", b"./dev.png")
        + record(b"f", b"1", b"1700000000", b"./../escape.png")
        + record(b"f", b"1", b"1700000000", b"/etc/shadow")
        + record(b"f", b"x1", b"1700000000", b"./bad-size.png")
        + b"f\x0012\x00170000"
    )
    listing = parse_find_output(data)
    assert listing.files == [RemoteFile(b"a/new\nline.png", 12, 1_700_000_000_500_000_000)]
    reasons = {s.path: s.reason for s in listing.skipped}
    assert reasons[b"a/link.png"] == "symlink"
    assert reasons[b"a/fifo.png"] == "fifo"
    assert reasons[b"dev.png"] == "device"
    assert "'..'" in reasons[b"../escape.png"]
    assert reasons[b"/etc/shadow"] == "name outside the root"
    assert reasons[b"bad-size.png"] == "malformed listing record"
    assert listing.warnings


@given(st.binary(max_size=2000))
def test_find_parser_never_raises_and_never_accepts_unsafe_names(data: bytes) -> None:
    """Random bytes as listing output never crash the parser or yield an unsafe name."""
    listing = parse_find_output(data)
    assert all(unsafe_reason(f.path) is None for f in listing.files)


def test_mtime_parsing() -> None:
    """find's %T@ converts to nanoseconds exactly."""
    assert parse_seconds(b"1700000000.1234567890") == 1_700_000_000_123_456_789
    assert parse_seconds(b"1700000000") == 1_700_000_000 * NS
    assert parse_seconds(b"-2.5") == -1_500_000_000  # find: floor seconds, then the ns after
    assert parse_seconds(b"-315619200.0000000050") == -315_619_199_999_999_995
    assert parse_seconds(b"13569465600.123456789") == 13_569_465_600_123_456_789  # year 2400


def test_find_script_quotes_configured_paths() -> None:
    """Configured root and folders are shell-quoted; nothing else is spliced in."""
    script = find_script("/work space/it's", ("a b", "c"))
    assert "cd -- '/work space/it'\"'\"'s'" in script
    assert "'a b' c" in script


def test_sha256sum_z_parsing_keeps_only_requested_names() -> None:
    """Only names we asked for are taken from sha256sum's output, newlines and all."""
    digest = "ab" * 32
    out = f"{digest}  a\nb.png\0{digest}  other.png\0".encode()
    assert parse_sha256sum_z(out, {b"a\nb.png"}) == {b"a\nb.png": digest}


@given(
    st.lists(
        st.sampled_from(
            [
                "*.png",
                "*.PNG",
                "keep/**",
                "**/grids/*.png",
                "[!a]*",
                "?.txt",
                "*favorite*",
                "a/*/c",
                "*",
            ]
        ),
        max_size=5,
    ),
    st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\0", b"")).filter(bool),
)
def test_compiled_pattern_sets_match_like_each_glob(patterns: list[str], path: bytes) -> None:
    """The one-regex-per-set matcher used on every poll agrees with matching glob by glob."""
    from forge_syncd.patterns import any_matches, set_matches

    assert set_matches(tuple(patterns), path) == any_matches(patterns, path)


@given(
    st.binary(max_size=300)
    | st.lists(
        st.sampled_from([b"a", b".", b"..", b"/", b"\0", b".fs-0123456789abcdef.part", b"x" * 200])
    ).map(b"".join)
)
def test_the_quick_safe_check_never_accepts_what_the_full_check_refuses(path: bytes) -> None:
    if plainly_safe(path):
        assert unsafe_reason(path) is None


@pytest.mark.parametrize("size", [b"12\n", b" 12", b"1_000", b"+5", b"", b"1" * 21])
def test_a_size_that_is_not_plain_digits_is_malformed(size: bytes) -> None:
    listing = parse_find_output(b"f\0" + size + b"\x001700000000.5\0./a.png\0")
    assert listing.files == [] and listing.skipped[0].reason == "malformed listing record"


@pytest.mark.parametrize(
    "mtime", [b"1.2.3", b"1_7.0", b" 17", b"17\n", b"-", b".5", b"1." + b"1" * 13]
)
def test_an_mtime_that_is_not_a_plain_number_is_malformed(mtime: bytes) -> None:
    listing = parse_find_output(b"f\x0012\0" + mtime + b"\0./a.png\0")
    assert listing.files == [] and listing.skipped[0].reason == "malformed listing record"
