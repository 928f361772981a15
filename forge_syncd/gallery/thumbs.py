"""WebP thumbnails keyed by the file's content sha256, in `gallery.thumbnails`.

A thumbnail's name is its source's sha256, so it is never stale when a name is reused and
duplicates share one. It is made on demand (a page asks for it) or by the background worker
as rows are added; at most `workers` are made at once, in threads at a lower priority.
Pillow reads every header first (images past MAX_PIXELS are refused there). PNGs larger
than the thumbnail are then decoded by libvips when pyvips is installed (the `gallery`
extra's pyvips-binary wheel: its PNG decode is about twice Pillow's speed, measured by
bench/gallery_thumbnails.py), streamed and shrunk as they are read; everything else by
Pillow, JPEG in draft mode (decoded at 1/2, 1/4, 1/8 scale), then `reduce` (a box filter
by a whole factor) and a bilinear resize, so memory stays near the thumbnail's size. WebP
at `method` 0: the fastest encode, 8 % larger than at 2. A video's thumbnail is its poster
frame (posters.py: ffmpeg, bounded); without ffmpeg it has the placeholder. A file that
cannot be decoded gets the placeholder, which is not cached under the file's sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image, ImageDraw

from forge_syncd.atomicfile import write_atomically
from forge_syncd.gallery import posters


def load_vips() -> Any:
    """pyvips, set for thumbnails, or None when it or its libvips is missing."""
    try:
        import pyvips
    except (ImportError, OSError):
        return None
    pyvips.cache_set_max(0)  # nothing kept between thumbnails
    pyvips.concurrency_set(1)  # one core per worker, as Pillow
    return pyvips


vips: Any = load_vips()

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_PIXELS = 16384 * 16384  # larger images are refused (Pillow's bomb check uses this)
QUALITY = 80
METHOD = 0  # WebP effort: 2 costs 1.5x the encode time for 8 % less, 4 (the default) 3x
NICE = 10
FAILED_MEMO = 100_000
STRICT = "fail_on=truncated"  # libvips: a truncated PNG is an error, as in Pillow
Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2  # Pillow refuses at twice this


def lower_priority() -> None:
    """Lower this thread's CPU priority (Linux: a thread's own nice value)."""
    with contextlib.suppress(OSError, AttributeError):
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(current, NICE))


def placeholder(size: int) -> bytes:
    """A dark square with a crossed frame: what a file without a thumbnail shows."""
    side = max(16, size // 4)
    image = Image.new("RGB", (side, side), (40, 42, 48))
    draw = ImageDraw.Draw(image)
    draw.rectangle((2, 2, side - 3, side - 3), outline=(96, 100, 110), width=2)
    draw.line((2, 2, side - 3, side - 3), fill=(96, 100, 110), width=2)
    draw.line((2, side - 3, side - 3, 2), fill=(96, 100, 110), width=2)
    out = io.BytesIO()
    image.save(out, "WEBP", quality=QUALITY)
    return out.getvalue()


def render(source: BinaryIO, size: int) -> bytes:
    """Given an open image file, return its WebP thumbnail (longest side `size`). Raise
    OSError, ValueError (Pillow's and pyvips' errors for what they cannot read) or Image's
    bomb error."""
    with Image.open(source) as opened:
        if opened.format == "PNG" and vips is not None and max(opened.size) > size:
            source.seek(0)
            return _vips_png(source, size)
        opened.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4, 1/8 scale
        image: Image.Image = opened
        if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16 bits: scaled, not clipped
            image = image.convert("I").point(lambda value: value / 256).convert("L")
        if image.mode not in ("RGB", "RGBA", "L", "LA"):  # what reduce() takes
            alpha = "A" in image.getbands() or "transparency" in image.info
            image = image.convert("RGBA" if alpha else "RGB")
        factor = max(1, max(image.size) // size)
        image = image.reduce(factor) if factor > 1 else image
        image.thumbnail((size, size), Image.Resampling.BILINEAR)
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        out = io.BytesIO()
        image.save(out, "WEBP", quality=QUALITY, method=METHOD)
        return out.getvalue()


def _vips_png(source: BinaryIO, size: int) -> bytes:
    """A PNG's thumbnail by libvips (shrunk as it is decoded, one thread)."""
    try:
        try:
            loaded = vips.Source.new_from_descriptor(source.fileno())
            thumb = vips.Image.thumbnail_source(loaded, size, size="down", option_string=STRICT)
        except io.UnsupportedOperation:  # bytes in memory (a poster frame)
            data = source.read()
            thumb = vips.Image.thumbnail_buffer(data, size, size="down", option_string=STRICT)
        bare = {"keep": "none"} if vips.at_least_libvips(8, 15) else {"strip": True}
        return bytes(thumb.webpsave_buffer(Q=QUALITY, effort=METHOD, **bare))  # no metadata
    except vips.Error as exc:
        raise ValueError(str(exc)[:200]) from None


def file_sha256(fd: int) -> str:
    """The sha256 of an open file's bytes (read from its start)."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1024 * 1024, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


class Thumbnails:
    def __init__(self, folder: Path, size: int, workers: int = 1) -> None:
        self.folder = folder
        self.size = size
        self.placeholder = placeholder(size)
        self._slots = threading.BoundedSemaphore(workers)
        self._failed: OrderedDict[str, None] = OrderedDict()  # unreadable: not tried again
        self._failed_lock = threading.Lock()
        self.made: Callable[[str], None] = lambda result: None  # metrics hook

    def failed(self, sha256: str) -> bool:
        """Whether these bytes could not be read as an image (this process tried)."""
        with self._failed_lock:
            return sha256 in self._failed

    def path(self, sha256: str) -> Path:
        if not SHA256.match(sha256):
            raise ValueError("not a sha256")
        return self.folder / sha256[:2] / f"{sha256}.webp"

    def cached(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except (OSError, ValueError):
            return None

    def make(self, sha256: str, fd: int, video: bool = False) -> bytes | None:
        """Given a sha256 and an open file with those bytes, return its thumbnail (made
        and kept now, unless another thread made it), or None when the file cannot be read
        as an image, or is a `video` whose poster frame ffmpeg could not make, or ffmpeg is
        not installed (the caller serves the placeholder). Does not close `fd`."""
        if video and posters.ffmpeg() is None:
            return None  # not the file's fault: not remembered as unreadable
        with self._slots:
            lower_priority()
            found = self.cached(sha256)
            if found is not None:
                return found
            try:
                if video:
                    frame = posters.poster(fd, self.size)
                    if frame is None:
                        raise ValueError("ffmpeg made no poster frame")
                    data = render(io.BytesIO(frame), self.size)
                else:
                    with os.fdopen(os.dup(fd), "rb") as source:
                        data = render(source, self.size)
            except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
                self.made("unreadable")
                with self._failed_lock:
                    self._failed[sha256] = None
                    while len(self._failed) > FAILED_MEMO:
                        self._failed.popitem(last=False)
                return None
            target = self.path(sha256)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(target, data, 0o644)
            except OSError:
                self.made("unsaved")  # served all the same, made again next time
                return data
            self.made("made")
            return data
