"""Who can read the library: the modes and group given to what the daemon makes there, whatever
its umask, and who may use the library's group."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge_syncd.config import LibraryConfig
from forge_syncd.library import localfs, modes
from tests.support.daemon import read_log

GID = 4242  # root may give a file any group id, even one without a name


@pytest.fixture(autouse=True)
def _modes_restored() -> Iterator[None]:
    """Each test sets the process-wide modes it wants; the default comes back after."""
    yield
    modes.set_modes(modes.LibraryModes())


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    yield
    os.umask(old)


def mode_and_gid(path: Path) -> tuple[int, int]:
    info = path.stat()
    return stat.S_IMODE(info.st_mode), info.st_gid


def test_folders_and_files_get_the_modes_and_group_whatever_the_umask(
    tmp_path: Path, umask_077: None
) -> None:
    """Under umask 0077, every folder `ensure_folder` makes (each missing level) gets
    dir_mode and the group, and a temporary file (which lands by rename) file_mode and the
    group; the existing container folder is left as it is."""
    modes.set_modes(modes.LibraryModes(0o640, 0o2750, GID))
    container = tmp_path / "forge-a"
    container.mkdir(mode=0o700)
    localfs.ensure_folder(os.fsencode(container), os.fsencode(container / "a" / "b"))
    fd = localfs.open_temp(os.fsencode(container / "a" / "b" / "x.part"))
    os.close(fd)
    assert mode_and_gid(container / "a") == (0o2750, GID)
    assert mode_and_gid(container / "a" / "b") == (0o2750, GID)
    assert mode_and_gid(container / "a" / "b" / "x.part") == (0o640, GID)
    assert mode_and_gid(container) == (0o700, 0)


def test_wider_modes_than_the_umask_allows_are_applied(tmp_path: Path, umask_077: None) -> None:
    """Group-writable modes (for a Samba share) are applied as configured: the umask
    cannot narrow them; without a group the process's own stays."""
    modes.set_modes(modes.LibraryModes(0o664, 0o3775, None))
    modes.make_folders(os.fsencode(tmp_path), os.fsencode(tmp_path / "media" / "c"))
    os.close(localfs.open_temp(os.fsencode(tmp_path / "media" / "c" / "f")))
    assert mode_and_gid(tmp_path / "media") == (0o3775, os.getegid())
    assert mode_and_gid(tmp_path / "media" / "c") == (0o3775, os.getegid())
    assert mode_and_gid(tmp_path / "media" / "c" / "f") == (0o664, os.getegid())


def test_a_folder_inheriting_setgid_needs_no_chmod_or_chown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the unit's umask (0027) and a setgid library folder of the library's group, a
    new folder already has mode 2750 and the group: no chmod or chown is made (the unit's
    sandbox refuses a chmod that sets the setgid bit)."""
    modes.set_modes(modes.LibraryModes(0o640, 0o2750, GID))
    media = tmp_path / "media"
    media.mkdir()
    os.chown(media, -1, GID)
    media.chmod(0o2750)
    calls: list[str] = []
    monkeypatch.setattr(os, "fchmod", lambda *a: calls.append("fchmod"))
    monkeypatch.setattr(os, "fchown", lambda *a: calls.append("fchown"))
    old = os.umask(0o027)
    try:
        modes.make_folders(os.fsencode(media), os.fsencode(media / "forge-a" / "x"))
        os.close(localfs.open_temp(os.fsencode(media / "forge-a" / "x" / "f")))
    finally:
        os.umask(old)
    assert calls == []
    assert mode_and_gid(media / "forge-a" / "x") == (0o2750, GID)
    assert mode_and_gid(media / "forge-a" / "x" / "f") == (0o640, GID)


def test_a_refused_chmod_keeps_the_file_and_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_077: None
) -> None:
    """A filesystem or sandbox refusing chmod/chown (EPERM) does not fail the file: it is
    made (its bytes are safe) and `library_modes_refused` is logged once for the process."""
    modes.set_modes(modes.LibraryModes(0o640, 0o2750, None))
    monkeypatch.setattr(modes, "_refused_logged", type(modes._refused_logged)())

    def refuse(*_args: object) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refuse)
    os.close(localfs.open_temp(os.fsencode(tmp_path / "a")))
    os.close(localfs.open_temp(os.fsencode(tmp_path / "b")))
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists()
    refused = [r for r in read_log(tmp_path / "log.jsonl") if r["event"] == "library_modes_refused"]
    assert len(refused) == 1 and refused[0]["path"] == str(tmp_path / "a")


def test_the_group_must_exist_and_hold_this_process() -> None:
    """No group: the process's own. A group that does not exist, or that this non-root
    process is not a member of, is refused with what to do; root, or a member, may use it."""
    assert modes.resolve(LibraryConfig(), 1000, {1000}) == modes.LibraryModes(0o640, 0o2750, None)
    with pytest.raises(modes.LibraryError, match="no group 'no-such-group-xyz'"):
        modes.resolve(LibraryConfig(group="no-such-group-xyz"), 0, {0})
    with pytest.raises(modes.LibraryError) as caught:
        modes.resolve(LibraryConfig(group="root"), 65534, {65534})
    assert str(caught.value) == (
        "library.group: this process (user nobody) is not a member of group 'root': add it"
        " (usermod -aG root nobody, or SupplementaryGroups=root in the unit), then restart"
    )
    member = modes.resolve(LibraryConfig(group="root", file_mode=0o600), 65534, {65534, 0})
    assert member == modes.LibraryModes(0o600, 0o2750, 0)
    assert modes.resolve(LibraryConfig(group="root"), 0, {0}).gid == 0
