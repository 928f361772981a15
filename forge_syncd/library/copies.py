"""The library side of a sync: which local copies exist, checked while the remote lists."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from forge_syncd.library import localfs
from forge_syncd.library.manifest import FileRecord, FileState, Manifest
from forge_syncd.library.safety import copy_intact
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import RemoteFile


def local_state(
    container_dir: bytes, files: Iterable[RemoteFile], wants: Scope
) -> dict[bytes, tuple[int, int]]:
    """Return {path: (size, mtime_ns)} of the local copies of the wanted remote files.

    The paths come from a listing, which refused every unsafe name already, so they are
    joined directly (this runs for every remote file on every poll)."""
    found: dict[bytes, tuple[int, int]] = {}
    for remote in files:
        if wants.wants(remote.path):
            here = localfs.local_size(container_dir + b"/" + remote.path)
            if here is not None:
                found[remote.path] = here
    return found


class LocalCheck:
    """Checks (`lstat`) that every synced file's local copy of a container is still there
    with its recorded size, on a thread of its own, started before the remote listing: the
    check runs while the remote lists, when this process would only wait. It reads only
    (path, size) of the synced rows; the whole rows, which a plan needs, are read after
    the run decides it plans (`copies`), never for a poll whose remembered plan holds
    (`skip_rows`): at 20,000 files they cost ~60 ms of the GIL against ~20 ms."""

    def __init__(
        self, manifest: Manifest, container: str, container_dir: bytes, rows: bool = False
    ) -> None:
        """`rows`: the run will plan (no remembered plan to reuse): read the whole rows
        right after the sizes, not once asked."""
        self.container_dir = container_dir
        self.manifest = manifest
        self.container = container
        self.version = manifest.files.version(container)
        self.records: dict[bytes, FileRecord] = {}
        self.mismatched: set[bytes] = set()  # synced, but missing locally or of another size
        self._error: BaseException | None = None
        self._decided = threading.Event()  # `want_rows`, `copies` or `skip_rows` was called
        self._rows_wanted = False
        if rows:
            self.want_rows()
        self._checked = threading.Event()
        self._thread = threading.Thread(target=self._check, name=f"check-{container}", daemon=True)
        self._thread.start()

    def _check(self) -> None:
        try:
            base = self.container_dir + b"/"  # recorded paths were checked when listed
            for path, size in self.manifest.files.synced_sizes(self.container):
                if not copy_intact(size, localfs.local_size(base + path)):
                    self.mismatched.add(path)
        except BaseException as exc:  # handed to the run's thread by wait()
            self._error = exc
        finally:
            self._checked.set()
        self._decided.wait()
        if self._rows_wanted and self._error is None:
            try:
                self.records = self.manifest.files.records(self.container)
            except BaseException as exc:
                self._error = exc

    def wait(self) -> LocalCheck:
        """Return self once the local copies are checked (`mismatched`); raise what the
        check raised."""
        self._checked.wait()
        if self._error is not None:
            raise self._error
        return self

    def skip_rows(self) -> None:
        """The run plans nothing (its remembered plan holds): the whole rows are not read."""
        self._decided.set()

    def want_rows(self) -> None:
        """The run will plan: read the whole rows as soon as the sizes are checked (while
        the listing is parsed)."""
        self._rows_wanted = True
        self._decided.set()

    def copies(self) -> CheckedCopies:
        """The checked copies with the container's whole rows (read on the check's
        thread)."""
        self.want_rows()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return CheckedCopies(self.container_dir, self.records, self.mismatched)


class CheckedCopies:
    """Local copies (`safety.Copies`) as a plan sees them: a synced file's size as checked
    by LocalCheck, any other path looked up (lstat) when asked, so a plan of 100,000 files
    never holds all their local sizes at once."""

    def __init__(
        self, container_dir: bytes, records: dict[bytes, FileRecord], mismatched: set[bytes]
    ) -> None:
        self.container_dir = container_dir
        self.records = records
        self.mismatched = mismatched

    def get(self, path: bytes, /) -> tuple[int, int] | None:
        # Listing paths were checked already (unsafe names refused), so joined directly.
        return localfs.local_size(self.container_dir + b"/" + path)

    def has_size(self, path: bytes, size: int, /) -> bool:
        record = self.records.get(path)
        if record is not None and record.state == FileState.SYNCED and record.size == size:
            return path not in self.mismatched
        here = self.get(path)
        return here is not None and here[0] == size
