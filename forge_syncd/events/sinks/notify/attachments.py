"""What a landed message shows of its image: the bytes to attach (checked by their first
bytes, bounded by the service's limit) and the prompt embedded in it."""

from __future__ import annotations

import os

from forge_syncd.events.sinks.notify.render import Attachment, ImageRef

MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"GIF87a", 0, "image/gif", "gif"),
    (b"GIF89a", 0, "image/gif", "gif"),
    (b"WEBP", 8, "image/webp", "webp"),
)


def read_attachment(image: ImageRef, limit: int) -> Attachment | None:
    """Given a landed image and the service's size limit, return its bytes to upload, or
    None when it is gone, larger than the limit, or not a PNG, JPEG, GIF or WebP by its
    first bytes (whatever its name says: the container chose the name)."""
    try:
        fd = os.open(image.local, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not (0 < info.st_size <= limit) or not os.path.isfile(image.local):
            return None
        data = b""
        while len(data) < info.st_size:
            chunk = os.read(fd, min(1 << 20, info.st_size - len(data)))
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    finally:
        os.close(fd)
    for magic, offset, mime, extension in MAGIC:
        if data[offset : offset + len(magic)] == magic:
            from forge_syncd.events.sinks.notify.render import safe_filename

            return Attachment(safe_filename(image.path, extension), mime, data)
    return None


def read_prompt(local: bytes) -> str | None:
    """Return the prompt embedded in a landed image, or None (read within the catalog's
    bounds: never raises)."""
    from forge_syncd.events.metadata import read_generation_info

    try:
        return read_generation_info(local).prompt
    except Exception:  # the reader promises not to raise; a notification never depends on it
        return None
