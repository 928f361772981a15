"""A1111's "stealth" PNG info: infotext hidden in the least significant bits of the alpha
channel (the stealth-pnginfo extension, also used by Forge and NovelAI).

The bits run down the columns: pixel (x=0, y=0), (0, 1), ... (0, H-1), (1, 0), ... They hold
the signature `stealth_pnginfo` (plain UTF-8 follows) or `stealth_pngcomp` (gzip follows),
then the length of what follows in bits (32 bits, big-endian), then the text. Reading the
bits needs the pixels: the image data is inflated row by row (zlib, in C), and only the alpha
bytes of the first few columns are unfiltered (in Python: the cost is the number of bits read,
not the image size). The signature is checked after the first 120 rows, so an image without
stealth info costs little. Only 8-bit RGBA without interlacing is read (what A1111 writes);
the extension's rarer `stealth_rgbinfo` mode (bits in R, G and B) is not.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from forge_syncd.events.budget import MetadataProblem, Meter
from forge_syncd.events.formats.common import Found
from forge_syncd.events.formats.png import TextTooLarge, inflate

SIGNATURES = {b"stealth_pnginfo": False, b"stealth_pngcomp": True}  # -> compressed
SIGNATURE_BITS = 15 * 8
HEADER_BITS = SIGNATURE_BITS + 32
RGBA = 6
CHANNELS = 4
ALPHA = 3
INFLATE_STEP = 256 * 1024  # inflated bytes per zlib call: short GIL holds, bounded memory
MAX_SIDE = 1 << 16  # wider or taller images are not searched (a row is kept in memory)
PIXELS_PER_CHECK = 1 << 15  # CPU budget checked this often within one row


def read_stealth(path: bytes, found: Found, meter: Meter) -> str | None:
    """Given a PNG already walked by read_png (its size and pixel format in `found`), return
    the stealth infotext in its alpha channel, or None if there is none.

    Notes on the meter what could not be read. Raise OSError if the file cannot be read,
    BudgetExceeded if the CPU budget runs out.
    """
    if found.png_pixels is None or found.size is None:
        return None
    depth, colour, interlace, idat = found.png_pixels
    width, height = found.size
    if depth != 8 or colour != RGBA or interlace != 0 or not 0 < width <= MAX_SIDE:
        return None
    if not 0 < height <= MAX_SIDE:
        return None
    if width * height < HEADER_BITS:
        return None
    with open(path, "rb") as handle:
        header = _alpha_bits(handle, idat, (width, height), HEADER_BITS, meter)
        if header is None:
            return None
        compressed = SIGNATURES.get(header[:15])
        if compressed is None:
            return None
        length = struct.unpack(">I", header[15:19])[0]
        room = min(8 * meter.budget.max_text, width * height - HEADER_BITS)
        if length > room or length % 8:
            meter.note(MetadataProblem.MALFORMED, f"stealth PNG info of {length} bits")
            return None
        data = _alpha_bits(handle, idat, (width, height), HEADER_BITS + length, meter)
    if data is None:
        return None
    return _decode(data[19:], compressed, meter)


def _decode(data: bytes, compressed: bool, meter: Meter) -> str | None:
    """Given the stealth payload, return its text (gzip inflated within the budget)."""
    if not compressed:
        return data.decode("utf-8", "replace")
    try:
        return inflate(data, meter, wbits=31).decode("utf-8", "replace")
    except TextTooLarge as exc:
        meter.note(MetadataProblem.TOO_LARGE, f"stealth PNG info: {exc}")
    except zlib.error as exc:
        meter.note(MetadataProblem.MALFORMED, f"stealth PNG info: {exc}")
    return None


def _alpha_bits(
    handle: BinaryIO, idat: int, size: tuple[int, int], count: int, meter: Meter
) -> bytes | None:
    """Return the first `count` alpha low bits in column order, packed into bytes (count is a
    multiple of 8), or None (and a note) if the image data ends first."""
    width, height = size
    columns = -(-count // height)
    rows = min(height, count)
    found: list[bytes] = []
    previous = bytes(columns)
    for row in _rows(handle, idat, 1 + width * CHANNELS, rows, meter):
        previous = _unfilter_alpha(row, previous, columns, meter)
        found.append(previous)
        meter.tick("stealth PNG info rows")
    if len(found) < rows:
        meter.note(MetadataProblem.MALFORMED, "PNG image data ends before the stealth info")
        return None
    bits = "".join(
        "".join("1" if alpha[x] & 1 else "0" for alpha in found) for x in range(columns)
    )[:count]
    return int(bits, 2).to_bytes(count // 8, "big") if bits else b""


def _unfilter_alpha(row: bytes, above: bytes, columns: int, meter: Meter) -> bytes:
    """Given one filtered scanline (filter byte first) and the unfiltered alpha bytes of the
    row above, return this row's unfiltered alpha bytes of the first `columns` pixels.

    PNG filters work byte by byte against the byte one pixel to the left and the one above,
    so each channel unfilters on its own: only the alpha bytes are computed.
    """
    kind = row[0]
    raw = row[1 + ALPHA : 1 + columns * CHANNELS : CHANNELS]
    if kind == 0:
        return raw
    if kind == 2:
        return bytes((value + up) & 0xFF for value, up in zip(raw, above, strict=False))
    out = bytearray(len(raw))
    left = upper_left = 0
    for x, value in enumerate(raw):
        if x % PIXELS_PER_CHECK == PIXELS_PER_CHECK - 1:
            meter.check("stealth PNG info pixels")
        up = above[x]
        if kind == 1:
            left = (value + left) & 0xFF
        elif kind == 3:
            left = (value + ((left + up) >> 1)) & 0xFF
        elif kind == 4:
            left = (value + _paeth(left, up, upper_left)) & 0xFF
        else:
            raise ValueError(f"PNG filter type {kind}")
        out[x] = left
        upper_left = up
    return bytes(out)


def _paeth(left: int, up: int, upper_left: int) -> int:
    estimate = left + up - upper_left
    to_left, to_up, to_corner = abs(estimate - left), abs(estimate - up), abs(estimate - upper_left)
    if to_left <= to_up and to_left <= to_corner:
        return left
    return up if to_up <= to_corner else upper_left


def _rows(handle: BinaryIO, idat: int, stride: int, rows: int, meter: Meter) -> Iterator[bytes]:
    """Yield the first `rows` filtered scanlines of `stride` bytes, inflating the IDAT chunks
    from offset `idat` a step at a time (reading at most `max_scan` bytes of the file)."""
    handle.seek(idat)
    decompressor = zlib.decompressobj()
    pending = bytearray()
    read = done = 0
    while done < rows:
        head = handle.read(8)
        if len(head) < 8:
            return
        length, kind = struct.unpack(">I4s", head)
        if kind != b"IDAT":
            return
        read += length + 12
        if read > meter.budget.max_scan:
            meter.note(MetadataProblem.TOO_LARGE, "stealth PNG info past the bytes allowed")
            return
        data = handle.read(length)
        handle.seek(4, 1)
        while data and done < rows:
            pending += decompressor.decompress(data, INFLATE_STEP)
            data = decompressor.unconsumed_tail
            while len(pending) >= stride and done < rows:
                yield bytes(pending[:stride])
                del pending[:stride]
                done += 1
            meter.tick("stealth PNG info inflate")
