"""The local transport's own guarantees beyond the conformance suite: the source folder is
untrusted, so a folder swapped for a symlink after the listing is never followed (to copy,
hash or delete a file outside the source), and a listed file replaced by a link or a FIFO is
never read through."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from forge_syncd.config.model import ContainerConfig
from forge_syncd.errorkinds import FileKind
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem
from forge_syncd.transports.local.transport import LocalTransport
from tests.support.reflink import share_extents
from tests.support.trees import write_file

OLD = 1_700_000_000


def transport(root: Path) -> LocalTransport:
    return LocalTransport(
        ContainerConfig(
            name="n", kind="generic", host="", root=str(root), folders=(), transport="local"
        )
    )


def test_a_folder_swapped_for_a_symlink_after_the_listing_is_never_followed(
    tmp_path: Path,
) -> None:
    """After the listing, `day` is replaced by a link to a folder outside the source that
    holds a file of the same name, size and mtime (the daemon's key, say): the fetch
    reports it vanished and writes nothing, `hashes` leaves it out, and `delete` with the
    outside file's own sha256 deletes nothing."""
    source, outside, library = tmp_path / "source", tmp_path / "outside", tmp_path / "library"
    secret = b"a secret the daemon can read"
    write_file(source / "day" / "a.png", b"x" * len(secret), OLD)
    write_file(outside / "a.png", secret, OLD)
    local = transport(source)
    (listed,) = local.list().files
    os.rename(source / "day", tmp_path / "moved")
    os.symlink(outside, source / "day")
    library.mkdir()
    done: list[Fetched] = []
    item = FetchItem(listed, os.fsencode(library / "a.png"))
    local.fetch([item], FetchCallbacks(done.append), threading.Event())
    assert [(f.temp, f.error_kind) for f in done] == [(None, FileKind.VANISHED)]
    assert os.listdir(library) == []
    assert local.hashes([listed.path]) == {}
    deleted = local.delete([listed], {listed.path: hashlib.sha256(secret).hexdigest()})
    assert (deleted.gone, deleted.differs) == (set(), set())
    assert (outside / "a.png").read_bytes() == secret


def test_a_listed_file_replaced_by_a_link_or_a_fifo_is_not_read(tmp_path: Path) -> None:
    """A listed file replaced by a symlink (to a file outside) or by a FIFO (which would
    block a reader for ever) is reported vanished, without blocking, and nothing is
    written."""
    source, library = tmp_path / "source", tmp_path / "library"
    write_file(source / "link.png", b"listed", OLD)
    write_file(source / "fifo.png", b"listed", OLD)
    write_file(tmp_path / "outside.png", b"listed", OLD)
    local = transport(source)
    files = local.list().files
    os.unlink(source / "link.png")
    os.symlink(tmp_path / "outside.png", source / "link.png")
    os.unlink(source / "fifo.png")
    os.mkfifo(source / "fifo.png")
    library.mkdir()
    done: list[Fetched] = []
    items = [FetchItem(f, os.path.join(os.fsencode(library), f.path)) for f in files]
    local.fetch(items, FetchCallbacks(done.append), threading.Event())
    assert sorted((f.item.remote.path, f.temp, f.error_kind) for f in done) == [
        (b"fifo.png", None, FileKind.VANISHED),
        (b"link.png", None, FileKind.VANISHED),
    ]
    assert os.listdir(library) == []


def test_a_copy_within_one_reflink_filesystem_shares_extents_and_is_its_own_file(
    reflink_dir: Path,
) -> None:
    """Source and library on one XFS (reflinks): the copy is a reflink (it shares the
    source's blocks, `cp --reflink=auto`), never a hardlink (its own inode), and the source
    is still there, unchanged; rewriting the source later leaves the copy's bytes alone."""
    source, library = reflink_dir / "source", reflink_dir / "library"
    data = os.urandom(1024 * 1024)
    write_file(source / "big.png", data, OLD)
    library.mkdir()
    local = transport(source)
    done: list[Fetched] = []
    items = [FetchItem(f, os.fsencode(library / "big.png")) for f in local.list().files]
    local.fetch(items, FetchCallbacks(done.append), threading.Event())
    (fetched,) = done
    assert fetched.temp is not None and fetched.sha256 == hashlib.sha256(data).hexdigest()
    copy = Path(os.fsdecode(fetched.temp))
    assert share_extents(source / "big.png", copy)
    assert os.stat(copy).st_ino != os.stat(source / "big.png").st_ino
    with open(source / "big.png", "r+b") as handle:
        handle.write(b"rewritten")
    assert copy.read_bytes() == data
