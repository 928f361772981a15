"""Matroska / WebM (EBML): the tags, duration and frame rate.

ffmpeg writes `-metadata key=value` as a `Tags/Tag/SimpleTag` (TagName, TagString), names in
capitals (VideoHelperSuite's `comment` becomes `COMMENT`). Elements are walked by their
headers and seeked over; clusters (the media data) are never read. `Info` gives the duration
(in TimestampScale units), the video track's DefaultDuration (nanoseconds a frame) the rate.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from forge_syncd.events.budget import MetadataProblem, Meter
from forge_syncd.events.formats.common import Found

EBML = 0x1A45DFA3
SEGMENT = 0x18538067
CLUSTER = 0x1F43B675
INFO, TIMESTAMP_SCALE, DURATION = 0x1549A966, 0x2AD7B1, 0x4489
TRACKS, TRACK_ENTRY, TRACK_TYPE, DEFAULT_DURATION = 0x1654AE6B, 0xAE, 0x83, 0x23E383
VIDEO, PIXEL_WIDTH, PIXEL_HEIGHT = 0xE0, 0xB0, 0xBA
TAGS, TAG, SIMPLE_TAG, TAG_NAME, TAG_STRING = 0x1254C367, 0x7373, 0x67C8, 0x45A3, 0x4487
MASTERS = {SEGMENT, INFO, TRACKS, TRACK_ENTRY, VIDEO, TAGS, TAG, SIMPLE_TAG}
VALUES = {TIMESTAMP_SCALE, DURATION, TRACK_TYPE, DEFAULT_DURATION, PIXEL_WIDTH, PIXEL_HEIGHT}
TEXTS = {TAG_NAME, TAG_STRING}
UNKNOWN = -1
MAX_DEPTH = 8
MAX_ELEMENTS = 100_000
VIDEO_TRACK = 1


@dataclass
class _Walk:
    meter: Meter
    found: Found
    end: int
    elements: int = 0
    scale: int = 1_000_000
    duration: float | None = None
    track_type: int = 0
    frame_ns: int = 0
    width: int = 0
    height: int = 0
    name: str | None = None
    value: str | None = None


def read_matroska(path: bytes, meter: Meter, found: Found) -> None:
    """Given a Matroska or WebM file, put its tags into `found.texts` (names in lower case:
    `comment`, `prompt`, `workflow`, ...), and its video size, `duration_s` and `frame_rate`
    into `found`. Raise OSError if the file cannot be read, BudgetExceeded if the CPU budget
    runs out."""
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(0)
        first = _element(handle)
        if first is None or first[0] != EBML:
            meter.note(MetadataProblem.MALFORMED, "not a Matroska file")
            return
        walk = _Walk(meter, found, min(size, meter.budget.max_scan))
        handle.seek(first[2] + first[1] if first[1] != UNKNOWN else walk.end)
        _children(handle, handle.tell(), walk.end, 0, walk)
    if walk.duration:
        found.duration_s = round(walk.duration * walk.scale / 1e9, 3)
    if walk.width and walk.height:
        found.size = (walk.width, walk.height)


def _element(handle: BinaryIO) -> tuple[int, int, int] | None:
    """Read an element header at the handle: return (id, size or UNKNOWN, body offset)."""
    first = handle.read(1)
    if not first or first[0] == 0:
        return None
    length = 8 - first[0].bit_length() + 1
    if length > 4:
        return None
    element = int.from_bytes(first + handle.read(length - 1), "big")
    head = handle.read(1)
    if not head or head[0] == 0:
        return None
    width = 8 - head[0].bit_length() + 1
    rest = handle.read(width - 1)
    if len(rest) < width - 1:
        return None
    value = int.from_bytes(bytes([head[0] & (0xFF >> width)]) + rest, "big")
    size = UNKNOWN if value == (1 << (7 * width)) - 1 else value
    return element, size, handle.tell()


def _children(handle: BinaryIO, start: int, end: int, depth: int, walk: _Walk) -> None:
    """Walk the elements from `start` to `end`, descending into the masters we need."""
    handle.seek(start)
    while handle.tell() < end:
        walk.elements += 1
        if walk.elements > MAX_ELEMENTS:
            walk.meter.note(MetadataProblem.TOO_LARGE, f"over {MAX_ELEMENTS} Matroska elements")
            return
        walk.meter.tick("Matroska elements")
        header = _element(handle)
        if header is None:
            return
        element, size, body = header
        if size == UNKNOWN:
            if element in (SEGMENT, CLUSTER):  # live streams: the children follow
                if element == SEGMENT and depth < MAX_DEPTH:
                    _children(handle, body, end, depth + 1, walk)
                    return
                continue
            return
        stop = min(body + size, end)
        if element in MASTERS and depth < MAX_DEPTH:
            _master(handle, element, body, stop, depth, walk)
        elif element in VALUES:
            _value(element, handle.read(min(size, 8)), walk)
        elif element in TEXTS:
            _text(handle, element, size, walk)
        handle.seek(body + size)


def _master(handle: BinaryIO, element: int, body: int, stop: int, depth: int, walk: _Walk) -> None:
    """Walk one master element; a track or a simple tag is complete at its end."""
    if element == TRACK_ENTRY:
        walk.track_type, walk.frame_ns = 0, 0
    if element == SIMPLE_TAG:
        walk.name = walk.value = None
    _children(handle, body, stop, depth + 1, walk)
    if element == TRACK_ENTRY and walk.track_type == VIDEO_TRACK and walk.frame_ns:
        walk.found.frame_rate = walk.found.frame_rate or round(1e9 / walk.frame_ns, 3)
    if element == SIMPLE_TAG and walk.name and walk.value is not None:
        walk.found.texts.setdefault(walk.name.lower(), walk.value)


def _value(element: int, data: bytes, walk: _Walk) -> None:
    """Store one number we need (unsigned integer, or the Duration float)."""
    if element == DURATION and len(data) in (4, 8):
        walk.duration = struct.unpack(">f" if len(data) == 4 else ">d", data)[0]
        return
    number = int.from_bytes(data, "big") if data else 0
    if element == TIMESTAMP_SCALE and number:
        walk.scale = number
    elif element == TRACK_TYPE:
        walk.track_type = number
    elif element == DEFAULT_DURATION:
        walk.frame_ns = number
    elif element == PIXEL_WIDTH and not walk.width:
        walk.width = number
    elif element == PIXEL_HEIGHT and not walk.height:
        walk.height = number


def _text(handle: BinaryIO, element: int, size: int, walk: _Walk) -> None:
    """Store a tag's name or value (values over the text caps are skipped, and said)."""
    meter = walk.meter
    if size > min(meter.budget.max_text, meter.text_left):
        meter.note(MetadataProblem.TOO_LARGE, f"Matroska tag of {size} bytes skipped")
        return
    meter.text_left -= size
    text = handle.read(size).rstrip(b"\0").decode("utf-8", "replace")
    if element == TAG_NAME:
        walk.name = text
    else:
        walk.value = text
