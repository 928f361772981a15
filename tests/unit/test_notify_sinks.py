"""Notification sinks against real HTTP servers on 127.0.0.1 that speak ntfy's, Discord's,
Telegram's and Gotify's documented APIs (tests/support/notify_services): the request each
service gets, what the messages say, once per state change, batching, 429s, secrets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from forge_syncd.config.model import SinkConfig
from forge_syncd.events.dispatcher import Dispatcher
from forge_syncd.events.sinks.notify.web import NotifyError, RetryLater
from forge_syncd.library.manifest import Manifest
from forge_syncd.service.metrics import StateCollector
from tests.support.notify_events import (
    NTFY_TOKEN,
    PNG,
    Events,
    make_sink,
    secrets_of,
    service_options,
)
from tests.support.notify_services import (
    DiscordFake,
    FakeService,
    GotifyFake,
    NtfyFake,
    TelegramFake,
)
from tests.support.notify_services.gotify import GOTIFY_TOKEN
from tests.support.notify_services.telegram import TELEGRAM_TOKEN
from tests.support.telegram_markup import render

KINDS = ("ntfy", "discord", "telegram", "gotify")
FAKES = {"ntfy": NtfyFake, "discord": DiscordFake, "telegram": TelegramFake, "gotify": GotifyFake}
GALLERY = "https://media.example/"


@pytest.fixture(params=KINDS)
def service(request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeService]]:
    kind = request.param
    fake = FakeService.start(NtfyFake(token=NTFY_TOKEN) if kind == "ntfy" else FAKES[kind]())
    yield kind, fake
    fake.stop()


def library(tmp_path: Path, count: int, first: str = "ComfyUI_00001_.png") -> list[Any]:
    """`count` landed files: the first a small PNG in the library, the rest 10 MiB each."""
    folder = tmp_path / "media" / "comfy-1"
    folder.mkdir(parents=True)
    local = folder / "first.png"
    local.write_bytes(PNG)
    files = [(first, local, len(PNG))]
    files += [(f"ComfyUI_{n:05d}_.png", folder / "none", 10 * 2**20) for n in range(2, count + 1)]
    return files


def deliver(sink: Any, events: list[dict[str, Any]]) -> None:
    for event in events:
        sink.deliver(event)


def text_seen(kind: str, fake: FakeService, index: int = -1) -> str:
    """What a reader of the service sees of message `index` (markup resolved)."""
    message = fake.messages[index]
    if kind == "ntfy":
        return f"{message.get('title', '')}: {message['message']}"
    if kind == "discord":
        return str(message["content"])
    if kind == "telegram":
        return str(message.get("text") or message.get("caption"))
    return f"{message['title']}: {message['message']}"


def test_each_service_receives_its_documented_request(
    service: tuple[str, FakeService], tmp_path: Path
) -> None:
    """A run that landed 12 images is one message, as each service's API wants it: ntfy a
    PUT of the image with Title, X-Message, X-Filename, X-Sequence-ID and a Bearer token;
    Discord a multipart POST (payload_json with no pings allowed, files[0]) with ?wait=true;
    Telegram sendPhoto with an HTML caption; Gotify a JSON POST to /message with the token
    in X-Gotify-Key (never in the URL). It says "12 new images, ..., 4 min of output" and
    links to the gallery."""
    kind, fake = service
    sink = make_sink(kind, fake, tmp_path, gallery_url=GALLERY)
    try:
        deliver(sink, Events().landed_run("comfy-1", "r1", library(tmp_path, 12)))
    finally:
        sink.close()
    assert len(fake.requests) == 1 and len(fake.messages) == 1
    request = fake.requests[0]
    seen = text_seen(kind, fake)
    assert "comfy-1" in seen and "12 new images, 110.0 MiB, 4 min of output" in seen
    if kind == "ntfy":
        assert (request.method, request.path) == ("PUT", "/forge")
        assert request.headers["authorization"] == f"Bearer {NTFY_TOKEN}"
        assert request.headers["x-filename"] == "ComfyUI_00001.png"
        assert request.headers["x-sequence-id"].startswith("fs-")
        assert fake.messages[0]["attachment_bytes"] == PNG
        assert fake.messages[0]["click"] == GALLERY and fake.messages[0]["title"] == "comfy-1"
    elif kind == "discord":
        assert request.path.endswith(f"/{fake.token}") and request.query == {"wait": "true"}
        payload = json.loads(request.form["payload_json"])
        assert payload["allowed_mentions"] == {"parse": []}
        assert request.files["files[0]"].data == PNG and GALLERY in seen
    elif kind == "telegram":
        assert request.path == f"/bot{TELEGRAM_TOKEN}/sendPhoto"
        assert request.form["parse_mode"] == "HTML" and request.form["chat_id"] == "424242"
        assert fake.messages[0]["upload"].data == PNG and GALLERY in seen
    else:
        assert (request.method, request.path, request.query) == ("POST", "/message", {})
        assert request.headers["x-gotify-key"] == GOTIFY_TOKEN
        assert request.json["extras"]["client::notification"] == {"click": {"url": GALLERY}}


def test_failing_once_and_recovered_once_not_per_retry(
    service: tuple[str, FakeService], tmp_path: Path
) -> None:
    """Six failed syncs in a row and the successful one after them are two messages: one
    when the container starts failing (at the second failure, `failing_after: 2`), one when
    it recovers; a single failed sync between successes says nothing."""
    kind, fake = service
    events = Events()
    sink = make_sink(kind, fake, tmp_path)
    try:
        deliver(sink, [events.sync_complete("comfy-1", "a", "success")])
        deliver(sink, [events.sync_complete("comfy-1", "b", "failure", error="timed out")])
        deliver(sink, [events.sync_complete("comfy-1", "c", "success")])
        for n in range(6):
            deliver(sink, [events.sync_complete("comfy-1", f"f{n}", "failure", error="refused")])
        deliver(sink, [events.sync_complete("comfy-1", "ok", "success")])
    finally:
        sink.close()
    seen = [text_seen(kind, fake, n) for n in range(len(fake.messages))]
    assert len(seen) == 2, seen
    assert "sync failing: 2 failed runs in a row" in seen[0] and "refused" in seen[0]
    assert "recovered: syncing again after 6 failed runs" in seen[1]


def test_min_interval_batches_runs_into_the_next_message(tmp_path: Path) -> None:
    """The first run that lands is said at once; runs landing within `min_interval` after
    it wait and become one message when the interval is over ("in 2 syncs"), whichever
    containers they came from."""
    now = [time.time()]
    events = Events()
    with NtfyFake(token=NTFY_TOKEN) as fake:
        sink = make_sink("ntfy", fake, tmp_path, clock=lambda: now[0], min_interval_s=60.0)
        try:
            deliver(sink, events.landed_run("comfy-1", "r1", library(tmp_path / "a", 2)))
            deliver(sink, events.landed_run("comfy-1", "r2", library(tmp_path / "b", 3)))
            deliver(sink, events.landed_run("forge-a", "r3", library(tmp_path / "c", 1)))
            assert len(fake.messages) == 1 and sink.pending() == 1
            now[0] += 61
            sink.flush()
        finally:
            sink.close()
    assert len(fake.messages) == 2
    second = fake.messages[1]
    assert second["title"] == "comfy-1, forge-a"
    assert second["message"].startswith("4 new images, 20.0 MiB")
    assert "comfy-1: 3 new images, 20.0 MiB\nforge-a: 1 new image" in second["message"]
    assert "in 2 syncs" in second["message"]


def test_429_retry_after_delays_only_that_sink(tmp_path: Path) -> None:
    """ntfy answers 429 with Retry-After: the Gotify sink beside it delivers at once; the
    ntfy sink does not call ntfy again before the wait is over (however often it is asked)
    and then delivers the same message, with the same key."""
    now = [time.time()]
    events = Events()
    with NtfyFake(token=NTFY_TOKEN) as ntfy, GotifyFake() as gotify:
        limited = make_sink("ntfy", ntfy, tmp_path / "n", clock=lambda: now[0])
        other = make_sink("gotify", gotify, tmp_path / "g")
        ntfy.fail_next(1, status=429, retry_after=120)
        run = events.landed_run("comfy-1", "r1", library(tmp_path, 2))
        try:
            for event in run:
                other.deliver(event)
            with pytest.raises(RetryLater) as raised:
                deliver(limited, run)
            assert raised.value.retry_after_s == pytest.approx(120, abs=1)
            for _ in range(5):  # the dispatcher and the ticker try again meanwhile
                with pytest.raises(RetryLater):
                    limited.deliver(run[-1])
            assert len(gotify.messages) == 1 and len(ntfy.requests) == 1
            now[0] += 121
            limited.deliver(run[-1])
        finally:
            limited.close()
            other.close()
    assert [r.status for r in ntfy.requests] == [429, 200]
    keys = {r.headers["x-sequence-id"] for r in ntfy.requests}
    assert len(keys) == 1 and len(ntfy.shown()) == 1
    assert limited.counts == {"rate_limited": 1, "sent": 1}


def test_secrets_never_in_logs_or_errors(service: tuple[str, FakeService], tmp_path: Path) -> None:
    """Whatever goes wrong — the service answers 500, refuses the token, is down — neither
    the log records nor the errors the sink raises hold the token or webhook URL."""
    kind, fake = service
    secrets = secrets_of(kind, fake)
    sink = make_sink(kind, fake, tmp_path)
    events = Events()
    texts: list[str] = []
    with capture_logs() as logs:
        try:
            fake.fail_next(50, status=500)
            run = events.landed_run("comfy-1", "r1", library(tmp_path, 2))
            with pytest.raises(NotifyError) as failed:
                deliver(sink, run)
            texts.append(str(failed.value))
            fake.go_down()
            with pytest.raises(NotifyError) as down:
                sink.deliver(run[-1])
            texts.append(str(down.value))
        finally:
            sink.close()
    assert "answered 500" in texts[0] and "did not answer" in texts[1], texts
    everything = json.dumps(logs, default=str) + "\n".join(texts)
    for secret in secrets:
        assert secret not in everything


HOSTILE = "evil\r\nX-Injected: 1\u202egnp.exe*_~`|<b>&amp;</b> @everyone <@123> [x](http://e)"


def test_hostile_names_are_escaped_for_each_markup(
    service: tuple[str, FakeService], tmp_path: Path
) -> None:
    """A remote file name with CR/LF, a bidi override, markdown, HTML and mentions is shown
    as text everywhere: ntfy headers carry no raw line break (no injected header) and read
    back the name; Discord escapes its markdown and pings nobody; Telegram's HTML parses and
    shows the name's characters; Gotify gets plain text."""
    kind, fake = service
    name = f"out/{HOSTILE}.png"
    sink = make_sink(kind, fake, tmp_path)
    try:
        deliver(sink, Events().landed_run("comfy-1", "r1", library(tmp_path, 2, first=name)))
    finally:
        sink.close()
    assert len(fake.messages) == 1
    shown_name = HOSTILE.replace("\r", "\\r").replace("\n", "\\n").replace("\u202e", "\\u202e")
    request = fake.requests[0]
    assert "x-injected" not in request.headers
    if kind == "ntfy":
        # Our own line breaks travel encoded (RFC 2047); the name's are escapes on its line.
        lines = request.headers["x-message"].split("\n")
        assert f"first: out/{shown_name}.png" in lines
    elif kind == "discord":
        content = fake.messages[0]["content"]
        assert fake.pings == [[]]
        assert "\\*\\_\\~\\`\\|\\<b\\>" in content and "\\@everyone" in content
        unescaped = content.replace(":\\/\\/", "://")
        for char in "\\*_~`|<>[]()#@":
            unescaped = unescaped.replace("\\" + char, char)
        assert shown_name in unescaped
    elif kind == "telegram":
        assert request.form["parse_mode"] == "HTML"
        assert shown_name in render(request.form["caption"], "HTML")
    else:
        assert request.json["extras"]["client::display"] == {"contentType": "text/plain"}


