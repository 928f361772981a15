"""The methods `Manifest` had before it was split by what it keeps (issue 26): each calls
the part that keeps its table. They go once every caller names the part
(`manifest.files.records(...)`); `manifest.runs(...)` is `RunRows.__call__` meanwhile."""

from __future__ import annotations

from collections.abc import Iterable

from forge_syncd.library.manifest.files import FileRows
from forge_syncd.library.manifest.outbox import Outbox
from forge_syncd.library.manifest.rows import Event, FileRecord, RunRecord, SyncedFile, VersionMove
from forge_syncd.library.manifest.runs import RunRows
from forge_syncd.library.manifest.versions import VersionRows


class Delegations:
    """`Manifest`'s old methods, each one line calling `files`, `versions`, `runs` or
    `outbox`."""

    files: FileRows
    versions: VersionRows
    runs: RunRows
    outbox: Outbox

    def files_version(self, container: str) -> tuple[int, int]:
        return self.files.version(container)

    def records(self, container: str) -> dict[bytes, FileRecord]:
        return self.files.records(container)

    def records_at(self, container: str, paths: Iterable[bytes]) -> dict[bytes, FileRecord]:
        return self.files.records_at(container, paths)

    def record_synced(
        self,
        container: str,
        files: Iterable[SyncedFile],
        events: Iterable[Event] = (),
        versions: Iterable[VersionMove] = (),
    ) -> None:
        self.files.record_synced(container, files, events, versions)

    def record_forgotten(self, container: str, paths: Iterable[bytes]) -> None:
        self.files.record_forgotten(container, paths)

    def mark_recheck(self, container: str, paths: Iterable[bytes]) -> None:
        self.files.mark_recheck(container, paths)

    def record_purged(
        self,
        container: str,
        paths: Iterable[bytes],
        events: Iterable[Event] = (),
        settled: Iterable[bytes] = (),
    ) -> None:
        self.files.record_purged(container, paths, events, settled)

    def record_purge_intents(self, container: str, files: Iterable[tuple[bytes, int, int]]) -> None:
        self.files.record_purge_intents(container, files)

    def purge_intents(self, container: str) -> dict[bytes, tuple[int, int]]:
        return self.files.purge_intents(container)

    def future_files(self, container: str) -> dict[bytes, tuple[int, int]]:
        return self.files.future(container)

    def set_future_files(self, container: str, files: dict[bytes, tuple[int, int]]) -> None:
        self.files.set_future(container, files)

    def record_versions_pending(self, container: str, moves: Iterable[VersionMove]) -> None:
        self.versions.record_pending(container, moves)

    def pending_versions(self, container: str) -> list[VersionMove]:
        return self.versions.pending(container)

    def kept_versions(self, container: str, before: str | None = None) -> list[VersionMove]:
        return self.versions.kept(container, before)

    def drop_pending_versions(self, container: str, moves: Iterable[VersionMove]) -> None:
        self.versions.drop_pending(container, moves)

    def record_versions_pruned(
        self, container: str, moves: Iterable[VersionMove], events: Iterable[Event] = ()
    ) -> None:
        self.versions.record_pruned(container, moves, events)

    def newest_run_start(self, container: str) -> str | None:
        return self.runs.newest_start(container)

    def start_run(
        self, container: str, job: str, trigger: str | None = None, dry_run: bool = False
    ) -> RunRecord:
        return self.runs.start(container, job, trigger, dry_run)

    def finish_run(
        self,
        run_id: str,
        result: str,
        files: int,
        nbytes: int,
        error: str | None,
        events: Iterable[Event] = (),
    ) -> None:
        self.runs.finish(run_id, result, files, nbytes, error, events)

    def last_result(self, container: str, job: str) -> str | None:
        return self.runs.last_result(container, job)

    def run_containers(self) -> set[str]:
        return self.runs.containers()

    def last_copy(self, container: str) -> RunRecord | None:
        return self.runs.last_copy(container)

    def events_after(self, last_id: int, limit: int = 100) -> list[Event]:
        return self.outbox.after(last_id, limit)

    def sink_cursor(self, sink: str) -> int:
        return self.outbox.cursor(sink)

    def set_sink_cursor(self, sink: str, last_id: int) -> None:
        self.outbox.set_cursor(sink, last_id)

    def events_pending(self, sink: str) -> int:
        return self.outbox.pending(sink)
