"""The daemon's SSH key as the Debian package's postinst makes it (forge_syncd.keygen)."""

from __future__ import annotations

import stat
from pathlib import Path

import paramiko
import pytest

from forge_syncd.keygen import ensure_key, main


def test_makes_an_ed25519_key_only_its_owner_reads(tmp_path: Path) -> None:
    """A missing key is made: OpenSSH ed25519 that paramiko loads, mode 0600, no temporary
    file left; the .pub is its public half with the comment, mode 0644."""
    folder = tmp_path / "etc"
    folder.mkdir()
    key = folder / "id_ed25519"
    assert main([str(key), "--comment", "forge-sync@test"]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = paramiko.Ed25519Key.from_private_key_file(str(key))
    pub = (folder / "id_ed25519.pub").read_text()
    assert pub == f"ssh-ed25519 {loaded.get_base64()} forge-sync@test\n"
    assert stat.S_IMODE((folder / "id_ed25519.pub").stat().st_mode) == 0o644
    assert sorted(p.name for p in folder.iterdir()) == ["id_ed25519", "id_ed25519.pub"]


def test_an_existing_key_is_never_replaced(tmp_path: Path) -> None:
    """A second run keeps the key the boxes already trust, byte for byte, and says so."""
    key = tmp_path / "id_ed25519"
    ensure_key(key, None, "first")
    before = key.read_bytes(), (tmp_path / "id_ed25519.pub").read_bytes()
    assert ensure_key(key, None, "second").startswith("kept the existing key")
    assert (key.read_bytes(), (tmp_path / "id_ed25519.pub").read_bytes()) == before


def test_a_missing_public_half_is_derived_from_the_key(tmp_path: Path) -> None:
    """A key whose .pub was deleted gets it back, from the same key."""
    key = tmp_path / "id_ed25519"
    ensure_key(key, None, "c")
    pub = tmp_path / "id_ed25519.pub"
    line = pub.read_text()
    pub.unlink()
    ensure_key(key, None, "c")
    assert pub.read_text() == line


@pytest.mark.parametrize(
    ("content", "why"), [(b"not a key\n", "garbage"), (None, "a folder in the way")]
)
def test_bad_input_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, why: str
) -> None:
    """An unreadable key (garbage, or a folder where the file should be) is one line on
    stderr and exit 1, never a traceback; nothing is written beside it."""
    key = tmp_path / "id_ed25519"
    if content is None:
        key.mkdir()
    else:
        key.write_bytes(content)
    assert main([str(key)]) == 1, why
    err = capsys.readouterr().err
    assert err.startswith("forge-syncd keygen: ") and "Traceback" not in err
    assert not (tmp_path / "id_ed25519.pub").exists()


def test_an_unknown_owner_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--owner naming no user fails before anything is written."""
    folder = tmp_path / "etc"
    folder.mkdir()
    assert main([str(folder / "k"), "--owner", "no-such-user-forge"]) == 1
    assert "no-such-user-forge" in capsys.readouterr().err
    assert list(folder.iterdir()) == []
