"""Video poster frames: a real video made by ffmpeg gets a WebP of its first frame, kept by
sha256; a broken video and a video without ffmpeg get the placeholder; ffmpeg runs bounded
and never sees the file's name (skipped, saying why, without Debian's ffmpeg; failed with
CI=true)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from forge_syncd.gallery import posters
from forge_syncd.gallery.thumbs import Thumbnails
from tests.support.gallery import Gallery, Library


def need_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None:
        message = (
            "poster tier: ffmpeg not found: apt-get install ffmpeg (scripts/bootstrap.sh does)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true)", pytrace=False)
        pytest.skip(message)


def red_video(path: Path, size: str = "640x360") -> Path:
    """A real 1-second H.264 MP4 whose first frame is pure red, then green."""
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-y"),
            *("-f", "lavfi", "-i", f"color=c=red:size={size}:rate=10:duration=0.5"),
            *("-f", "lavfi", "-i", f"color=c=green:size={size}:rate=10:duration=0.5"),
            *("-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]"),
            *("-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)),
        ],
        check=True,
    )
    return path


def item(gallery: Gallery, item_id: int) -> dict[str, object]:
    status, _, body = gallery.get(f"/api/item/{item_id}")
    assert status == 200
    found: dict[str, object] = json.loads(body)
    return found


def test_a_real_video_gets_its_first_frame_as_poster(
    library: Library, gallery: Gallery, tmp_path: Path
) -> None:
    """An MP4 synced into the library has a WebP thumbnail of its first (red) frame, at most
    thumbnail_size and in the video's proportions, cached immutable under its sha256."""
    need_ffmpeg()
    library.add(red_video(tmp_path / "clip.mp4"), "comfy-b", "clip.mp4")
    row = item(gallery, library.row_id("comfy-b", "clip.mp4"))
    status, headers, body = gallery.get(str(row["thumb"]))
    assert status == 200 and headers["content-type"] == "image/webp"
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    with Image.open(io.BytesIO(body)) as thumb:
        assert thumb.format == "WEBP" and thumb.size == (512, 288)
        red, green, blue = thumb.convert("RGB").getpixel((256, 144))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60
    sha = str(row["sha256"])
    assert (gallery.thumbnails / sha[:2] / f"{sha}.webp").read_bytes() == body


def test_a_broken_video_gets_the_placeholder(
    library: Library, gallery: Gallery, tmp_path: Path
) -> None:
    """A truncated MP4 and random bytes named .webm keep their rows and show the
    placeholder (the same bytes as a broken image's), not cached, nothing kept."""
    need_ffmpeg()
    whole = red_video(tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 3])
    (tmp_path / "noise.webm").write_bytes(os.urandom(4096))
    library.add(tmp_path / "cut.mp4", "comfy-b", "cut.mp4")
    library.add(tmp_path / "noise.webm", "comfy-b", "noise.webm")
    broken = item(gallery, library.row_id("forge-a", "broken.png"))
    placeholder = gallery.get(str(broken["thumb"]))[2]
    for name in ("cut.mp4", "noise.webm"):
        row = item(gallery, library.row_id("comfy-b", name))
        status, headers, body = gallery.get(str(row["thumb"]))
        assert status == 200 and headers["cache-control"] == "no-cache"
        assert body == placeholder
        sha = str(row["sha256"])
        assert not (gallery.thumbnails / sha[:2] / f"{sha}.webp").exists()


def test_without_ffmpeg_a_video_has_the_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ffmpeg on PATH: a video's thumbnail is not made (None: the placeholder) and the
    file is not remembered as unreadable (installing ffmpeg later makes its poster)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    thumbs = Thumbnails(tmp_path / "thumbs", 512)
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    fd = os.open(tmp_path / "clip.mp4", os.O_RDONLY)
    try:
        assert thumbs.make("a" * 64, fd, video=True) is None
    finally:
        os.close(fd)
    assert not thumbs.failed("a" * 64)


def test_ffmpeg_is_bounded_and_never_sees_the_name(tmp_path: Path) -> None:
    """The argv: no stdin, one thread, one frame, the file protocol and plain video
    demuxers only, the input an inherited descriptor (not the hostile name), under prlimit
    (memory, CPU, output size) and nice where those are installed."""
    argv = posters.command("/usr/bin/ffmpeg", 7, 512, tmp_path / "out.png")
    joined = " ".join(argv)
    assert argv[argv.index("-i") + 1] == "file:/proc/self/fd/7"
    for words in ("-nostdin", "-threads 1", "-frames:v 1", "-protocol_whitelist file"):
        assert words in joined
    demuxers = argv[argv.index("-format_whitelist") + 1].split(",")
    assert "mov" in demuxers and "matroska" in demuxers
    assert not {"hls", "concat", "tee", "image2", "lavfi"} & set(demuxers)
    if shutil.which("prlimit"):
        assert argv[0].endswith("prlimit") and f"--as={posters.ADDRESS_SPACE}" in argv
    if shutil.which("nice"):
        assert f"-n {posters.NICE} /usr/bin/ffmpeg" in joined