def test_at_risk_said_once_per_crossing(tmp_path: Path) -> None:
    """`media_at_risk` events: the first past the sink's threshold is a message; repeats say
    nothing; a clear state and a new crossing is a new message; an event under the sink's
    own threshold schedules the message for when the media gets that old."""
    now = [time.time()]
    events = Events(lambda: now[0])
    with TelegramFake() as fake:
        sink = make_sink("telegram", fake, tmp_path, clock=lambda: now[0], at_risk_after_s=3600)

        def at_risk(flag: bool, oldest: float) -> dict[str, Any]:
            return events.base(
                "media_at_risk", "vast-7", at_risk=flag, files=3, bytes=3 << 20, oldest_s=oldest
            )

        try:
            deliver(sink, [at_risk(True, 4000), at_risk(True, 4100)])
            deliver(sink, [at_risk(False, 0), at_risk(True, 1800)])
            assert len(fake.messages) == 1 and sink.pending() == 1
            now[0] += 1801
            sink.flush()
            deliver(sink, [at_risk(False, 0), at_risk(True, 1800), at_risk(False, 0)])
            now[0] += 3600
            sink.flush()
        finally:
            sink.close()
    texts = [m["text"] for m in fake.messages]
    assert len(texts) == 2
    assert texts[0] == (
        "vast-7: 3 files, 3.0 MiB only on the container, the oldest 1 h old\n"
        "not yet copied: if the container goes, they go with it"
    )


