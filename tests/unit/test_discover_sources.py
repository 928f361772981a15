"""The pure parts of discovery: cutting `Match` blocks out of ssh_config text before
paramiko reads it, and refusing names that several entries claim."""

from __future__ import annotations

import random
from pathlib import Path

import paramiko
import pytest

from forge_syncd.config import load_config
from forge_syncd.service.discover.sources import (
    Clash,
    discover,
    name_clashes,
    read_ssh_config,
)
from forge_syncd.transports.ssh.ssh_config import without_match_blocks

SPELLINGS = [
    'Match exec "touch {c}"',
    'match exec "touch {c}"',
    'MATCH=exec "touch {c}"',
    'Match = exec "touch {c}"',
    '\t  Match\texec "touch {c}"   ',
    'Match host * exec "touch {c}"',
    'Match !exec "touch {c}"',
    'Match all exec "touch {c}"',  # malformed: paramiko would refuse the whole file
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_no_match_line_reaches_paramiko(spelling: str, tmp_path: Path) -> None:
    """Whatever the spelling of `Match`, the text paramiko gets has no Match block: looking
    up every host runs nothing (no canary file), the block's settings apply to none, and
    the lines around it keep their numbers."""
    canary = tmp_path / "CANARY"
    text = (
        "Host a\n  HostName 10.0.0.1\n"
        + spelling.format(c=canary)
        + "\n  User evil\n  Port 1\nHost b\n  HostName 10.0.0.2\n"
    )
    kept, warnings = without_match_blocks(text)
    assert warnings == ["line 3: Match block skipped (Match is never evaluated)"]
    assert kept.split("\n")[5] == "Host b"
    config = paramiko.SSHConfig.from_text(kept)
    for host in ("a", "b", "c"):
        found = config.lookup(host)
        assert "user" not in found and "port" not in found
    assert not canary.exists()


def test_a_match_block_ends_at_the_next_host_or_match_only(tmp_path: Path) -> None:
    """Everything after a Match line is its block until the next Host or Match line, even
    settings that look global; a file ending in a Match block keeps the Host blocks before."""
    kept, warnings = without_match_blocks(
        "Host a\n  User u\nMatch user x\n  Port 1\n# comment\nMatch all\n  Port 2\n"
    )
    assert kept == "Host a\n  User u\n\n\n\n\n\n"
    assert len(warnings) == 2


def test_crlf_and_cr_newlines_are_read_as_text_mode_reads_them(tmp_path: Path) -> None:
    """A file with CRLF or CR line ends is split as paramiko's own text-mode reading would:
    a Match line after a CR is still found."""
    path = tmp_path / "ssh_config"
    path.write_bytes(b"Host a\r\n  User u\rMatch exec x\r\n  Port 1\r\n")
    kept, warnings = without_match_blocks(read_ssh_config(path))
    assert warnings == ["line 3: Match block skipped (Match is never evaluated)"]
    assert kept == "Host a\n  User u\n\n\n"


def test_name_clashes_do_not_depend_on_order() -> None:
    """A name several entries claim is one Clash listing them in the source's order; the
    set of clashing names is the same however the entries come."""
    entries: list[tuple[str, object]] = [
        ("Host Vast.1", {"name": "vast-1"}),
        ("Host vast-1", {"name": "vast-1"}),
        ("Host vast-2", {"name": "vast-2"}),
        ("entry 3", "not a mapping"),
        ("entry 4", {"name": 7}),
    ]
    assert name_clashes(entries) == [Clash("vast-1", ("Host Vast.1", "Host vast-1"))]
    for seed in range(5):
        shuffled = entries[:]
        random.Random(seed).shuffle(shuffled)
        assert [c.name for c in name_clashes(shuffled)] == ["vast-1"]


def test_a_discovered_entry_never_gets_the_local_transport(tmp_path: Path) -> None:
    """A discovery source names boxes to reach over SSH; an entry asking for `transport:
    local` (a folder of this machine, e.g. /etc, copied into the library and purged) is
    refused with its reason, and the source's other entries are kept."""
    key = tmp_path / "id"
    key.write_text("a key\n")
    key.chmod(0o600)
    script = tmp_path / "list"
    entries = '[{"name": "n", "transport": "local", "root": "/etc"}, {"name": "s", "host": "h"}]'
    script.write_text(f"#!/bin/sh\necho '{entries}'\n")
    script.chmod(0o755)
    config_path = tmp_path / "forge-sync.yaml"
    config_path.write_text(
        f"media_root: /m\ndefaults:\n  ssh: {{identity_file: {key}}}\n"
        f"discover:\n  - {{type: command, command: [{script}], kind: generic, root: /x}}\n"
    )
    config = load_config(config_path)
    found = discover(config.discover[0], config)
    assert [c.name for c in found.containers] == ["s"]
    assert found.problems == ["entry 'n': transport: 'local' is not discovered (configure it)"]
