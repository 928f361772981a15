"""Video poster frames: the first frame of a video, scaled by ffmpeg, when ffmpeg is installed.

The video is hostile. ffmpeg never sees its name: it reads the already opened file (opened
under media_root without following links, files.open_listed), inherited as descriptor N and
named `file:/proc/self/fd/N`; only the `file` protocol and a list of plain video demuxers
are allowed (no playlists, no concat lists, no references to other files or URLs); no stdin,
no shell. It runs at nice 19 under `prlimit` (address space, CPU seconds, output file size)
with one thread, decodes one frame, and is killed past TIMEOUT seconds. The frame goes to a
PNG in a private temporary folder, removed afterwards, that the caller makes a WebP of.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

TIMEOUT = 30.0  # seconds of wall time for one poster
CPU_SECONDS = 20
ADDRESS_SPACE = 1024 * 1024 * 1024  # bytes: a frame bomb runs out of memory, not the host
OUTPUT_BYTES = 64 * 1024 * 1024
DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,gif,flv,mpegts,mpeg,ogg,h264,hevc"
NICE = 19


def ffmpeg() -> str | None:
    """The path of ffmpeg, or None when it is not installed."""
    return shutil.which("ffmpeg")


def command(program: str, fd: int, size: int, output: Path) -> list[str]:
    """ffmpeg's argv (under prlimit and nice where installed): the first video frame of the
    inherited descriptor `fd`, longest side at most `size`, as a PNG at `output`."""
    bounds: list[str] = []
    if prlimit := shutil.which("prlimit"):
        bounds += [prlimit, f"--as={ADDRESS_SPACE}", f"--cpu={CPU_SECONDS}"]
        bounds += [f"--fsize={OUTPUT_BYTES}", "--"]
    if nice := shutil.which("nice"):
        bounds += [nice, "-n", str(NICE)]
    scale = f"scale=w='min({size},iw)':h='min({size},ih)':force_original_aspect_ratio=decrease"
    return [
        *bounds,
        program,
        *("-nostdin", "-hide_banner", "-loglevel", "error"),
        *("-threads", "1", "-filter_threads", "1"),
        *("-protocol_whitelist", "file", "-format_whitelist", DEMUXERS),
        *("-i", f"file:/proc/self/fd/{fd}"),
        *("-map", "0:v:0", "-an", "-sn", "-dn", "-frames:v", "1", "-vf", scale),
        *("-threads", "1", "-f", "image2", "-c:v", "png", "-y", f"file:{output}"),
    ]


def poster(fd: int, size: int) -> bytes | None:
    """Given an open video file, return a PNG of its first frame (longest side at most
    `size`), or None when ffmpeg is missing, fails, or takes too long. Does not close `fd`."""
    program = ffmpeg()
    if program is None:
        return None
    with tempfile.TemporaryDirectory(prefix="forge-poster-") as folder:
        output = Path(folder) / "poster.png"
        if not _run(command(program, fd, size, output), fd):
            return None
        try:
            return output.read_bytes() or None
        except OSError:
            return None


def _run(argv: list[str], fd: int) -> bool:
    """Run argv, `fd` inherited, nothing else; True when it exited 0 within TIMEOUT."""
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(fd,),
            start_new_session=True,
        )
    except OSError:
        return False
    try:
        return process.wait(TIMEOUT) == 0
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