def test_drained_says_the_verdict(tmp_path: Path) -> None:
    """A drain's `drain_complete` is one message with its verdict: safe to destroy with the
    files verified, or not safe with how many files are not."""
    events = Events()
    with GotifyFake() as fake:
        sink = make_sink("gotify", fake, tmp_path)
        try:
            safe = {"safe": True, "files": 120, "bytes": 3 << 30, "unsafe_count": 0, "error": None}
            deliver(sink, [events.base("drain_complete", "vast-7", **safe)])
            unsafe = {**safe, "safe": False, "unsafe_count": 2}
            deliver(sink, [events.base("drain_complete", "vast-8", **unsafe)])
        finally:
            sink.close()
    assert [(m["title"], m["message"]) for m in fake.messages] == [
        ("vast-7", "safe to destroy: 120 files, 3.00 GiB verified"),
        ("vast-8", "NOT safe to destroy: 2 files not safe; 120 files, 3.00 GiB verified"),
    ]


def test_when_selects_the_messages(tmp_path: Path) -> None:
    """`when: [drained]` says a drain's verdict and nothing of landed files or failures."""
    events = Events()
    with NtfyFake(token=NTFY_TOKEN) as fake:
        sink = make_sink("ntfy", fake, tmp_path, when=("drained",))
        try:
            deliver(sink, events.landed_run("comfy-1", "r1", library(tmp_path, 2)))
            for n in range(3):
                deliver(sink, [events.sync_complete("comfy-1", f"f{n}", "failure")])
            drained = {"safe": True, "files": 1, "bytes": 1, "unsafe_count": 0, "error": None}
            deliver(sink, [events.base("drain_complete", "comfy-1", **drained)])
        finally:
            sink.close()
    assert [m["tags"] for m in fake.messages] == [["checkered_flag"]]


