"""`transports/local/beneath.Parents`: a listed file's folder opened once per copy worker
and kept open never lets a link planted later be followed, and a name that is not a plain
file name is refused even when its folder is already open."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from forge_syncd.transports.local.beneath import Parents, open_root


def read_all(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def test_a_folder_swapped_for_a_link_after_its_first_file_is_never_followed(
    tmp_path: Path,
) -> None:
    """The worker opened day/ for day/a.png; day/ is then renamed away and a link to a
    folder of the attacker's put in its place: day/b.png still comes from the folder that
    was opened (the original b.png), never through the link; a fresh opener refuses the
    link outright."""
    root = tmp_path / "root"
    (root / "day").mkdir(parents=True)
    (root / "day" / "a.png").write_bytes(b"a")
    (root / "day" / "b.png").write_bytes(b"original b")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.png").write_bytes(b"secret")
    root_fd = open_root(str(root))
    parents = Parents(root_fd)
    try:
        assert read_all(parents.open_file(b"day/a.png")[0]) == b"a"
        os.rename(root / "day", root / "day.old")
        os.symlink(elsewhere, root / "day")
        assert read_all(parents.open_file(b"day/b.png")[0]) == b"original b"
        with pytest.raises(OSError):
            Parents(root_fd).open_file(b"day/b.png")
    finally:
        parents.close()
        os.close(root_fd)


@pytest.mark.parametrize("name", [b"day/..", b"day/.", b"day/"])
def test_a_name_that_is_not_a_plain_file_name_is_refused_in_an_open_folder(
    tmp_path: Path, name: bytes
) -> None:
    """With day/ already open, `day/..`, `day/.` and `day/` raise OSError (never the
    folder or its parent opened as a file)."""
    (tmp_path / "day").mkdir()
    (tmp_path / "day" / "a.png").write_bytes(b"a")
    root_fd = open_root(str(tmp_path))
    parents = Parents(root_fd)
    try:
        os.close(parents.open_file(b"day/a.png")[0])
        with pytest.raises(OSError):
            parents.open_file(name)
    finally:
        parents.close()
        os.close(root_fd)
