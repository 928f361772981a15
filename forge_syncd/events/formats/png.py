"""PNG: text chunks (tEXt, zTXt, iTXt and ComfyUI's animated-PNG `comf`), the image size and
what the stealth reader needs to know of the pixels, read chunk by chunk within the budget."""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

from forge_syncd.events.budget import MetadataProblem, Meter
from forge_syncd.events.formats.common import Found

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# ComfyUI's SaveAnimatedPNG writes `comf` chunks (keyword, NUL, text) after the image data.
PNG_TEXT_KINDS = (b"tEXt", b"zTXt", b"iTXt", b"comf")


class TextTooLarge(ValueError):
    """A compressed text chunk inflates past what the budget allows."""


def read_png(path: bytes, meter: Meter, found: Found) -> None:
    """Given a PNG, put its text chunks and (width, height) into `found`, and its pixel
    format (bit depth, colour type, interlace, offset of the first IDAT) into `found.png_pixels`.

    A text chunk over the size caps is seeked over; the walk stops at IEND, after `max_scan`
    bytes or `max_chunks` chunks. Problems are noted on the meter; raise OSError if the file
    cannot be read, BudgetExceeded if the CPU budget runs out.
    """
    budget = meter.budget
    with open(path, "rb") as handle:
        if handle.read(8) != PNG_SIGNATURE:
            meter.note(MetadataProblem.MALFORMED, "not a PNG file")
            return
        chunks = _Chunks(handle, meter, found)
        scanned, count = 8, 0
        while scanned < budget.max_scan and count < budget.max_chunks:
            meter.tick("PNG chunks")
            start = handle.tell()
            head = handle.read(8)
            if len(head) < 8:
                if head:
                    meter.note(MetadataProblem.MALFORMED, "PNG cut short in a chunk header")
                return
            length, kind = struct.unpack(">I4s", head)
            scanned, count = scanned + 12 + length, count + 1
            if kind == b"IEND" or not chunks.take(kind, length, start):
                return
    if not found.texts:
        meter.note(
            MetadataProblem.TOO_LARGE,
            f"no metadata in the first {count} PNG chunks ({scanned} bytes)",
        )


class _Chunks:
    """What `read_png` does with each chunk, given the open file just past its header."""

    def __init__(self, handle: BinaryIO, meter: Meter, found: Found) -> None:
        self.handle = handle
        self.meter = meter
        self.found = found
        self.header: tuple[int, int, int] | None = None  # bit depth, colour type, interlace

    def take(self, kind: bytes, length: int, start: int) -> bool:
        """Read or skip one chunk (`start`: the offset of its header); return False if the
        file ends inside it (noted on the meter), leaving the handle past it otherwise."""
        if kind == b"IHDR" and length >= 8:
            return self._header(length)
        if kind in PNG_TEXT_KINDS:
            return self._text(kind, length)
        if kind == b"IDAT" and self.header is not None and self.found.png_pixels is None:
            self.found.png_pixels = (*self.header, start)
        self.handle.seek(length + 4, 1)
        return True

    def _header(self, length: int) -> bool:
        """IHDR: the size, and from a whole one (13 bytes) the pixel format."""
        wanted = 13 if length >= 13 else 8
        body = self.handle.read(wanted)
        if len(body) < wanted:
            self.meter.note(MetadataProblem.MALFORMED, "PNG cut short in its header")
            return False
        if wanted == 13:
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            self.found.size = (width, height)
            self.header = (depth, colour, interlace)
        else:
            self.found.size = struct.unpack(">II", body)
        self.handle.seek(length - wanted + 4, 1)
        return True

    def _text(self, kind: bytes, length: int) -> bool:
        """A text chunk within the caps into `found.texts` (one over them is skipped)."""
        if not _text_fits(self.handle, kind, length, self.meter):
            return True
        body = self.handle.read(length)
        self.handle.seek(4, 1)  # CRC
        if len(body) < length:
            self.meter.note(MetadataProblem.MALFORMED, "PNG cut short in a text chunk")
            return False
        _add_text(kind, body, self.found.texts, self.meter)
        return True


def _text_fits(handle: BinaryIO, kind: bytes, length: int, meter: Meter) -> bool:
    """Given an open PNG at the start of a text chunk's body, return whether the chunk fits
    the size caps (and take its length from the file's text allowance). If it does not,
    note it and leave the handle past the chunk."""
    if length <= meter.budget.max_text and length <= meter.text_left:
        meter.text_left -= length
        return True
    keyword = handle.read(min(length, 80)).partition(b"\0")[0].decode("latin-1")
    handle.seek(length - min(length, 80) + 4, 1)
    if length > meter.budget.max_text:
        limit = f"the {meter.budget.max_text} bytes allowed per chunk"
    else:
        limit = f"the {meter.budget.max_total_text} bytes of text allowed per file"
    meter.note(
        MetadataProblem.TOO_LARGE,
        f"PNG {kind.decode()} chunk {keyword!r} of {length} bytes skipped: over {limit}",
    )
    return False


def _add_text(kind: bytes, body: bytes, texts: dict[str, str], meter: Meter) -> None:
    """Given a text chunk's kind and body, decode it into `texts` (or note why not)."""
    key, sep, rest = body.partition(b"\0")
    name = key.decode("latin-1")
    if not sep:
        meter.note(MetadataProblem.MALFORMED, f"PNG {kind.decode()} chunk without a keyword")
        return
    try:
        if kind in (b"tEXt", b"comf"):
            value = rest.decode("latin-1")
        elif kind == b"zTXt":
            value = inflate(rest[1:], meter).decode("latin-1")
        else:  # iTXt: compressed flag, method, language\0, translated keyword\0, text
            compressed = rest[:1] == b"\x01"
            text = rest[2:].split(b"\0", 2)[-1]
            value = (inflate(text, meter) if compressed else text).decode("utf-8")
    except TextTooLarge as exc:
        meter.note(MetadataProblem.TOO_LARGE, f"PNG {kind.decode()} chunk {name!r}: {exc}")
        return
    except (zlib.error, UnicodeDecodeError, ValueError) as exc:
        meter.note(MetadataProblem.MALFORMED, f"PNG {kind.decode()} chunk {name!r}: {exc}")
        return
    texts[name] = value


def inflate(data: bytes, meter: Meter, wbits: int = zlib.MAX_WBITS) -> bytes:
    """Given zlib data (gzip with wbits=31), return it inflated (one bounded C call).

    Raise TextTooLarge past the text caps, zlib.error if it is not such data.
    """
    limit = min(meter.budget.max_text, meter.text_left)
    decompressor = zlib.decompressobj(wbits)
    out = decompressor.decompress(data, limit)
    if decompressor.unconsumed_tail:
        raise TextTooLarge(f"inflates past the {limit} bytes of text allowed")
    meter.text_left -= len(out)
    return out
