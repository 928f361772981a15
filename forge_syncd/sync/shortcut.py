"""The remote-hash shortcut: before a large file (`sync.dedupe_min_size`, 8 MiB by default) is
transferred, the container hashes it; when a library copy holds those bytes (sha256 and
size), the file is made from that copy on this machine (shared or copied: `library.dedupe`,
then checked against the hash) instead of crossing the link, and lands as any fetched file
does (versions, manifest, events: `commit.py`).

Only files of a size some library copy has are hashed (another size cannot be a duplicate),
only where the container hashes in place ("hash" among the transport's fast paths: hashing
over SFTP would read the whole file across the link), and only files that cannot be
mid-write: settled (`mtimes.settled_by` the container's clock when hashed), and listed again
after the hashing with the same size and mtime. Anything else is transferred as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from forge_syncd.jobs.record import JobContext
from forge_syncd.library.dedupe import Sharer
from forge_syncd.mtimes import settled_by
from forge_syncd.paths import display, local_path
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.types import RemoteFile

HASH_FAST_PATH = "hash"  # `Probe.fast_paths`: the container hashes its files itself


@dataclass(frozen=True)
class LocalSource:
    """Library copies holding a remote file's bytes (`sha256`), best first."""

    sources: tuple[bytes, ...]
    sha256: str


def worth_hashing(files: Iterable[RemoteFile], min_size: int) -> list[RemoteFile]:
    """Given the files a run will fetch, return those large enough for the shortcut."""
    return [f for f in files if f.size >= max(1, min_size)]


def unchanged(hashed: Sequence[RemoteFile], listed: Iterable[RemoteFile]) -> set[bytes]:
    """Given the files hashed (as listed before) and a listing made after the hashing,
    return the paths listed again with the same size and mtime."""
    before = {f.path: f for f in hashed}
    return {f.path for f in listed if before.get(f.path) == f}


def local_sources(
    ctx: JobContext, sharer: Sharer, log: Any, files: Sequence[RemoteFile]
) -> dict[bytes, LocalSource]:
    """Return {path: LocalSource} for the files of `files` that can be made from library
    copies instead of transferred (see the module docstring); {} when none can. A remote
    failure while asking is logged and leaves every file to the transfer."""
    big = worth_hashing(files, ctx.container.sync.dedupe_min_size)
    held = ctx.manifest.shared.sizes_held(f.size for f in big) if big else set()
    big = [f for f in big if f.size in held]  # no library copy of that size: no duplicate
    if not big:
        return {}
    probe = ctx.remote.probe()
    if HASH_FAST_PATH not in probe.fast_paths:
        return {}
    try:
        read_after = probe.clock.surely_passed_ns()  # the hashing reads after this
        hashes = ctx.remote.hashes([f.path for f in big], ctx.cancel)
        found = {}
        for remote in big:
            sha256 = hashes.get(remote.path)
            if sha256 is None or not settled_by(remote.mtime_ns, read_after):
                continue
            target = local_path(ctx.container_dir, remote.path)
            sources = sharer.sources(sha256, remote.size, target)
            if sources:
                found[remote.path] = LocalSource(tuple(sources), sha256)
        if not found:
            return {}
        hashed = [f for f in big if f.path in found]
        still = unchanged(hashed, ctx.remote.list(None, ctx.cancel).files)
    except RemoteError as exc:
        log.warning("shortcut_skipped", error=f"asking the container for hashes: {exc}"[:300])
        return {}
    for path in set(found) - still:
        log.info("shortcut_skipped", path=display(path), reason="changed while hashed")
    return {path: source for path, source in found.items() if path in still}
