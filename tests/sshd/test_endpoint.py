"""An SSH endpoint that authenticates but gives only a terminal (RunPod's proxied SSH): no
command runs and SFTP does not start. It is named plainly, not as a generic failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from forge_syncd.errorkinds import ErrorKind
from tests.conftest import make_container
from tests.support.runs import run_sync
from tests.support.sshd import SshdServer


@pytest.fixture(scope="module")
def terminal_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """Every exec and subsystem request answers as RunPod's proxy does, then ends."""
    folder = tmp_path_factory.mktemp("terminal-only")
    message = "Error: Your SSH client doesn't support PTY"
    server = SshdServer(
        folder / "sshd", extra_config=[f'ForceCommand echo "{message}"; exit 1']
    ).start()
    yield server
    server.stop()


def test_an_endpoint_without_exec_or_sftp_is_reported_plainly(
    terminal_only: SshdServer, tmp_path: Path
) -> None:
    (tmp_path / "remote").mkdir()
    container = make_container(terminal_only, tmp_path / "remote")
    outcome = run_sync(container, tmp_path / "media", tmp_path / "state")
    assert outcome.result == "failure"
    assert outcome.error_kinds == {ErrorKind.ENDPOINT}
    assert outcome.error is not None
    assert outcome.error.startswith("no SFTP or exec on this endpoint: use SSH over exposed TCP")
    assert "it printed: Error: Your SSH client doesn't support PTY" in outcome.error
