"""The pure side of notifications: markup escaping for each service (hostile names shown as
text), ntfy header values, failing/recovered transitions, at-risk events on changes only."""

from __future__ import annotations

import html
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from forge_syncd.config.model import SinkConfig
from forge_syncd.events.at_risk import AtRiskWatch, threshold_s
from forge_syncd.events.sinks.notify import digest
from forge_syncd.events.sinks.notify.render import (
    Notice,
    clean,
    discord_escape,
    header_value,
    telegram_html,
)
from forge_syncd.library.manifest import Manifest
from tests.support.notify_services.base import _decode_header
from tests.support.telegram_markup import render

NAMES = st.text(alphabet=st.characters(codec="utf-8"), max_size=200)


@settings(max_examples=300, deadline=None)
@given(NAMES)
def test_telegram_html_shows_any_name_as_its_text(name: str) -> None:
    """Any name, once cleaned, is valid Telegram HTML (the strict checker accepts it) and
    reads back as exactly the cleaned name."""
    shown = clean(name)
    notice = Notice("landed", "k", "box", "1 new image", (f"first: {shown}",))
    assert render(telegram_html(notice), "HTML") == f"box: 1 new image\nfirst: {shown}"


@settings(max_examples=300, deadline=None)
@given(NAMES)
def test_discord_escape_leaves_no_markdown_or_mention(name: str) -> None:
    """Every Discord markdown character of a name is backslash-escaped, so no formatting,
    link or mention can start from it; removing the escapes gives the name back."""
    escaped = discord_escape(clean(name))
    index = 0
    while index < len(escaped):
        char = escaped[index]
        if char == "\\":
            index += 2
            continue
        assert char not in "*_~`|<>[]()#@"
        index += 1
    assert "://" not in escaped


@settings(max_examples=300, deadline=None)
@given(NAMES)
def test_ntfy_header_values_are_printable_ascii_and_decode_back(name: str) -> None:
    """A header value is printable ASCII (no CR, LF or other control byte: a name cannot end
    the header or add one) and decodes (RFC 2047) to the text it was made from."""
    value = header_value(name)
    assert all(0x20 <= ord(c) < 0x7F for c in value)
    assert _decode_header(value) == name[:1024]


def test_health_step_says_failing_and_recovered_once() -> None:
    """Failures count up; "failing" is said when they reach the threshold, once; a success
    after it is "recovered", once; a cancelled run changes nothing."""
    state: tuple[int, str | None] = (0, None)
    said = []
    for result in ["failure", "failure", "failure", "cancelled", "failure", "success", "success"]:
        failures, since, change = digest.health_step(*state, result, "2025-01-01T00:00:00Z", 2)
        state = (failures, since)
        said.append(change)
    assert said == [None, "failing", None, None, None, "recovered", None]


def test_landed_text_reads_like_the_issue() -> None:
    """One container's run: "12 new images, 31.0 MiB, 4 min of output"."""
    totals = digest.new_run()
    for n in range(12):
        event = {
            "path": f"a/{n}.png",
            "size": 31 * 2**20 // 12 + (n < 4),
            "mtime": f"2025-01-01T00:0{n // 3}:00Z",
        }
        digest.add_file(totals, event, 0)
    notice = digest.landed_notice({"comfy-1": totals}, "k", None, None)
    assert notice.plain() == "comfy-1: 12 new images, 31.0 MiB, 3 min of output"


def test_at_risk_events_only_on_changes(tmp_path: Path) -> None:
    """The daemon records media_at_risk only when a container's state changes (and not
    before a sync succeeded), at the smallest threshold of the sinks that say at_risk."""
    sinks = (
        SinkConfig("a", "ntfy", {"at_risk_after_s": 3600.0}),
        SinkConfig("b", "gotify", {"at_risk_after_s": 600.0, "when": ("landed",)}),
        SinkConfig("c", "discord", {"at_risk_after_s": 900.0}),
        SinkConfig("d", "jsonl", {}),
    )
    assert threshold_s(sinks) == 900.0 and threshold_s(sinks[3:]) is None
    manifest = Manifest.open(tmp_path)
    try:
        watch = AtRiskWatch(manifest, 900.0)
        clear = {"files": 0, "bytes": 0, "oldest_s": None}
        young = {"files": 2, "bytes": 10, "oldest_s": 100.0}
        old = {"files": 2, "bytes": 10, "oldest_s": 901.0}
        watch.check("c1", old, known=False)
        for summary in (clear, young, clear, old, old, {**old, "oldest_s": 5000.0}, clear):
            watch.check("c1", summary, known=True)
        events = manifest.outbox.after(0)
    finally:
        manifest.close()
    assert [(e["type"], e["at_risk"], e["files"]) for e in events] == [
        ("media_at_risk", False, 0),
        ("media_at_risk", True, 2),
        ("media_at_risk", False, 0),
    ]


def test_drained_notice_with_html_in_the_error() -> None:
    """A drain's error (text from the container's side) is cleaned and, for Telegram,
    escaped."""
    notice = digest.drained_notice(
        {"container": "vast-7", "error": "verification failed: <b>no</b>\n"}, "k", None
    )
    assert notice.headline == "NOT safe to destroy: verification failed: <b>no</b>\\n"
    assert html.escape("<b>no</b>", quote=False) in telegram_html(notice)
