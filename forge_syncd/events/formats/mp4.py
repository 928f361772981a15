"""MP4 / QuickTime (ISO base media): the metadata tags, duration and frame rate.

ffmpeg writes `-metadata key=value` (VideoHelperSuite: `comment` holding the prompt and the
workflow; ComfyUI's own video saver: `prompt` and `workflow`) into `moov/udta/meta/ilst`:
iTunes-style items named by a four-character code (`©cmt` for comment) by default, or, with
`-movflags use_metadata_tags`, items numbered after the names in `moov/udta/meta/keys`. Boxes
are walked by their headers and seeked over (the media data is never read); the video track's
`mdhd` and `stts` give its duration and frame count, `mvhd` the file's duration.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from forge_syncd.events.budget import MetadataProblem, Meter
from forge_syncd.events.formats.common import Found

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"meta", b"ilst"}
MAX_DEPTH = 8
MAX_BOXES = 10_000
MAX_SMALL_BOX = 4096  # mvhd, tkhd, mdhd, hdlr: far smaller
MAX_STTS_ENTRIES = 100_000
ITUNES_NAMES = {b"\xa9cmt": "comment", b"\xa9nam": "title", b"desc": "description"}


@dataclass
class _Track:
    handler: bytes = b""
    timescale: int = 0
    duration: int = 0
    frames: int = 0
    size: tuple[int, int] | None = None


@dataclass
class _Walk:
    meter: Meter
    found: Found
    boxes: int = 0
    keys: list[str] = field(default_factory=list)
    items: list[tuple[bytes, bytes]] = field(default_factory=list)
    track: _Track = field(default_factory=_Track)
    video: _Track | None = None
    movie: tuple[int, int] | None = None  # (timescale, duration)


def read_mp4(path: bytes, meter: Meter, found: Found) -> None:
    """Given an MP4/MOV file, put its metadata tags into `found.texts` (by name: `comment`,
    `prompt`, `workflow`, ...), its video size, `duration_s` and `frame_rate` into `found`.

    Raise OSError if the file cannot be read, BudgetExceeded if the CPU budget runs out.
    """
    with open(path, "rb") as handle:
        end = handle.seek(0, 2)
        handle.seek(0)
        first = handle.read(8)
        if len(first) < 8 or first[4:8] not in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
            meter.note(MetadataProblem.MALFORMED, "not an MP4 file")
            return
        walk = _Walk(meter, found)
        _boxes(handle, 0, min(end, meter.budget.max_scan), 0, walk)
    _finish(walk)


def _finish(walk: _Walk) -> None:
    """Turn what the walk collected into tags, duration and frame rate."""
    found = walk.found
    for name, value in walk.items:
        if len(name) == 4 and name[0] == 0 and 0 < int.from_bytes(name, "big") <= len(walk.keys):
            key = walk.keys[int.from_bytes(name, "big") - 1]
        else:
            key = ITUNES_NAMES.get(name, name.decode("latin-1").lstrip("\xa9"))
        found.texts.setdefault(key, value.decode("utf-8", "replace"))
    video = walk.video
    if video is not None and video.timescale and video.duration:
        seconds = video.duration / video.timescale
        found.duration_s = round(seconds, 3)
        if video.frames:
            found.frame_rate = round(video.frames / seconds, 3)
    if walk.movie is not None and walk.movie[0] and walk.movie[1]:
        found.duration_s = round(walk.movie[1] / walk.movie[0], 3)
    if video is not None and video.size is not None and all(video.size):
        found.size = video.size


def _boxes(handle: BinaryIO, start: int, end: int, depth: int, walk: _Walk) -> None:
    """Walk the boxes from `start` to `end`, descending into the containers we need."""
    position = start
    while position + 8 <= end:
        walk.boxes += 1
        if walk.boxes > MAX_BOXES:
            walk.meter.note(MetadataProblem.TOO_LARGE, f"over {MAX_BOXES} MP4 boxes")
            return
        walk.meter.tick("MP4 boxes")
        handle.seek(position)
        head = handle.read(8)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head)
        body = position + 8
        if size == 1:
            large = handle.read(8)
            if len(large) < 8:
                return
            size, body = struct.unpack(">Q", large)[0], position + 16
        elif size == 0:
            size = end - position
        if size < body - position:
            walk.meter.note(MetadataProblem.MALFORMED, f"MP4 box {kind!r} of {size} bytes")
            return
        box_end = min(position + size, end)
        _box(handle, kind, body, box_end, depth, walk)
        position += size


def _box(handle: BinaryIO, kind: bytes, body: int, end: int, depth: int, walk: _Walk) -> None:
    """Read one box we care about (its body from `body` to `end`)."""
    if kind in CONTAINERS and depth < MAX_DEPTH:
        if kind == b"trak":
            walk.track = _Track()
        if kind == b"meta":
            body += _meta_version_bytes(handle, body)
        if kind == b"ilst":
            _ilst(handle, body, end, walk)
        else:
            _boxes(handle, body, end, depth + 1, walk)
        if kind == b"trak" and walk.track.handler == b"vide" and walk.video is None:
            walk.video = walk.track
        return
    if kind not in (b"mvhd", b"tkhd", b"mdhd", b"hdlr", b"keys", b"stts"):
        return
    handle.seek(body)
    if kind == b"keys":
        walk.keys = _keys(handle.read(min(end - body, walk.meter.budget.max_text)), walk)
    elif kind == b"stts":
        walk.track.frames = _frames(handle.read(min(end - body, 8 + 8 * MAX_STTS_ENTRIES)))
    else:
        _header(kind, handle.read(min(end - body, MAX_SMALL_BOX)), walk)


def _meta_version_bytes(handle: BinaryIO, body: int) -> int:
    """`meta` is a full box (4 bytes of version and flags) in MP4, a plain one in QuickTime."""
    handle.seek(body)
    peek = handle.read(8)
    return 0 if peek[4:8] in (b"hdlr", b"keys", b"ilst") else 4


def _header(kind: bytes, data: bytes, walk: _Walk) -> None:
    """Read mvhd / mdhd (timescale, duration), tkhd (size) and hdlr (handler type)."""
    if len(data) < 4:
        return
    version = data[0]
    if kind in (b"mvhd", b"mdhd"):
        layout, offset = (">IQ", 20) if version == 1 else (">II", 12)
        if len(data) >= offset + struct.calcsize(layout):
            timescale, duration = struct.unpack_from(layout, data, offset)
            if kind == b"mvhd":
                walk.movie = (timescale, duration)
            else:
                walk.track.timescale, walk.track.duration = timescale, duration
    elif kind == b"tkhd":
        offset = 88 if version == 1 else 76
        if len(data) >= offset + 8:
            width, height = struct.unpack_from(">II", data, offset)
            walk.track.size = (width >> 16, height >> 16)
    elif kind == b"hdlr" and len(data) >= 12:
        walk.track.handler = data[8:12]


def _keys(data: bytes, walk: _Walk) -> list[str]:
    """Given a `keys` box body, return its key names in order."""
    keys: list[str] = []
    if len(data) < 8:
        return keys
    count, position = struct.unpack(">I", data[4:8])[0], 8
    for _ in range(min(count, MAX_BOXES)):
        if position + 8 > len(data):
            break
        size = struct.unpack(">I", data[position : position + 4])[0]
        if size < 8:
            break
        keys.append(data[position + 8 : position + size].decode("utf-8", "replace"))
        position += size
        walk.meter.tick("MP4 keys")
    return keys


def _frames(data: bytes) -> int:
    """Given an `stts` box body, return the number of samples (frames) it counts."""
    if len(data) < 8:
        return 0
    count = min(struct.unpack(">I", data[4:8])[0], (len(data) - 8) // 8)
    return sum(struct.unpack_from(">I", data, 8 + 8 * n)[0] for n in range(count))


def _ilst(handle: BinaryIO, start: int, end: int, walk: _Walk) -> None:
    """Collect the items of an `ilst` box: (name or key index, first `data` value)."""
    budget, position = walk.meter.budget, start
    while position + 8 <= end and len(walk.items) < MAX_BOXES:
        walk.meter.tick("MP4 tags")
        handle.seek(position)
        head = handle.read(8)
        size, name = struct.unpack(">I4s", head) if len(head) == 8 else (0, b"")
        if size < 8:
            return
        handle.seek(position + 8)
        data_head = handle.read(16)
        length = min(size, end - position) - 8 - 16
        if len(data_head) == 16 and data_head[4:8] == b"data" and length >= 0:
            if length <= min(budget.max_text, walk.meter.text_left):
                walk.meter.text_left -= length
                walk.items.append((name, handle.read(length)))
            else:
                walk.meter.note(MetadataProblem.TOO_LARGE, f"MP4 tag of {length} bytes skipped")
        position += size
