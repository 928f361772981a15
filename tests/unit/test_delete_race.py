"""The purge's delete must remove the very file whose bytes it hashed: a file renamed over
the name while the delete hashes it (an atomic save: write a temporary file, rename it into
place) holds bytes no library has, and must be kept.

Reviewer's regression test (issue 23 review): both delete scripts are run here as the
container runs them (`sh`, `python3`), on a local folder; the writer's rename is made to
land during the hash deterministically (a `sha256sum` on PATH that renames first; a
`hashlib` whose first `update` renames)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from forge_syncd.remote.types import RemoteFile
from forge_syncd.transports.shell.delete import (
    DELETE_LOOP,
    PYTHON_DELETE,
    delete_input,
    parse_deleted,
)

OLD = b"old image bytes, synced" * 100
NEW = b"NEW image bytes, never synced" * 100


def _setup(root: Path) -> bytes:
    (root / "img.png").write_bytes(OLD)
    (root / "incoming.tmp").write_bytes(NEW)
    st = os.stat(root / "img.png")
    remote = RemoteFile(b"img.png", st.st_size, st.st_mtime_ns)
    return delete_input([remote], {b"img.png": hashlib.sha256(OLD).hexdigest()})


def test_sh_delete_keeps_a_file_renamed_over_the_name_while_it_was_hashed(tmp_path: Path) -> None:
    """sh loop: `sha256sum` hashes the old inode; the writer's rename lands before `rm`."""
    root = tmp_path / "root"
    root.mkdir()
    stdin = _setup(root)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "sha256sum").write_text(
        "#!/bin/sh\nh=$(/usr/bin/env -i PATH=/usr/bin:/bin sha256sum)\n"
        'mv -f incoming.tmp img.png\necho "$h"\n'
    )
    (shim / "sha256sum").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}
    script = f"xargs -0 -r -x -n 25 sh -c '{DELETE_LOOP}' sh"
    out = subprocess.run(
        ["sh", "-c", script], input=stdin, cwd=root, env=env, capture_output=True, check=False
    ).stdout
    parse_deleted(out, {b"img.png"})
    assert (root / "img.png").read_bytes() == NEW


PRELUDE = r"""
import sys, os, hashlib as _real
class _Sha:
    def __init__(self):
        self.h, self.moved = _real.sha256(), False
    def update(self, data):
        self.h.update(data)
        if not self.moved:
            self.moved = True
            os.rename("incoming.tmp", "img.png")  # the writer's atomic save, mid-hash
    def hexdigest(self):
        return self.h.hexdigest()
class _Mod:
    sha256 = _Sha
sys.modules["hashlib"] = _Mod
"""


def test_python_delete_keeps_a_file_renamed_over_the_name_while_it_was_hashed(
    tmp_path: Path,
) -> None:
    """python3 script: it hashes the old inode through its fd; the rename lands mid-hash."""
    root = tmp_path / "root"
    root.mkdir()
    stdin = _setup(root)
    subprocess.run(
        [sys.executable, "-c", PRELUDE + PYTHON_DELETE],
        input=stdin,
        cwd=root,
        capture_output=True,
        check=False,
    )
    assert (root / "img.png").read_bytes() == NEW
