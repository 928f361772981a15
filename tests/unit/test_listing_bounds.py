"""The SFTP walk against a lying server (the unit tier: a fake SFTP client behind the same
calls the walk makes): a READDIR that never ends is stopped by the listing limits, and a
walk is stopped by cancel."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from paramiko.message import Message
from paramiko.sftp import CMD_HANDLE, CMD_NAME, CMD_STATUS
from paramiko.sftp_attr import SFTPAttributes

from forge_syncd.remote.errors import ListingError
from forge_syncd.remote.types import Limits
from forge_syncd.transports.shell.listing import parse_find_output
from forge_syncd.transports.ssh.listing import list_with_sftp


class EndlessSftp:
    """An SFTP server that answers every READDIR with the same file, for ever, and
    whose tree is folders all the way down."""

    def __init__(self, folder: bool = False) -> None:
        self.folder = folder
        self.readdirs = 0

    def lstat(self, path: bytes) -> SFTPAttributes:
        attr = SFTPAttributes()
        attr.st_mode = 0o040755
        return attr

    def _request(self, kind: int, *args: Any) -> tuple[int, Message]:
        msg = Message()
        if kind == 11:  # OPENDIR
            msg.add_string(b"handle")
            msg.rewind()
            return CMD_HANDLE, msg
        if kind == 12:  # READDIR
            self.readdirs += 1
            attr = SFTPAttributes()
            attr.st_mode = 0o040755 if self.folder else 0o100644
            attr.st_size, attr.st_mtime = 1, 1_700_000_000
            msg.add_int(1)
            msg.add_string(b"d%d" % self.readdirs if self.folder else b"same.png")
            msg.add_string(b"longname")
            attr._pack(msg)
            msg.rewind()
            return CMD_NAME, msg
        msg.rewind()
        return CMD_STATUS, msg


@pytest.mark.timeout(30)
def test_an_endless_readdir_is_stopped_by_the_listing_limit() -> None:
    """Regression: a lying SFTP READDIR could loop for ever. Every entry counts against
    max_listing_files, so the walk stops with a clear ListingError."""
    server = EndlessSftp()
    with pytest.raises(ListingError, match="max_listing_files"):
        list_with_sftp(server, "/root", (), Limits(files=5000))  # type: ignore[arg-type]
    assert server.readdirs == 5001


class CancellingSftp(EndlessSftp):
    """An endless tree whose server sets `cancel` while it answers READDIR `at`."""

    def __init__(self, cancel: threading.Event, at: int) -> None:
        super().__init__(folder=True)
        self.cancel, self.at = cancel, at

    def _request(self, kind: int, *args: Any) -> tuple[int, Message]:
        if kind == 12 and self.readdirs + 1 == self.at:
            self.cancel.set()
        return super()._request(kind, *args)


@pytest.mark.timeout(30)
def test_cancel_stops_an_sftp_walk() -> None:
    """A walk of an endless tree, cancelled while it reads a folder, stops with
    "cancelled" within 1000 more entries (cancel is checked every 1000): bounded work,
    however long each READDIR takes."""
    cancel = threading.Event()
    server = CancellingSftp(cancel, at=5_500)
    with pytest.raises(ListingError, match="cancelled"):
        list_with_sftp(
            server,  # type: ignore[arg-type]
            "/root",
            (),
            Limits(files=10**9, size=10**12),
            cancel,
        )
    assert server.at <= server.readdirs <= server.at + 1000


def test_a_find_listing_past_max_listing_files_is_refused() -> None:
    """parse_find_output stops at the limit instead of holding every record."""
    record = b"f\x001\x001700000000.0\x00./a.png\x00"
    with pytest.raises(ListingError, match="max_listing_files"):
        parse_find_output(record * 11, Limits(files=10))
    assert len(parse_find_output(record * 10, Limits(files=10)).files) == 1  # one name
