"""`LocalCheck`: the library copies of a container's synced files, checked while the remote
lists; the whole manifest rows read only for a run that plans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge_syncd.library.copies import LocalCheck
from forge_syncd.library.manifest import Manifest, SyncedFile

T0 = 1_700_000_000 * 10**9


def library(tmp_path: Path) -> tuple[Manifest, Path]:
    manifest = Manifest.open(tmp_path / "state")
    here = tmp_path / "media" / "box"
    (here / "out").mkdir(parents=True)
    files = {b"out/kept.png": 11, b"out/gone.png": 12, b"out/cut.png": 13, b"out/link.png": 14}
    for path, size in files.items():
        (here / os.fsdecode(path)).write_bytes(b"x" * size)
    manifest.files.record_synced(
        "box", [SyncedFile(path, size, T0, "aa" * 32) for path, size in files.items()]
    )
    (here / "out" / "gone.png").unlink()
    (here / "out" / "cut.png").write_bytes(b"x")
    (here / "out" / "link.png").unlink()
    (here / "out" / "link.png").symlink_to(here / "out" / "kept.png")
    return manifest, here


def test_missing_cut_and_replaced_copies_are_mismatched(tmp_path: Path) -> None:
    manifest, here = library(tmp_path)
    check = LocalCheck(manifest, "box", os.fsencode(here))
    assert check.wait().mismatched == {b"out/gone.png", b"out/cut.png", b"out/link.png"}
    copies = check.copies()
    assert set(copies.records) == {
        b"out/kept.png",
        b"out/gone.png",
        b"out/cut.png",
        b"out/link.png",
    }
    assert copies.has_size(b"out/kept.png", 11) and not copies.has_size(b"out/cut.png", 13)


def test_a_poll_whose_plan_holds_never_reads_the_whole_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memo's poll waits only for the sizes; the whole rows (3x their cost) are read
    only once the run asks for the copies it plans with."""
    manifest, here = library(tmp_path)
    read: list[str] = []
    real = manifest.files.records
    monkeypatch.setattr(manifest.files, "records", lambda c: read.append(c) or real(c))
    check = LocalCheck(manifest, "box", os.fsencode(here))
    assert len(check.wait().mismatched) == 3
    check.skip_rows()
    check._thread.join(10)
    assert not check._thread.is_alive() and read == []
    planned = LocalCheck(manifest, "box", os.fsencode(here))
    assert len(planned.copies().records) == 4 and read == ["box"]
    first_run = LocalCheck(manifest, "box", os.fsencode(here), rows=True)  # no memo: plans
    first_run._thread.join(10)
    assert read == ["box", "box"] and len(first_run.records) == 4  # read before asked
