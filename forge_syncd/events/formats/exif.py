"""EXIF (a TIFF structure) as JPEG and WebP carry it: the UserComment (A1111, SwarmUI) and the
IFD0 text tags where ComfyUI's animated WebP keeps `prompt:` (Model) and `workflow:` (Make,
then the tags below it for further extra info)."""

from __future__ import annotations

import struct

from forge_syncd.events.budget import Meter

USER_COMMENT = 0x9286
EXIF_IFD = 0x8769
MAKE = 0x010F
MODEL = 0x0110
# ComfyUI counts down from Make for each extra-info key; its own tags end above these.
COMFY_TAGS = range(0x0100, 0x0111)
MAX_ENTRIES = 512
TYPE_WIDTH = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}


def exif_texts(tiff: bytes, meter: Meter) -> dict[str, str]:
    """Given EXIF data (starting at the TIFF header), return its texts: the UserComment as
    `user_comment` and each IFD0 text tag ComfyUI may use (0x0100 to 0x0110) under its
    "key:" prefix when it has one (`prompt`, `workflow`, ...), else as `tag_<hex>`.

    Malformed EXIF gives what was read before the damage.
    """
    order = {b"MM": ">", b"II": "<"}.get(tiff[:2])
    texts: dict[str, str] = {}
    if order is None or len(tiff) < 8:
        return texts
    try:
        ifd0 = struct.unpack(order + "I", tiff[4:8])[0]
        entries = _entries(tiff, order, ifd0, meter)
        for tag, raw in entries.items():
            if tag in COMFY_TAGS:
                text = raw.rstrip(b"\0").decode("utf-8", "replace")
                key, colon, rest = text.partition(":")
                named = colon and key.isidentifier() and len(key) < 64
                texts[key if named else f"tag_{tag:04x}"] = rest if named else text
        exif = entries.get(EXIF_IFD)
        if exif is not None and len(exif) >= 4:
            offset = struct.unpack(order + "I", exif[:4])[0]
            comment = _entries(tiff, order, offset, meter).get(USER_COMMENT)
            if comment is not None:
                texts["user_comment"] = user_comment(comment, order)
    except struct.error:
        pass
    return texts


def user_comment(raw: bytes, order: str) -> str:
    """Given a UserComment's bytes (8-byte character code, then text), return the text."""
    code, text = raw[:8], raw[8:]
    if code.startswith(b"UNICODE"):
        # A1111 writes UTF-16 in the file's byte order (piexif); some writers always use BE.
        encoding = "utf-16-be" if order == ">" else "utf-16-le"
        if order == "<" and text[:1] == b"\0" and text[1:2] != b"\0":
            encoding = "utf-16-be"
        return text.decode(encoding, "replace").rstrip("\0")
    return text.decode("utf-8", "replace").rstrip("\0")


def _entries(tiff: bytes, order: str, offset: int, meter: Meter) -> dict[int, bytes]:
    """Return {tag: raw value bytes} of the IFD at `offset` (at most MAX_ENTRIES entries;
    values over the text cap are left out)."""
    found: dict[int, bytes] = {}
    count = struct.unpack(order + "H", tiff[offset : offset + 2])[0]
    for n in range(min(count, MAX_ENTRIES)):
        entry = tiff[offset + 2 + 12 * n : offset + 14 + 12 * n]
        if len(entry) < 12:
            break
        meter.tick("EXIF entries")
        tag, kind, items = struct.unpack(order + "HHI", entry[:8])
        size = TYPE_WIDTH.get(kind, 1) * items
        if size > meter.budget.max_text:
            continue
        if size <= 4:
            found[tag] = entry[8 : 8 + size]
        else:
            start = struct.unpack(order + "I", entry[8:12])[0]
            found[tag] = tiff[start : start + size]
    return found
