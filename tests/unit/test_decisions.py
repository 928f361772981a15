"""Pure decisions: what to fetch, which names to trust, how globs match, how listings parse."""

from __future__ import annotations

import os

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from forge_syncd.library.manifest import FileRecord
from forge_syncd.library.safety import FoundCopies
from forge_syncd.mtimes import MAX_MTIME_S, MIN_MTIME_S, parse_seconds
from forge_syncd.paths import TEMP_NAME as PATHS_TEMP
from forge_syncd.paths import local_path, unsafe_reason
from forge_syncd.patterns import Scope, glob_matches
from forge_syncd.remote.types import RemoteFile
from forge_syncd.sync import plan_sync
from forge_syncd.transports.shell.hashing import parse_sha256sum_z
from forge_syncd.transports.shell.listing import find_script, parse_find_output, plainly_safe

NS = 10**9
NOW = 2_000_000_000 * NS
ALL = Scope(("*",), ())


def plan(files, records=None, local=None, wants=ALL, settle=0, max_size=10**12):  # type: ignore[no-untyped-def]
    return plan_sync(
        files, records or {}, FoundCopies(local or {}), wants, NOW, settle * NS, max_size
    )


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
    wants = Scope(("*.png",), ("*grid*",))
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


# -- the find parser against records that are mostly well formed --------------------------
# Each generated record carries what it should give: the RemoteFile when every field is
# well formed and its name is safe by the rules below (written from SPEC's wording, not
# from paths.unsafe_reason), else None. A name is a list of (component, safety) where
# safety says when the component is unsafe: "never", "always", "first" (only at the top:
# `.versions`) or "last" (only as the file name: our temporary names).
SAFE_COMPONENTS = st.one_of(
    st.sampled_from(
        [
            *(b"a.png", b"day", b"2026-01-01", b"image 1.png", b"\xff\xfe.png", b"new\nline"),
            *(b"-rf", b".hidden.png", b"...", b".versions2", b"x" * 255, b".fs-0123.part"),
        ]
    ),
    st.binary(min_size=1, max_size=20)
    .map(lambda b: b.replace(b"/", b"_").replace(b"\0", b"_"))
    .filter(lambda b: b not in (b".", b"..") and not PATHS_TEMP.match(b) and b != b".versions"),
).map(lambda part: (part, "never"))
UNSAFE_COMPONENTS = st.sampled_from(
    [
        (b"", "always"),
        (b".", "always"),
        (b"..", "always"),
        (b"x" * 256, "always"),
        (b".versions", "first"),
        (b".fs-0123456789abcdef.part", "last"),
    ]
)
COMPONENT = st.one_of(SAFE_COMPONENTS, SAFE_COMPONENTS, SAFE_COMPONENTS, UNSAFE_COMPONENTS)
OTHER_KIND = st.one_of(
    st.sampled_from([b"l", b"p", b"s", b"b", b"c", b"D", b"d", b"", b"ff", b"F"]),
    st.binary(max_size=3).map(lambda b: b.replace(b"\0", b"")),
)
SIZES = st.one_of(
    st.integers(0, 2**63 - 1).map(lambda n: (str(n).encode(), n)),
    st.integers(0, 10**6).map(lambda n: (str(n).encode(), n)),
)
BAD_SIZES = st.sampled_from(
    [
        *(b"", b"-1", b"+5", b" 12", b"12\n", b"1_000", b"0x10", b"1e3", str(2**63).encode()),
        *(b"1" * 21, b"\xd9\xa3"),  # past 64 bits; an Arabic-Indic digit
    ]
)
IN_RANGE = st.integers(MIN_MTIME_S + 1, MAX_MTIME_S - 1)
MTIMES = st.tuples(
    IN_RANGE, st.one_of(st.none(), st.text("0123456789", max_size=12).map(str.encode))
)
BAD_MTIMES = st.one_of(
    st.sampled_from([b"", b"-", b".5", b"1.2.3", b" 17", b"17\n", b"1." + b"1" * 13, b"1e9"]),
    st.sampled_from([str(MAX_MTIME_S + 1).encode(), str(MIN_MTIME_S - 1).encode()]),
)


