"""When a fetched file counts as verified (a pure rule)."""

from __future__ import annotations

from forge_syncd.errorkinds import FileKind
from forge_syncd.remote.types import Fetched


def fetched_problem(
    fetched: Fetched, sha256_wanted: bool, remote_sha256: str | None
) -> tuple[str, FileKind] | None:
    """Given what a transfer wrote for one file, whether `verify: sha256` is on and the
    remote's sha256 of it, return why it does not count as synced (and the kind), or None:
    it changed on the remote while read (deferred), has another byte count than listed, or
    (under sha256) other bytes than the remote's."""
    remote = fetched.item.remote
    if fetched.changed:
        return "changed on the remote during transfer", FileKind.CHANGED
    if fetched.nbytes != remote.size:
        return f"got {fetched.nbytes} bytes, expected {remote.size}", FileKind.VERIFY
    if sha256_wanted and fetched.sha256 != remote_sha256:
        return "sha256 differs from the remote's", FileKind.VERIFY
    return None
