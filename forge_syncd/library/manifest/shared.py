"""The manifest's view of identical bytes (`library.dedupe`): library files found by their
sha256 and size, and which copies were made to share another's blocks (schema 7)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from forge_syncd.library.manifest.rows import Handle

# Library copies that hold bytes: a file synced (or since purged on the container: the
# library copy stays), and a kept version. A `forgotten` file was deleted from the library.
HOLDERS = (
    "SELECT sha256, size, container, path, 0 AS version FROM files"
    " WHERE sha256 IS NOT NULL AND state IN ('synced', 'purged')"
    " UNION ALL SELECT sha256, size, container, version_path, 1 FROM versions"
    " WHERE sha256 IS NOT NULL AND state = 'kept'"
)


@dataclass(frozen=True, slots=True)
class Holder:
    """A library copy of some bytes: `path` relative to its container's folder (a version's
    starts with `.versions/`)."""

    container: str
    path: bytes
    version: bool


class SharedRows:
    """Queries over `files` and `versions` by bytes, and the `shared_at` marks."""

    def __init__(self, manifest: Handle) -> None:
        self._manifest = manifest

    def holders(self, sha256: str, size: int, limit: int = 1000) -> list[Holder]:
        """Return the library copies recorded with these bytes, files before versions,
        oldest first (at most `limit`)."""
        with self._manifest.reading() as db:
            rows = db.execute(
                "SELECT container, path, version FROM (" + HOLDERS + ")"  # noqa: S608
                " WHERE sha256 = ? AND size = ? ORDER BY version, container, path LIMIT ?",
                (sha256, size, limit),
            ).fetchall()
        return [Holder(str(r[0]), bytes(r[1]), bool(r[2])) for r in rows]

    def sizes_held(self, sizes: Iterable[int]) -> set[int]:
        """Return which of `sizes` some library copy with a known sha256 has (a file of
        another size cannot be a duplicate of one)."""
        held = set()
        with self._manifest.reading() as db:
            for size in set(sizes):
                row = db.execute(
                    "SELECT EXISTS (SELECT 1 FROM files WHERE size = ? AND sha256 IS NOT NULL"
                    " AND state IN ('synced', 'purged')) OR EXISTS (SELECT 1 FROM versions"
                    " WHERE size = ? AND sha256 IS NOT NULL AND state = 'kept')",
                    (size, size),
                ).fetchone()
                if row[0]:
                    held.add(size)
        return held

    def duplicated(self, min_size: int = 1) -> list[tuple[str, int]]:
        """Return the (sha256, size) that more than one library copy holds, largest first
        (files of at least `min_size` bytes)."""
        with self._manifest.reading() as db:
            rows = db.execute(
                "SELECT sha256, size FROM (" + HOLDERS + ") WHERE size >= ?"  # noqa: S608
                " GROUP BY sha256, size HAVING count(*) > 1 ORDER BY size DESC, sha256",
                (min_size,),
            ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def mark_shared(self, container: str, paths: list[bytes]) -> None:
        """Record that these files' library copies share another's blocks (until they are
        landed again)."""
        if not paths:
            return
        with self._manifest.transaction() as db:
            db.executemany(
                "UPDATE files SET shared_at = synced_at WHERE container = ? AND path = ?",
                [(container, path) for path in paths],
            )

    def saved_bytes(self) -> int:
        """Return the bytes of library files stored as a share of another's blocks."""
        with self._manifest.reading() as db:
            row = db.execute(
                "SELECT coalesce(sum(size), 0) FROM files WHERE shared_at IS NOT NULL"
                " AND shared_at = synced_at AND state IN ('synced', 'purged')"
            ).fetchone()
        return int(row[0])
