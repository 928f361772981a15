"""A connection that stalls without closing is detected by a timeout, never hangs a run."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

from forge_syncd.library.manifest import Manifest
from forge_syncd.service.runner import ContainerRunner
from tests.conftest import make_container
from tests.support.proxy import FreezingProxy
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file


def test_a_stalled_connection_fails_the_run_and_the_next_run_reconnects(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """The proxy freezes mid-transfer: the run fails (4 missed keepalives of 0.5 s) instead
    of hanging and leaves no partial file; once the path works again, the same runner's next
    run drops the dead connection, reconnects and completes."""
    remote = tmp_path / "remote"
    # Larger than what may be in flight when the proxy freezes: on a busy machine the first
    # channel open is slow, the measured round trip long, and the window (window.py) grows
    # to its 8 MiB bound; 8 MB then arrived whole before the freeze.
    write_file(remote / "video.mp4", os.urandom(24_000_000), 1.7e9)
    proxy = FreezingProxy(sshd.port)
    known = tmp_path / "known_hosts"
    known.write_text(sshd.host_key_line().replace(f":{sshd.port} ", f":{proxy.port} "))
    container = make_container(sshd, remote, bwlimit=4 * 1024 * 1024)
    container = dataclasses.replace(
        container,
        ssh=dataclasses.replace(container.ssh, port=proxy.port, known_hosts=known, keepalive_s=0.5),
    )
    runner = ContainerRunner(
        container, os.fsencode(tmp_path / "media"), Manifest.open(tmp_path / "state")
    )
    threading.Timer(1.5, proxy.frozen.set).start()
    try:
        first = runner.run("sync")  # returns (a hang is caught by the test's timeout)
        assert first is not None and first.result == "failure", first
        library = tmp_path / "media" / "forge-a"
        assert tree_files(library) == {}
        proxy.frozen.clear()  # the path works again; the same runner connects afresh
        second = runner.run("sync")
        assert second is not None and second.result == "success", second
        assert tree_files(library) == tree_files(remote)
    finally:
        proxy.close()
        runner.close()