def mtime_field(seconds: int, fraction: bytes | None) -> tuple[bytes, int]:
    """Return find's %T@ text for `seconds` and `fraction` digits, and its nanoseconds
    (find prints the floor of the seconds, then the nanoseconds after them)."""
    text = str(seconds).encode() + (b"" if fraction is None else b"." + fraction)
    nanos = int((fraction or b"").ljust(9, b"0")[:9])
    return text, seconds * NS + nanos


def name_is_safe(parts: list[tuple[bytes, str]]) -> bool:
    """Given a name's tagged components, return whether it is safe (see above)."""
    last = len(parts) - 1
    for index, (_part, when) in enumerate(parts):
        if when == "always" or (when, index) in (("first", 0), ("last", last)):
            return False
    return True


@st.composite
def find_records(draw: st.DrawFn) -> tuple[bytes, RemoteFile | None, bool]:
    """Return (record bytes, the RemoteFile it must give or None, whether it is well formed
    in every field but an unsafe name)."""
    parts = draw(st.lists(COMPONENT, min_size=1, max_size=4))
    flaw = draw(st.sampled_from(["none"] * 6 + ["kind", "size", "mtime", "prefix"]))
    kind = draw(OTHER_KIND) if flaw == "kind" else b"f"
    size_ok, mtime_ok = flaw != "size", flaw != "mtime"
    size, size_n = draw(SIZES) if size_ok else (draw(BAD_SIZES), -1)
    mtime, mtime_ns = mtime_field(*draw(MTIMES)) if mtime_ok else (draw(BAD_MTIMES), -1)
    prefix = draw(st.sampled_from([b"/", b"", b"../", b".//"])) if flaw == "prefix" else b"./"
    name = b"/".join(part for part, _ in parts)
    formed = kind == b"f" and size_ok and mtime_ok and prefix == b"./"
    safe = name_is_safe(parts)
    expect = RemoteFile(name, size_n, mtime_ns) if formed and safe else None
    return b"\0".join([kind, size, mtime, prefix + name]) + b"\0", expect, formed and not safe


@st.composite
def find_outputs(draw: st.DrawFn) -> tuple[bytes, list[RemoteFile], int, int]:
    """Return (find output, the files it must give in order, records that must be accepted,
    records well formed but for an unsafe name). An output may end in a torn record."""
    records = draw(st.lists(find_records(), min_size=1, max_size=8))
    tail = draw(
        st.one_of(st.just(b""), st.binary(max_size=30).map(lambda b: b.replace(b"\0", b"")))
    )
    files: dict[bytes, RemoteFile] = {}
    for _record, expect, _unsafe in records:
        if expect is not None:
            files.setdefault(expect.path, expect)  # a name listed again: the first counts
    accepted = sum(expect is not None for _, expect, _ in records)
    unsafe = sum(unsafe for _, _, unsafe in records)
    return b"".join(r for r, _, _ in records) + tail, list(files.values()), accepted, unsafe


def test_find_parser_accepts_exactly_the_safe_well_formed_records() -> None:
    """Listings made of mostly well-formed records (sizes and mtimes at their limits, names
    with safe and unsafe components, other file types, torn tails): every safe, well-formed
    record gives its file with its size and nanosecond mtime (the first, for a name listed
    twice); no unsafe name, malformed field or non-file is ever accepted; nothing raises.

    Both halves are shown to be exercised: at least half the listings accept a file, and
    at least a quarter hold a record refused only for its name."""
    seen = {"listings": 0, "accepting": 0, "unsafe_names": 0}

    @settings(max_examples=400, derandomize=True, deadline=None)
    @given(find_outputs())
    def check(case: tuple[bytes, list[RemoteFile], int, int]) -> None:
        data, files, accepted, unsafe = case
        listing = parse_find_output(data)
        assert all(unsafe_reason(f.path) is None for f in listing.files), listing.files
        assert listing.files == files, (data, listing)
        seen["listings"] += 1
        seen["accepting"] += bool(accepted)
        seen["unsafe_names"] += bool(unsafe)
        event("accepts a file" if accepted else "accepts nothing")
        event("holds a well-formed record with an unsafe name" if unsafe else "no unsafe name")

    check()
    assert seen["accepting"] >= seen["listings"] // 2, seen
    assert seen["unsafe_names"] >= seen["listings"] // 4, seen


@given(st.binary(max_size=2000))
def test_find_parser_never_raises_on_random_bytes(data: bytes) -> None:
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
