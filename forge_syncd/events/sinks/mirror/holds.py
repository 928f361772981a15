"""What `cleanup.require_mirror` asks: does the mirror hold this file, verified?

Read from the mirror sink's state file (`state.py`, table `mirrored`) with a read-only
connection of its own, so a cleanup or a drain in another process (`forge-syncd --once
--drain`) asks the same record the daemon's sink writes. A file counts as held when the
mirror has these very bytes (sha256) under its name, `<container>/<path>`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from forge_syncd.events.sinks.mirror.state import state_path
from forge_syncd.logs import get_logger
from forge_syncd.paths import display

# Given a remote file's path (relative to the container's root) and the sha256 the library
# holds for it, whether the mirror holds those bytes under that name.
MirrorCheck = Callable[[bytes, str], bool]


def mirror_check(state_dir: Path, sink: str, container: str) -> MirrorCheck:
    """Return the check for `container`'s files against mirror sink `sink` (its state under
    `state_dir`), reading what the mirror holds of that container once, at its first use
    (a copy made later counts at the next cleanup). A mirror with no state yet holds
    nothing."""
    held: dict[str, str] | None = None

    def holds(remote_path: bytes, sha256: str) -> bool:
        nonlocal held
        if held is None:
            held = _held(state_path(state_dir, sink), container, sink)
        return held.get(f"{container}/{display(remote_path)}") == sha256

    return holds


def _held(path: Path, container: str, sink: str) -> dict[str, str]:
    """Return {name: sha256} of what the mirror holds under `<container>/`."""
    if not path.exists():
        return {}
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            rows = db.execute(
                "SELECT name, sha256 FROM mirrored WHERE substr(name, 1, ?) = ?",
                (len(container) + 1, container + "/"),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        get_logger(container=container, sink=sink).warning(
            "mirror_state_unreadable", error=str(exc)[:300]
        )
        return {}
    return {str(name): str(sha256) for name, sha256 in rows}
