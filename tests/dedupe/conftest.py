"""The dedupe tier's worlds: a fake container syncing into a library on a real filesystem
(XFS with reflinks, or one without), with a real manifest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from forge_syncd.config.model import CleanupConfig, ContainerConfig, Dedupe, SyncConfig
from forge_syncd.jobs.record import JobContext, RunOutcome
from forge_syncd.library import dedupe
from forge_syncd.library.manifest import Manifest
from forge_syncd.sync import sync_container
from tests.support.fake_remote import FakeRemote
from tests.support.runs import context

OLD = 1_700_000_000


def container(name: str, **sync: object) -> ContainerConfig:
    return ContainerConfig(
        name=name,
        kind="generic",
        host="fake",
        root="/out",
        folders=(),
        sync=SyncConfig(settle_s=0.0, include=("*",), **sync),  # type: ignore[arg-type]
        cleanup=CleanupConfig(enabled=False),
    )


@dataclass
class Library:
    """A library folder, its manifest, and one fake container per name."""

    media: Path
    manifest: Manifest
    remotes: dict[str, FakeRemote]

    def remote(self, name: str) -> FakeRemote:
        return self.remotes.setdefault(name, FakeRemote())

    def ctx(self, name: str, **sync: object) -> JobContext:
        return context(container(name, **sync), self.media, self.manifest, self.remote(name))

    def sync(self, name: str, **sync: object) -> RunOutcome:
        outcome = sync_container(self.ctx(name, **sync))
        assert outcome.result == "success", outcome.error
        return outcome


def library_in(folder: Path, mode: Dedupe) -> Iterator[Library]:
    dedupe.configure(mode)
    dedupe.forget_filesystems()
    manifest = Manifest.open(folder / "state")
    try:
        yield Library(folder / "media", manifest, {})
    finally:
        manifest.close()
        dedupe.configure("auto")
        dedupe.forget_filesystems()


@pytest.fixture
def xfs_library(reflink_dir: Path) -> Iterator[Library]:
    """A library on a loop-mounted XFS (reflinks), `library.dedupe: auto`."""
    yield from library_in(reflink_dir, "auto")


@pytest.fixture
def xfs_hardlink_library(reflink_dir: Path) -> Iterator[Library]:
    """A library on XFS with `library.dedupe: hardlink`."""
    yield from library_in(reflink_dir, "hardlink")


@pytest.fixture
def plain_library(no_reflink_dir: Path) -> Iterator[Library]:
    """A library on a filesystem without reflinks (ext4 or tmpfs), `dedupe: auto`."""
    yield from library_in(no_reflink_dir, "auto")
