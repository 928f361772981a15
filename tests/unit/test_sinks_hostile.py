"""Sinks against hostile endpoints and hooks: the webhook follows only 307/308 (same method
and body, bounded), the exec sink's hook counts by its own exit within its timeout."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.config.model import SinkConfig
from forge_syncd.events.dispatcher import SinkWorker
from forge_syncd.events.sinks.command import STDERR_KEPT, CommandTimedOut, ExecSink, run_command
from forge_syncd.events.sinks.webhook import MAX_REDIRECTS
from forge_syncd.library.manifest import Manifest
from tests.support.daemon import read_log, wait_until

EVENT = {"type": "file_synced", "container": "forge-a", "path": "day/a.png", "size": 5}


@dataclass
class Received:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Endpoint:
    """A real HTTP server on 127.0.0.1: `routes` maps a path to (status, Location); any
    other path answers 204. Every request is recorded."""

    server: http.server.ThreadingHTTPServer
    routes: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state: dict[str, Endpoint] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            site = state["site"]
            site.received.append(Received(self.command, self.path, body, dict(self.headers)))
            status, location = site.routes.get(self.path, (204, None))
            self.send_response(status)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_HEAD = _answer

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["site"] = Endpoint(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["site"]
    server.shutdown()
    server.server_close()


def worker_with_one_event(tmp_path: Path, config: SinkConfig) -> tuple[SinkWorker, Manifest]:
    """Return a sink worker (not started) over a fresh manifest holding one event."""
    manifest = Manifest.open(tmp_path / "state")
    run = manifest.runs.start("forge-a", "sync")
    manifest.runs.finish(run.run_id, "success", 1, 5, None, [dict(EVENT)])
    return SinkWorker(config, manifest), manifest


def webhook(url: str) -> SinkConfig:
    return SinkConfig("web", "webhook", {"url": url, "timeout_s": 10.0})


def delivery_errors(tmp_path: Path) -> list[str]:
    return [
        r["error"] for r in read_log(tmp_path / "log.jsonl") if r["event"] == "sink_delivery_failed"
    ]


@pytest.mark.parametrize("status", [301, 302, 303])
def test_webhook_301_302_303_are_failed_deliveries_not_body_less_gets(
    endpoint: Endpoint, tmp_path: Path, status: int
) -> None:
    """A 301/302/303 used to be followed as a body-less GET that counted as delivered: the
    redirect is not followed, the event stays pending, and the error names the status and
    the Location."""
    endpoint.routes["/hook"] = (status, "/elsewhere")
    worker, manifest = worker_with_one_event(tmp_path, webhook(endpoint.url("/hook")))
    try:
        assert worker.deliver_pending() is False
        assert manifest.outbox.pending("web") == 1
    finally:
        manifest.close()
    assert [(r.method, r.path) for r in endpoint.received] == [("POST", "/hook")]
    (error,) = delivery_errors(tmp_path)
    assert f"answered {status} redirect to '/elsewhere'" in error
    assert "not followed" in error


@pytest.mark.parametrize("status", [307, 308])
def test_webhook_307_and_308_repost_the_same_body_to_the_new_location(
    endpoint: Endpoint, tmp_path: Path, status: int
) -> None:
    """A 307/308 is followed with the same method, body and headers (absolute or relative
    Location), and the 2xx at the new location counts as delivered."""
    endpoint.routes["/old"] = (status, "/middle")
    endpoint.routes["/middle"] = (status, endpoint.url("/new"))
    worker, manifest = worker_with_one_event(tmp_path, webhook(endpoint.url("/old")))
    try:
        assert worker.deliver_pending() is False  # not a full batch: all delivered
        assert manifest.outbox.pending("web") == 0
    finally:
        manifest.close()
    assert [(r.method, r.path) for r in endpoint.received] == [
        ("POST", "/old"),
        ("POST", "/middle"),
        ("POST", "/new"),
    ]
    first, last = endpoint.received[0], endpoint.received[-1]
    assert last.body == first.body and json.loads(last.body)["path"] == "day/a.png"
    for header in ("Content-Type", "Idempotency-Key"):
        assert last.headers[header] == first.headers[header]
    assert delivery_errors(tmp_path) == []


def test_webhook_redirect_loop_fails_after_a_bounded_number_of_hops(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    """A 307 that points at itself ends as a failed delivery after MAX_REDIRECTS hops."""
    endpoint.routes["/loop"] = (307, "/loop")
    worker, manifest = worker_with_one_event(tmp_path, webhook(endpoint.url("/loop")))
    try:
        assert worker.deliver_pending() is False
        assert manifest.outbox.pending("web") == 1
    finally:
        manifest.close()
    assert len(endpoint.received) == MAX_REDIRECTS + 1
    (error,) = delivery_errors(tmp_path)
    assert f"more than {MAX_REDIRECTS} redirects" in error


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x", None])
def test_webhook_307_to_a_non_http_location_or_none_is_refused(
    endpoint: Endpoint, tmp_path: Path, location: str | None
) -> None:
    """A 307 to a file:// or ftp:// location, or without a Location, is a failed delivery
    that names it; nothing else is fetched."""
    endpoint.routes["/hook"] = (307, location)
    worker, manifest = worker_with_one_event(tmp_path, webhook(endpoint.url("/hook")))
    try:
        assert worker.deliver_pending() is False
        assert manifest.outbox.pending("web") == 1
    finally:
        manifest.close()
    assert len(endpoint.received) == 1
    (error,) = delivery_errors(tmp_path)
    assert ("not http(s)" in error and location in error) if location else "Location" in error


def process_state(pid: int) -> str | None:
    """Return the state letter of process `pid` (None once it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def gone(pid: int) -> bool:
    return process_state(pid) in (None, "Z", "X")


def test_exec_hook_leaving_a_background_child_on_its_output_counts_as_delivered(
    tmp_path: Path,
) -> None:
    """A hook that reads the event, starts a background child holding its stdout and stderr,
    and exits 0 used to time out and be re-run forever: it runs once and the event is
    delivered (waiting for the child's end of the pipes would hit the hook's 30 s timeout
    first, a failed delivery), and the child is left alone."""
    hook = (
        f"cat > {tmp_path}/got.json; echo run >> {tmp_path}/runs; "
        f"sleep 120 & echo $! > {tmp_path}/child.pid; exit 0"
    )
    config = SinkConfig("hook", "exec", {"command": ["sh", "-c", hook], "timeout_s": 30.0})
    worker, manifest = worker_with_one_event(tmp_path, config)
    try:
        worker.deliver_pending()
        assert manifest.outbox.pending("hook") == 0
    finally:
        manifest.close()
    child = int((tmp_path / "child.pid").read_text())
    try:
        assert (tmp_path / "runs").read_text() == "run\n"
        assert json.loads((tmp_path / "got.json").read_text())["path"] == "day/a.png"
        assert not gone(child)
    finally:
        os.kill(child, 9)
    assert delivery_errors(tmp_path) == []


def test_exec_hook_past_its_timeout_is_killed_with_its_process_group(tmp_path: Path) -> None:
    """A hook still running at its timeout is killed together with the children it started
    (its process group); the delivery fails with a message that says so."""
    hook = f"sleep 120 & echo $! > {tmp_path}/child.pid; sleep 120"
    sink = ExecSink("hook", {"command": ["sh", "-c", hook], "timeout_s": 1.0})
    with pytest.raises(CommandTimedOut, match="still running after 1 s: killed"):
        sink.deliver(dict(EVENT))
    child = int((tmp_path / "child.pid").read_text())
    wait_until(lambda: gone(child), timeout=10, what="the hook's child to be killed")


def test_exec_hook_stderr_capture_is_bounded(tmp_path: Path) -> None:
    """A hook that writes 20 MiB to stderr: only the last STDERR_KEPT bytes are kept, and a
    failing hook's error message carries a short tail of them."""
    flood = "head -c 20971520 /dev/zero | tr '\\0' x >&2; printf END >&2; exit 3"
    code, stderr = run_command(["sh", "-c", flood], b"{}", timeout_s=60)
    assert code == 3
    assert len(stderr) == STDERR_KEPT and stderr.endswith(b"xxxEND")
    sink = ExecSink("hook", {"command": ["sh", "-c", flood], "timeout_s": 60.0})
    with pytest.raises(Exception, match=r"exited 3: x+END$") as failed:
        sink.deliver(dict(EVENT))
    assert len(str(failed.value)) < 400


def test_exec_hook_that_never_reads_a_large_event_does_not_hang(tmp_path: Path) -> None:
    """A hook that ignores stdin gets a 4 MiB event without the sink blocking on the pipe:
    exit 0 is a delivery; one that ignores it and sleeps is killed at its timeout."""
    event = {**EVENT, "blob": "y" * (4 * 1024 * 1024)}
    ExecSink("hook", {"command": ["true"], "timeout_s": 30.0}).deliver(event)
    sleeper = ExecSink("hook", {"command": ["sleep", "120"], "timeout_s": 1.0})
    with pytest.raises(CommandTimedOut):
        sleeper.deliver(event)
