"""A lean, strict reader of the tar stream a remote `tar -c -H gnu` sends.

Only what we asked for is accepted: a regular-file member whose name is one of the
requested names and whose size is the one the listing reported. Anything else — links,
devices, folders, `..`, absolute names, unrequested or repeated names, short or oversized
members, unknown header types, bad checksums — is refused (its bytes are skipped, never
written) and reported. Member data goes to a caller-supplied writer; nothing here touches
the filesystem. Remote bytes are never handed to `tar -x`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from forge_syncd.paths import unsafe_reason

BLOCK = 512
MAX_LONGNAME = 64 * 1024
CHUNK = 256 * 1024


class TarError(Exception):
    """The stream is not a tar stream we can keep reading (framing is lost)."""


class Readable(Protocol):
    def read(self, size: int) -> bytes: ...


@dataclass(frozen=True)
class Member:
    name: bytes
    size: int
    mtime: int
    kind: bytes


def _octal(field: bytes) -> int:
    """Parse a numeric header field: octal text, or GNU base-256 for large or negative
    values (the first byte's high bit set; the rest of the field, from that byte's next
    bit, a two's complement number: mtimes before 1970 are negative)."""
    if field[:1] and field[0] & 0x80:
        value = int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
        if field[0] & 0x40:
            value -= 1 << (8 * len(field) - 1)
        return value
    text = field.split(b"\0", 1)[0].strip(b" \0")
    return int(text, 8) if text else 0


def parse_header(block: bytes) -> Member | None:
    """Given one 512-byte header, return its Member, or None for an end-of-archive block.

    Raise TarError for a bad checksum (the stream cannot be trusted past it).
    """
    if block == b"\0" * BLOCK:
        return None
    try:
        stored = _octal(block[148:156])
    except ValueError as exc:
        raise TarError("unreadable header checksum") from exc
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored != computed:
        raise TarError("tar header checksum mismatch")
    try:
        size, mtime = _octal(block[124:136]), _octal(block[136:148])
    except ValueError as exc:
        raise TarError("unreadable size or mtime in header") from exc
    name = block[:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0] if block[257:263] == b"ustar\0" else b""
    if prefix:
        name = prefix + b"/" + name
    return Member(name, size, mtime, block[156:157])


class TarReader:
    """Reads members from `stream`; for each accepted member calls `start(name)`, then
    `write(name, chunk)` for its data and `end(name, failure)` when it ends."""

    def __init__(
        self,
        stream: Readable,
        wanted: Mapping[bytes, int],
        mtimes: Mapping[bytes, int] | None = None,
    ) -> None:
        """`wanted`: name -> the listed size; `mtimes`: name -> the listed mtime in whole
        seconds (a member with another one is a newer version: refused, not trusted)."""
        self.stream = stream
        self.wanted = wanted  # name -> expected size (read, never changed)
        self.mtimes = mtimes or {}
        self.received: set[bytes] = set()  # each name is accepted once
        self.refused: list[tuple[bytes, str]] = []

    def _read_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.stream.read(min(CHUNK, size - len(data)))
            if not chunk:
                raise TarError("tar stream ended in the middle of a member")
            data += chunk
        return bytes(data)

    def _skip(self, size: int) -> None:
        remaining = _padded(size)
        while remaining:
            remaining -= len(self._read_exact(min(CHUNK, remaining)))

    def members(
        self,
        write: Callable[[bytes, bytes], None],
        start: Callable[[bytes], None],
        end: Callable[[bytes, OSError | None], None],
    ) -> None:
        """Read the whole stream. `start(name)` before an accepted member's data,
        `write(name, chunk)` for each chunk, `end(name, failure)` after it: `failure` is
        the OSError that stopped `write` (the rest of the member was skipped), or None."""
        longname: bytes | None = None
        while True:
            block = self.stream.read(BLOCK)
            if not block:
                return  # a stream without end blocks: what was complete stays complete
            if len(block) < BLOCK:
                block += self._read_exact(BLOCK - len(block))
            member = parse_header(block)
            if member is None:
                return
            if member.kind == b"L":
                if member.size > MAX_LONGNAME:
                    raise TarError("GNU long name too long")
                longname = self._read_exact(_padded(member.size))[: member.size].rstrip(b"\0")
                continue
            if member.kind == b"x":  # a PAX header (the Docker engine's archives): its path
                if member.size > MAX_LONGNAME:
                    raise TarError("PAX header too long")
                longname = pax_path(self._read_exact(_padded(member.size))[: member.size])
                continue
            name = longname if longname is not None else member.name
            longname = None
            reason = self._refusal(name, member)
            if reason is not None:
                self.refused.append((name, reason))
                self._skip(member.size)
                continue
            self._copy(name, member.size, write, start, end)

    def _refusal(self, name: bytes, member: Member) -> str | None:
        if member.kind not in (b"0", b"\0", b"7"):
            kinds = {
                b"1": "hard link",
                b"2": "symlink",
                b"3": "device",
                b"4": "device",
                b"5": "folder",
                b"6": "fifo",
                b"K": "long link name",
            }
            return f"not a regular file ({kinds.get(member.kind, 'type ' + repr(member.kind))})"
        unsafe = unsafe_reason(name)
        if unsafe is not None:
            return unsafe
        if name not in self.wanted or name in self.received:
            return "not requested (or sent twice)"
        if member.size != self.wanted[name]:
            return f"size {member.size} differs from the listing's {self.wanted[name]}"
        listed_mtime = self.mtimes.get(name)
        if listed_mtime is not None and member.mtime != listed_mtime:
            return f"mtime {member.mtime} differs from the listing's {listed_mtime}"
        return None

    def _copy(
        self,
        name: bytes,
        size: int,
        write: Callable[[bytes, bytes], None],
        start: Callable[[bytes], None],
        end: Callable[[bytes, OSError | None], None],
    ) -> None:
        self.received.add(name)
        start(name)
        remaining = size
        failure: OSError | None = None
        while remaining:
            chunk = self._read_exact(min(CHUNK, remaining))
            remaining -= len(chunk)
            if failure is None:
                try:
                    write(name, chunk)
                except OSError as exc:
                    failure = exc  # the stream goes on: later members may still fit
        padding = _padded(size) - size
        if padding:
            self._read_exact(padding)
        end(name, failure)


def pax_path(data: bytes) -> bytes | None:
    """Given a PAX extended header's records (`LEN key=value\\n`), return its `path`, or
    None. Raise TarError where a record's length does not hold (framing is lost)."""
    path = None
    at = 0
    while at < len(data):
        length_text, space, _ = data[at : at + 21].partition(b" ")
        if not space or not length_text.isdigit():
            raise TarError("unreadable PAX record")
        end = at + int(length_text)
        record = data[at + len(length_text) + 1 : end]
        if end > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise TarError("unreadable PAX record")
        key, _, value = record[:-1].partition(b"=")
        if key == b"path":
            path = value
        at = end
    return path


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK
