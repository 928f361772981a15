"""Fixtures: a library whose catalog the real `catalog` sink made from the real fixture media
(tests/fixtures/media, real-media), a hostile prompt, a broken file, rows that point outside
media_root or through links; and a real forge-sync-gallery process serving it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gallery import FIXTURES, HOSTILE_PROMPT, Gallery, Library, a1111_png

SKIPPED = {".txt", ".md", ".py", ".json"}


def fixture_media() -> list[Path]:
    found = [
        *sorted((FIXTURES / "media").glob("*.*")),
        *sorted((FIXTURES / "real-media").glob("*.*")),
    ]
    return [path for path in found if path.suffix not in SKIPPED]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    """Every fixture image and video under two containers, then a hostile A1111 PNG, an
    empty (broken) PNG, and rows whose files are a symlink or outside media_root."""
    root = tmp_path_factory.mktemp("gallery")
    made = Library(root)
    for path in fixture_media():
        made.add(path, "forge-a" if path.parent.name == "real-media" else "comfy-b", path.name)
    made.add(FIXTURES / "media" / "bad" / "empty_file.png", "forge-a", "broken.png")
    made.add(a1111_png(root / "hostile.png", HOSTILE_PROMPT, 4242), "forge-a", "hostile.png")
    made.add(
        a1111_png(root / "nosha.png", "a quiet harbour", 77), "forge-a", "nosha.png", sha=False
    )
    secret = root / "secret.png"
    a1111_png(secret, "outside the library", 1)
    made.add(secret, "forge-a", "linked.png")
    link = made.media / "forge-a" / "linked.png"
    link.unlink()
    link.symlink_to(secret)
    (made.media / "evil").symlink_to(root)
    made.sink.deliver(
        {
            "type": "file_synced",
            "container": "evil",
            "path": "secret.png",
            "local_path": str(made.media / "evil" / "secret.png"),
            "size": secret.stat().st_size,
            "mtime": "2026-11-01T11:00:00.000000Z",
            "sha256": None,
        }
    )
    made.sink.deliver(
        {
            "type": "file_synced",
            "container": "outside",
            "path": "secret.png",
            "local_path": str(secret),
            "size": secret.stat().st_size,
            "mtime": "2026-11-01T11:00:01.000000Z",
            "sha256": None,
        }
    )
    yield made
    made.sink.close()


@pytest.fixture(scope="module")
def gallery(library: Library) -> Iterator[Gallery]:
    """forge-sync-gallery on 127.0.0.1 (no auth), serving `library`."""
    server = Gallery(library, library.root / "thumbnails").start()
    yield server
    server.stop()


def mode_600(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o600)
    return path
