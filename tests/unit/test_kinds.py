"""The package's words are `StrEnum`s whose members are their values: wherever one travels
(JSON on the socket and in the outbox, structlog's JSON and console lines, SQLite, PostgreSQL
parameters, metric labels, f-strings) it is the same string it was before it was an enum."""

from __future__ import annotations

import json
import sqlite3
from enum import StrEnum

import pytest
import structlog
from prometheus_client import CollectorRegistry, Counter, generate_latest
from psycopg.adapt import PyFormat, Transformer

from forge_syncd.cleanup.rules import Action
from forge_syncd.errorkinds import ErrorKind, FileKind
from forge_syncd.jobs.kinds import ContainerState, Job, RunResult, WatchState
from forge_syncd.library.manifest import FileState, VersionState
from forge_syncd.remote.types import ListingMethod, TransferMethod
from forge_syncd.sync.plan import SkipReason

ENUMS: list[type[StrEnum]] = [
    Action,
    ContainerState,
    ErrorKind,
    FileKind,
    FileState,
    Job,
    ListingMethod,
    RunResult,
    SkipReason,
    TransferMethod,
    VersionState,
    WatchState,
]
MEMBERS = [member for enum in ENUMS for member in enum]


def test_the_words_keep_their_values() -> None:
    """The values are the strings SPEC, the manifest and the metrics have always used."""
    assert list(Job) == ["sync", "cleanup"]
    assert list(RunResult) == ["success", "failure", "cancelled"]
    assert list(ContainerState) == ["idle", "syncing", "cleaning", "paused", "unreachable", "error"]
    assert list(WatchState) == ["watching", "polling", "off"]
    assert list(FileState) == ["synced", "purged", "forgotten"]
    assert list(VersionState) == ["pending", "kept", "pruned"]
    assert list(SkipReason) == ["too_large", "settling", "mtime_in_future"]
    assert list(Action) == ["purge", "keep"]
    assert list(ListingMethod) == ["find", "sftp", "watch"]
    assert list(TransferMethod) == ["tar", "sftp", "copy", "archive", "push"]


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: f"{type(m).__name__}.{m.name}")
def test_a_member_is_its_value_everywhere_it_travels(member: StrEnum) -> None:
    """JSON (as value and as key), f-strings, structlog's renderers, a metric label, a
    SQLite parameter and a PostgreSQL parameter: each sees the plain string."""
    value = str(member.value)
    assert json.dumps({member: [member]}) == json.dumps({value: [value]})
    assert (f"{member}_x", str(member), "%s" % member) == (f"{value}_x", value, value)  # noqa: UP031
    fields = {"event": member, "kind": member}
    plain = {"event": value, "kind": value}
    for render in (structlog.processors.JSONRenderer(), structlog.dev.ConsoleRenderer()):
        assert render(None, "info", dict(fields)) == render(None, "info", dict(plain))
    registry = CollectorRegistry()
    Counter("c", "c", ["label"], registry=registry).labels(member).inc()
    assert f'c_total{{label="{value}"}} 1.0' in generate_latest(registry).decode()
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE t (v TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (member,))
        stored = db.execute("SELECT v, typeof(v) FROM t WHERE v = ?", (value,)).fetchone()
        assert stored == (value, "text") and type(stored[0]) is str
    dumpers = Transformer()
    for form in (PyFormat.TEXT, PyFormat.BINARY):
        dumper = dumpers.get_dumper(member, form)
        plain_dumper = dumpers.get_dumper(value, form)
        assert (type(dumper), dumper.oid) == (type(plain_dumper), plain_dumper.oid)
        assert bytes(dumper.dump(member) or b"") == bytes(plain_dumper.dump(value) or b"")
