"""WebP (RIFF): the EXIF chunk (ComfyUI's animated WebP, A1111/Forge and SwarmUI WebP), the
canvas size and, for an animation, its duration and frame rate from the ANMF frames."""

from __future__ import annotations

import struct

from forge_syncd.events.budget import MetadataProblem, Meter
from forge_syncd.events.formats.common import Found
from forge_syncd.events.formats.exif import exif_texts


def read_webp(path: bytes, meter: Meter, found: Found) -> None:
    """Given a WebP, put its EXIF texts (see exif_texts) into `found.texts`, its canvas size
    into `found.size` and, if animated, `duration_s` and `frame_rate` (frames per second over
    the whole animation). Walks at most `max_chunks` chunks and `max_scan` bytes. Raise OSError
    if the file cannot be read."""
    budget = meter.budget
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WEBP":
            meter.note(MetadataProblem.MALFORMED, "not a WebP file")
            return
        end = 8 + struct.unpack("<I", head[4:8])[0]
        position, frames, milliseconds = 12, 0, 0
        for _ in range(budget.max_chunks):
            if position + 8 > end or position >= budget.max_scan:
                break
            meter.tick("WebP chunks")
            chunk = handle.read(8)
            if len(chunk) < 8:
                break
            kind, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            padded = length + (length & 1)
            if kind == b"EXIF" and length <= min(budget.max_text, meter.text_left):
                meter.text_left -= length
                data = handle.read(length)
                handle.seek(padded - length, 1)
                if data.startswith(b"Exif\0\0"):  # some writers keep the JPEG prefix
                    data = data[6:]
                found.texts.update(exif_texts(data, meter))
            elif kind == b"EXIF":
                meter.note(MetadataProblem.TOO_LARGE, f"WebP EXIF chunk of {length} bytes")
                handle.seek(padded, 1)
            elif kind in (b"VP8X", b"ANMF", b"VP8L", b"VP8 "):
                data = handle.read(min(length, 30))
                handle.seek(padded - len(data), 1)
                if kind == b"ANMF" and len(data) >= 16:
                    frames += 1
                    milliseconds += int.from_bytes(data[12:15], "little")
                else:
                    _size(kind, data, found)
            else:
                handle.seek(padded, 1)
            position += 8 + padded
    if frames > 1 and milliseconds > 0:
        found.duration_s = milliseconds / 1000
        found.frame_rate = round(frames / found.duration_s, 3)


def _size(kind: bytes, data: bytes, found: Found) -> None:
    """Given the start of a VP8X, VP8L or VP8 chunk, set the image size from it."""
    if kind == b"VP8X" and len(data) >= 10:
        width = 1 + int.from_bytes(data[4:7], "little")
        height = 1 + int.from_bytes(data[7:10], "little")
        found.size = (width, height)
    elif found.size is None and kind == b"VP8L" and len(data) >= 5 and data[0] == 0x2F:
        bits = int.from_bytes(data[1:5], "little")
        found.size = (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF))
    elif found.size is None and kind == b"VP8 " and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        found.size = (width & 0x3FFF, height & 0x3FFF)
