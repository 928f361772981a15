"""Remote trees for tests, the demo and benchmarks: Forge / ComfyUI layouts on real disk."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterable
from pathlib import Path

from forge_syncd.remote.types import Fetched

REAL_MEDIA = Path(__file__).resolve().parent.parent / "fixtures" / "real-media"

FORGE_FOLDERS = ("txt2img-images", "img2img-images", "extras-images", "txt2img-grids")

# Names a hostile or merely careless container may hold; each must sync as plain data.
HOSTILE_NAMES: tuple[bytes, ...] = (
    b"with space.png",
    b'it\'s "quoted".png',
    b"new\nline.png",
    b"$(touch PWNED).png",
    b"`touch PWNED2`.png",
    b"-rf --help.png",
    b"--.png",
    b"semi;colon&amp|pipe.png",
    b"latin1-\xe9\xff.png",
    b"star*and?glob[1].png",
    b"tab\tand\\backslash.png",
    b"\xf0\x9f\x8e\xa8 emoji.png",
)


def write_file(path: Path | bytes, data: bytes, mtime: float | None = None) -> None:
    raw = os.fsencode(path)
    os.makedirs(os.path.dirname(raw), exist_ok=True)
    with open(raw, "wb") as handle:
        handle.write(data)
    if mtime is not None:
        os.utime(raw, (mtime, mtime))


def fake_png(rng: random.Random, size: int) -> bytes:
    """Return `size` bytes starting with the PNG signature (content need not decode)."""
    return b"\x89PNG\r\n\x1a\n" + rng.randbytes(max(0, size - 8))


def forge_tree(root: Path, seed: int = 1, generated: int = 12) -> None:
    """Fill `root` like a Forge outputs folder: dated subfolders, the real fixtures,
    generated PNGs and sidecars, hostile names, and things that must NOT be synced."""
    rng = random.Random(seed)
    stamp = 1_700_000_000.0
    day = root / "txt2img-images" / "2026-11-24"
    day.mkdir(parents=True, exist_ok=True)
    for fixture in sorted(REAL_MEDIA.glob("*.*")):
        if fixture.suffix in (".png", ".jpg"):
            shutil.copyfile(fixture, day / fixture.name)
            os.utime(day / fixture.name, (stamp, stamp))
    for i in range(generated):
        folder = root / FORGE_FOLDERS[i % len(FORGE_FOLDERS)] / "2026-11-24"
        write_file(
            folder / f"{i:05d}-{rng.randrange(10**9)}.png",
            fake_png(rng, rng.randrange(1000, 60_000)),
            stamp + i,
        )
    write_file(day / "00000-1234.txt", b"a prompt\nSteps: 20, Seed: 1234\n", stamp)
    hostile = root / "img2img-images" / "hostile"
    for n, name in enumerate(HOSTILE_NAMES):
        write_file(os.path.join(os.fsencode(hostile), name), fake_png(rng, 100 + n), stamp + n)
    _not_to_sync(root, stamp)


def _not_to_sync(root: Path, stamp: float) -> None:
    """Things a sync must skip: outside the kind's folders, not included, links, a FIFO."""
    write_file(root / "outside-folders" / "stray.png", b"\x89PNG stray", stamp)
    write_file(root / "txt2img-images" / "notes.md", b"not media", stamp)
    write_file(root / "txt2img-images" / "model.safetensors", b"weights", stamp)
    secret = root.parent / f"{root.name}-secret"
    secret.mkdir(exist_ok=True)
    (secret / "secret.png").write_bytes(b"\x89PNG secret")
    (root / "txt2img-images" / "link-to-secret.png").symlink_to(secret / "secret.png")
    (root / "txt2img-images" / "linked-dir").symlink_to(secret, target_is_directory=True)
    (root / "img2img-grids").symlink_to(secret, target_is_directory=True)
    os.mkfifo(root / "txt2img-images" / "fifo.png")


def tree_files(root: Path | bytes, versions: bool = False) -> dict[bytes, tuple[bytes, int]]:
    """Return {relative path: (content, mtime_ns)} of the regular files under `root`; a
    library's `.versions/` folder (earlier versions, not current files) only with
    `versions`."""
    base = os.fsencode(root)
    found: dict[bytes, tuple[bytes, int]] = {}
    for folder, dirs, files in os.walk(base):
        if folder == base and not versions and b".versions" in dirs:
            dirs.remove(b".versions")
        for name in files:
            full = os.path.join(folder, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            try:  # a daemon at work may remove a temporary file while we walk
                with open(full, "rb") as handle:
                    found[os.path.relpath(full, base)] = (
                        handle.read(),
                        os.fstat(handle.fileno()).st_mtime_ns,
                    )
            except FileNotFoundError:
                continue
    return found


def version_files(container_dir: Path) -> dict[bytes, bytes]:
    """Return {path under .versions/: content} of a container's earlier versions."""
    return {
        path: data
        for path, (data, _) in tree_files(container_dir, versions=True).items()
        if path.startswith(b".versions/")
    }


def expected_forge_files(remote: Path) -> dict[bytes, tuple[bytes, int]]:
    """What a Forge container's sync must produce: included regular files in its folders."""
    wanted = {}
    for path, value in tree_files(remote).items():
        top = path.split(b"/", 1)[0]
        if top.decode() in (
            "txt2img-images",
            "img2img-images",
            "extras-images",
            "txt2img-grids",
        ) and path.endswith((b".png", b".jpg", b".txt")):
            wanted[path] = value
    return wanted


def clean_copies(done: Iterable[Fetched]) -> dict[str, bytes]:
    """Given what a fetch delivered, check each is a clean copy (its temporary file there,
    not `changed`) and return {listed path: the bytes its temporary file holds}."""
    got = {}
    for fetched in done:
        assert fetched.temp is not None and not fetched.changed, fetched
        with open(fetched.temp, "rb") as handle:
            got[os.fsdecode(fetched.item.remote.path)] = handle.read()
    return got