def test_dispatcher_holds_a_rate_limited_sink_and_counts_messages(tmp_path: Path) -> None:
    """Through the daemon's dispatcher and outbox: ntfy answers 429 with a 1 h Retry-After;
    Gotify's message goes at once; the ntfy worker's next attempt is not before the hour is
    over (one request so far); forge_sync_notifications_total counts both outcomes."""
    manifest = Manifest.open(tmp_path / "state")
    registry = CollectorRegistry()
    with NtfyFake(token=NTFY_TOKEN) as ntfy, GotifyFake() as gotify:
        sinks = (
            SinkConfig("phone", "ntfy", service_options("ntfy", ntfy, tmp_path)),
            SinkConfig("push", "gotify", service_options("gotify", gotify, tmp_path)),
        )
        ntfy.fail_next(1, status=429, retry_after=3600)
        dispatcher = Dispatcher(sinks, manifest)
        registry.register(StateCollector(list, dispatcher.pending, dispatcher.notifications))
        dispatcher.start()
        try:
            manifest.outbox.record(Events().landed_run("comfy-1", "r1", library(tmp_path, 2)))
            gotify.wait_for(1)
            ntfy.wait_for(1)
            phone = dispatcher.workers[0]
            deadline = time.monotonic() + 30
            while phone.backoff.retry_at is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert phone.backoff.retry_at is not None
            assert phone.backoff.retry_at - time.monotonic() > 3000

            def count(sink: str, result: str) -> float | None:
                labels = {"sink": sink, "result": result}
                return registry.get_sample_value("forge_sync_notifications_total", labels)

            def settled() -> tuple[object, ...]:
                return (
                    len(ntfy.requests),
                    dispatcher.pending()["phone"],
                    count("phone", "rate_limited"),
                    count("phone", "sent"),
                    count("push", "sent"),
                    count("push", "failed"),
                )

            # The counters and the cursor move just after the HTTP answers: wait for them
            # (a busy machine), then check that nothing more happened.
            expected = (1, 1, 1.0, 0.0, 1.0, 0.0)
            while settled() != expected and time.monotonic() < deadline:
                time.sleep(0.05)
            assert settled() == expected
        finally:
            dispatcher.close()
            manifest.close()


def test_messages_kept_across_a_restart_go_without_a_new_event(tmp_path: Path) -> None:
    """A message not delivered before the daemon stopped (ntfy down) goes out after the
    restart even when no new event comes: the dispatcher builds notification sinks at once,
    and their ticker sends what their state kept."""
    events = Events()
    with NtfyFake(token=NTFY_TOKEN) as ntfy:
        ntfy.go_down()
        sink = make_sink("ntfy", ntfy, tmp_path)
        try:
            with pytest.raises(NotifyError):
                deliver(sink, events.landed_run("comfy-1", "r1", library(tmp_path, 2)))
        finally:
            sink.close()
        ntfy.come_up()
        manifest = Manifest.open(tmp_path / "state")  # the sink's state_dir: no events in it
        options = service_options("ntfy", ntfy, tmp_path)
        dispatcher = Dispatcher((SinkConfig("ntfy", "ntfy", options),), manifest).start()
        try:
            ntfy.wait_for(1)
        finally:
            dispatcher.close()
            manifest.close()
    assert [m["message"].split("\n")[0] for m in ntfy.messages] == [
        "2 new images, 10.0 MiB, 4 min of output"
    ]
