"""The listing script (one GNU `find`) and the parser of its untrusted output."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

from forge_syncd.mtimes import MTIME_OUT_OF_RANGE, in_range, parse_seconds
from forge_syncd.paths import MAX_COMPONENT, unsafe_reason
from forge_syncd.remote.errors import ListingError
from forge_syncd.remote.types import MAX_SIZE, Limits, Listing, ListingMethod, RemoteFile, Skipped

FIND_TYPES = {
    b"f": None,
    b"l": "symlink",
    b"p": "fifo",
    b"s": "socket",
    b"b": "device",
    b"c": "device",
    b"D": "door",
}


RECORD = re.compile(rb"([^\0]*)\0([^\0]*)\0([^\0]*)\0([^\0]*)\0")  # four NUL-ended fields


def find_script(root: str, folders: tuple[str, ...]) -> str:
    """Given a root and its folders (empty: the whole root), return the listing sh script.

    Each record is four NUL-terminated fields: type, size, mtime, path (`./` + relative).
    """
    lines = find_start(root, folders)
    lines.append(r"""exec find -P "$@" ! -type d -printf '%y\0%s\0%T@\0%p\0'""")
    return "\n".join(lines) + "\n"


def find_start(root: str, folders: tuple[str, ...]) -> list[str]:
    """The lines a listing script starts with: into the root (exit 3 when it is not
    there), then the folders that exist as `./name` in "$@" (none: exit 0; no folders
    given: ".")."""
    lines = [f"cd -- {shlex.quote(root)} || exit 3", "set --"]
    if folders:
        quoted = " ".join(shlex.quote(folder) for folder in folders)
        lines.append(
            f"for d in {quoted}; do"
            ' if [ -e "$d" ] || [ -L "$d" ]; then set -- "$@" "./$d"; fi; done'
        )
        lines.append('[ "$#" -gt 0 ] || exit 0')
    else:
        lines.append("set -- .")
    return lines


def parse_find_output(data: bytes, limits: Limits = Limits()) -> Listing:
    """Given the raw stdout of `find_script`, return the Listing. Pure; trusts nothing.
    Raise ListingError past `limits.files` records."""
    listing = Listing(method=ListingMethod.FIND)
    end = 0
    # One record at a time (a split of 100,000 records would hold 400,000 fields at once).
    for count, match in enumerate(RECORD.finditer(data)):
        if count >= limits.files:
            raise ListingError(too_many(limits))
        _parse_record(match.groups(), listing)  # type: ignore[arg-type]
        end = match.end()
    tail = data[end:]
    if tail and not tail.endswith(b"\0"):
        listing.warnings.append("listing output was not NUL-terminated; ignored its tail")
    if b"\0" in tail:
        listing.warnings.append("listing output ended in a partial record; ignored it")
    _drop_repeats(listing)
    return listing


def listing_of_find(
    stdout: bytes,
    stderr: bytes,
    status: int,
    root: str,
    where: str,
    reuse: Callable[[bytes], bool] | None = None,
    limits: Limits = Limits(),
) -> Listing:
    """Given what `find_script` printed and its exit status, return the Listing: exit 3 is
    a root that is not there or not readable, 1 a listing with errors (a warning), anything
    but 0 and 1 a failure. `where` says where find ran, for the messages ("remote " or "").
    `reuse(stdout)` True: the caller's remembered listing holds (an empty Listing, reused).
    Raise ListingError (also past `limits.size` bytes: a listing the probe's command
    carried was read with the probe's allowance besides)."""
    if len(stdout) > limits.size:
        raise ListingError(f"the listing is larger than {limits.size} bytes (max_listing_size)")
    if status == 3:
        place = " on the remote" if where else ""
        raise ListingError(f"root {root} does not exist{place} or is not readable")
    if status not in (0, 1):
        said = stderr.decode("utf-8", "replace").strip()[:500]
        raise ListingError(f"{where}find failed (exit {status}): {said}")
    if reuse is not None and reuse(stdout):
        listing = Listing(method=ListingMethod.FIND, reused=True)
    else:
        listing = parse_find_output(stdout, limits)
    if status == 1:
        said = stderr.decode("utf-8", "replace").strip()[:500]
        listing.warnings.append(f"find reported errors: {said}")
    return listing


def too_many(limits: Limits) -> str:
    return f"the listing holds more than {limits.files} files (max_listing_files)"


def _drop_repeats(listing: Listing) -> None:
    """Keep each name once. Overlapping folders list a file twice (dropped quietly); a
    name listed again with another size or mtime is a lying listing: the later record is
    skipped and reported (two fetches of one name would race for one local file)."""
    seen: dict[bytes, RemoteFile] = {}
    for remote in listing.files:
        first = seen.setdefault(remote.path, remote)
        if first is not remote and first != remote:
            listing.skipped.append(Skipped(remote.path, "listed twice"))
    if len(seen) != len(listing.files):
        listing.files = list(seen.values())


def _parse_record(record: tuple[bytes, bytes, bytes, bytes], listing: Listing) -> None:
    kind, size_text, mtime, raw_path = record
    regular = kind == b"f"
    size = int(size_text) if size_text.isdigit() and len(size_text) <= 20 else None
    mtime_ns = parse_seconds(mtime)

    def skip(path: bytes, reason: str) -> None:
        listing.skipped.append(Skipped(path, reason, regular, size or 0, mtime_ns))

    path = raw_path[2:] if raw_path.startswith(b"./") else raw_path
    if not raw_path.startswith(b"./"):
        return skip(raw_path, "name outside the root")
    reason = None if plainly_safe(path) else unsafe_reason(path)
    if reason is not None:
        return skip(path, reason)
    if kind not in FIND_TYPES or size is None or mtime_ns is None:
        return skip(path, "malformed listing record")
    if size > MAX_SIZE:  # larger than any max_file_size (and than SQLite holds)
        return skip(path, "too_large")
    if not in_range(mtime_ns):
        return skip(path, MTIME_OUT_OF_RANGE)
    other = FIND_TYPES[kind]
    if other is not None:
        return skip(path, other)
    listing.files.append(RemoteFile(path, size, mtime_ns))
    return None


def plainly_safe(path: bytes) -> bool:
    """A quick yes for most names (this runs for every listed file on every poll):
    relative, no empty component, no component starting with a dot (so no `.`, `..` or
    temporary name), at most 255 bytes in all. Anything else gets `unsafe_reason`."""
    return (
        0 < len(path) <= MAX_COMPONENT
        and not path.startswith((b"/", b"."))
        and not path.endswith(b"/")
        and b"/." not in path
        and b"//" not in path
        and b"\0" not in path
    )
