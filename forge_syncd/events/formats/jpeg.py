"""JPEG: the EXIF segment (APP1) and the image size (SOFn), read segment by segment up to
the start of the image data."""

from __future__ import annotations

import struct

from forge_syncd.events.budget import MetadataProblem, Meter
from forge_syncd.events.formats.common import Found
from forge_syncd.events.formats.exif import exif_texts

MAX_SEGMENTS = 256  # segments are at most 64 KiB each
SOF_MARKERS = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)


def read_jpeg(path: bytes, meter: Meter, found: Found) -> None:
    """Given a JPEG, put its EXIF texts into `found.texts` (see exif_texts) and its
    (width, height) into `found.size`. Raise OSError if the file cannot be read."""
    with open(path, "rb") as handle:
        if handle.read(2) != b"\xff\xd8":
            meter.note(MetadataProblem.MALFORMED, "not a JPEG file")
            return
        for _ in range(MAX_SEGMENTS):
            marker = handle.read(4)
            if len(marker) < 4 or marker[0] != 0xFF:
                break
            kind, length = marker[1], struct.unpack(">H", marker[2:])[0]
            if kind == 0xDA or length < 2:  # start of scan: no more metadata
                break
            body = handle.read(length - 2)
            if kind == 0xE1 and body.startswith(b"Exif\0\0"):
                found.texts.update(exif_texts(body[6:], meter))
            elif kind in SOF_MARKERS and len(body) >= 5:
                height, width = struct.unpack(">HH", body[1:5])
                found.size = (width, height)
