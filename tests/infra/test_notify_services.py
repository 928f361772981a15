"""The fake notification services (tests/support/notify_services.py) answer real HTTP as the
services document: ntfy, Discord webhooks, the Telegram Bot API and Gotify, with their error
and rate-limit shapes, injected failures and a service that is down."""

from __future__ import annotations

import html
import http.client
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.notify_services import (
    DiscordFake,
    FakeService,
    GotifyFake,
    NtfyFake,
    TelegramFake,
)
from tests.support.telegram_markup import MARKDOWN_V2_RESERVED, MarkupError, render

HOSTILE = "cat_01*[x](y)~`>#+-=|{}.!\\ <script>alert(1)</script> & @everyone <@123>.png"


def call(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
) -> tuple[int, dict[str, str], Any]:
    """Send one request; return (status, headers, body parsed as JSON when it is)."""
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status, reply_headers, data = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, reply_headers, data = exc.code, dict(exc.headers), exc.read()
    try:
        return status, reply_headers, json.loads(data) if data else None
    except ValueError:
        return status, reply_headers, data


def multipart(
    fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]
) -> tuple[bytes, str]:
    """Return (body, content type) of a multipart/form-data request."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{value}\r\n".encode()
        )
    for name, (filename, data, kind) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def ntfy() -> Iterator[NtfyFake]:
    with NtfyFake(token="tk_test", max_attachment=100_000) as fake:
        yield fake  # type: ignore[misc]


def test_ntfy_publishes_with_headers_attachments_and_json(ntfy: NtfyFake) -> None:
    """ntfy: a POST with Title (RFC 2047), Priority, Tags and Click headers and a Bearer token
    is a message with those fields; a PUT with Filename and X-Message is an attachment; a JSON
    body to / names its topic; a body over 4,096 bytes becomes an attachment."""
    auth = {"Authorization": "Bearer tk_test"}
    status, _, reply = call(
        "POST",
        f"{ntfy.url}/forge-alerts",
        b"comfy-1: 12 new images",
        {
            **auth,
            "Title": "=?UTF-8?B?8J+OqCBsYW5kZWQ=?=",
            "Priority": "high",
            "Tags": "art, frame",
            "Click": "http://g/1",
        },
    )
    assert status == 200
    assert reply["topic"] == "forge-alerts" and reply["event"] == "message"
    assert (reply["title"], reply["priority"], reply["tags"]) == ("🎨 landed", 4, ["art", "frame"])
    assert reply["message"] == "comfy-1: 12 new images" and reply["click"] == "http://g/1"
    png = b"\x89PNG\r\n\x1a\n" + bytes(2000)
    status, _, reply = call(
        "PUT",
        f"{ntfy.url}/forge-alerts",
        png,
        {**auth, "Filename": "a.png", "X-Message": "first image"},
    )
    assert status == 200 and reply["attachment"] == {
        "name": "a.png",
        "size": len(png),
        "url": reply["attachment"]["url"],
    }
    assert reply["message"] == "first image" and ntfy.messages[-1]["attachment_bytes"] == png
    status, _, reply = call(
        "POST",
        f"{ntfy.url}/",
        headers=auth,
        json_body={"topic": "t2", "message": "hi", "tags": ["a"], "priority": 5},
    )
    assert status == 200 and (reply["topic"], reply["tags"], reply["priority"]) == ("t2", ["a"], 5)
    status, _, reply = call("POST", f"{ntfy.url}/big", b"x" * 5000, auth)
    assert status == 200 and reply["attachment"]["size"] == 5000
    assert [m["topic"] for m in ntfy.messages] == ["forge-alerts", "forge-alerts", "t2", "big"]


def test_ntfy_refuses_like_ntfy(ntfy: NtfyFake) -> None:
    """ntfy: no token is 403 (40301), a wrong one 401 (40101), a bad priority 400 (40007), a
    bad topic 400, an attachment over the limit 413 (41301); each a JSON error."""
    url = f"{ntfy.url}/forge-alerts"
    assert call("POST", url, b"x")[2]["code"] == 40301
    assert call("POST", url, b"x", {"Authorization": "Bearer nope"})[2]["code"] == 40101
    auth = {"Authorization": "Bearer tk_test"}
    status, _, reply = call("POST", url, b"x", {**auth, "Priority": "9"})
    assert (status, reply["code"], reply["http"]) == (400, 40007, 400)
    assert call("POST", f"{ntfy.url}/bad%20topic!", b"x", auth)[0] == 400
    status, _, reply = call("PUT", url, bytes(200_000), {**auth, "Filename": "big.png"})
    assert (status, reply["code"]) == (413, 41301)
    assert ntfy.messages == []


@pytest.fixture
def discord() -> Iterator[DiscordFake]:
    with DiscordFake(max_upload=50_000) as fake:
        yield fake  # type: ignore[misc]


def test_discord_webhook_json_multipart_wait_and_mentions(discord: DiscordFake) -> None:
    """Discord: a JSON execute answers 204 (the message object with ?wait=true); mentions
    ping unless allowed_mentions forbids them; a multipart body with payload_json and
    files[0] carries the file."""
    status, _, reply = call(
        "POST", discord.webhook_url, json_body={"content": "hi @everyone <@123>"}
    )
    assert (status, reply) == (204, None)
    assert discord.pings[-1] == ["@everyone", "<@123>"]
    status, _, reply = call(
        "POST",
        discord.webhook_url + "?wait=true",
        json_body={
            "content": HOSTILE,
            "allowed_mentions": {"parse": []},
            "embeds": [{"title": "t"}],
        },
    )
    assert status == 200 and reply["content"] == HOSTILE and reply["id"]
    assert discord.pings[-1] == []
    body, kind = multipart(
        {
            "payload_json": json.dumps(
                {"content": "with a file", "attachments": [{"id": 0, "filename": "a.png"}]}
            )
        },
        {"files[0]": ("a.png", b"\x89PNG" + bytes(100), "image/png")},
    )
    status, _, reply = call(
        "POST", discord.webhook_url + "?wait=true", body, {"Content-Type": kind}
    )
    assert status == 200 and reply["attachments"] == [{"id": "0", "filename": "a.png", "size": 104}]
    assert discord.messages[-1]["files"]["files[0]"].data == b"\x89PNG" + bytes(100)


def test_discord_refuses_like_discord(discord: DiscordFake) -> None:
    """Discord: an empty message is 400/50006, content over 2000 characters 400/50035 with
    the field named, a wrong token 401/50027, an unknown webhook 404/10015, uploads over the
    limit 413/40005."""
    assert call("POST", discord.webhook_url, json_body={})[2]["code"] == 50006
    status, _, reply = call("POST", discord.webhook_url, json_body={"content": "x" * 2001})
    assert (status, reply["code"]) == (400, 50035) and "content" in reply["errors"]
    assert call("POST", discord.webhook_url + "x", json_body={"content": "x"})[2]["code"] == 50027
    assert (
        call("POST", f"{discord.url}/api/webhooks/1/{discord.token}", json_body={"content": "x"})[
            2
        ]["code"]
        == 10015
    )
    body, kind = multipart(
        {"payload_json": "{}"}, {"files[0]": ("a.png", bytes(60_000), "image/png")}
    )
    assert call("POST", discord.webhook_url, body, {"Content-Type": kind})[2]["code"] == 40005
    assert discord.messages == []


@pytest.fixture
def telegram() -> Iterator[TelegramFake]:
    with TelegramFake() as fake:
        yield fake  # type: ignore[misc]


def escape_markdown_v2(text: str) -> str:
    return "".join("\\" + c if c in MARKDOWN_V2_RESERVED or c == "\\" else c for c in text)


def test_telegram_renders_escaped_markup_and_refuses_raw_markup(telegram: TelegramFake) -> None:
    """Telegram: a hostile file name escaped for MarkdownV2 or HTML shows as itself; left
    raw it is refused with "can't parse entities"; a photo goes as multipart with a caption."""
    api = telegram.api_url
    chat = 424242
    for mode, text in (
        ("MarkdownV2", escape_markdown_v2(HOSTILE)),
        ("HTML", html.escape(HOSTILE, quote=False)),
    ):
        status, _, reply = call(
            "POST",
            f"{api}/sendMessage",
            json_body={"chat_id": chat, "text": f"{text}", "parse_mode": mode},
        )
        assert status == 200 and reply["ok"] is True and reply["result"]["text"] == HOSTILE
        status, _, reply = call(
            "POST",
            f"{api}/sendMessage",
            json_body={"chat_id": chat, "text": HOSTILE, "parse_mode": mode},
        )
        assert (status, reply["ok"]) == (400, False)
        assert reply["description"].startswith("Bad Request: can't parse entities:")
    status, _, reply = call(
        "POST", f"{api}/sendMessage", json_body={"chat_id": chat, "text": "*bold* done\\."}
    )
    assert reply["result"]["text"] == "*bold* done\\."  # no parse_mode: as is
    body, kind = multipart(
        {"chat_id": str(chat), "caption": "<b>comfy-1</b>: 12 images", "parse_mode": "HTML"},
        {"photo": ("a.png", b"\x89PNG" + bytes(50), "image/png")},
    )
    status, _, reply = call("POST", f"{api}/sendPhoto", body, {"Content-Type": kind})
    assert status == 200 and reply["result"]["caption"] == "comfy-1: 12 images"
    assert telegram.messages[-1]["upload"].data == b"\x89PNG" + bytes(50)


def test_telegram_refuses_like_telegram(telegram: TelegramFake) -> None:
    """Telegram: a wrong token is 401 "Unauthorized", an unknown chat 400 "chat not found",
    an empty or too long text 400, an unknown method 404; all `ok: false` JSON."""
    api = telegram.api_url
    assert call(
        "POST", f"{telegram.url}/bot1:x/sendMessage", json_body={"chat_id": 1, "text": "x"}
    )[2] == {
        "ok": False,
        "error_code": 401,
        "description": "Unauthorized",
    }
    assert (
        call("GET", f"{api}/sendMessage?chat_id=5&text=x")[2]["description"]
        == "Bad Request: chat not found"
    )
    assert call("POST", f"{api}/sendMessage", json_body={"chat_id": 424242, "text": ""})[0] == 400
    assert (
        call("POST", f"{api}/sendMessage", json_body={"chat_id": 424242, "text": "x" * 4097})[2][
            "description"
        ]
        == "Bad Request: message is too long"
    )
    assert call("POST", f"{api}/sendSticker", json_body={"chat_id": 424242})[0] == 404
    assert call("GET", f"{api}/getMe")[2]["result"]["is_bot"] is True


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
        max_size=80,
    )
)
def test_any_text_escaped_renders_as_itself(text: str) -> None:
    """For any text, MarkdownV2 escaping of every reserved character and HTML escaping of <,
    > and & render back to the text: the checker accepts what Telegram accepts."""
    assert render(escape_markdown_v2(text), "MarkdownV2") == text
    assert render(html.escape(text, quote=False), "HTML") == text


def test_markup_checker_knows_the_entities() -> None:
    """Well-formed MarkdownV2 and HTML entities render to their text; an unclosed entity or an
    unsupported tag is refused."""
    assert (
        render("*bold* _it_ __u__ ~s~ ||sp|| `co\\`de` [link](http://x/\\))", "MarkdownV2")
        == "bold it u s sp co`de link"
    )
    assert render('<b>b</b> <a href="http://x">l</a> &lt;&amp;&#62;', "HTML") == "b l <&>"
    for text, mode in (
        ("*open", "MarkdownV2"),
        ("<b>open", "HTML"),
        ("<img src=x>", "HTML"),
        ("a & b", "HTML"),
    ):
        with pytest.raises(MarkupError):
            render(text, mode)


@pytest.fixture
def gotify() -> Iterator[GotifyFake]:
    with GotifyFake(default_priority=4) as fake:
        yield fake  # type: ignore[misc]


def test_gotify_takes_json_and_forms_and_refuses_like_gotify(gotify: GotifyFake) -> None:
    """Gotify: JSON with X-Gotify-Key (extras kept) and a form with ?token= are messages (the
    app's default priority when absent); no or a wrong token is 401 and a missing message
    400, in Gotify's error shape."""
    key = {"X-Gotify-Key": gotify.app_token}
    extras = {"client::display": {"contentType": "text/markdown"}}
    status, _, reply = call(
        "POST",
        f"{gotify.url}/message",
        headers=key,
        json_body={"title": "t", "message": "m", "priority": 8, "extras": extras},
    )
    assert status == 200 and (reply["title"], reply["priority"], reply["extras"]) == (
        "t",
        8,
        extras,
    )
    status, _, reply = call(
        "POST",
        f"{gotify.url}/message?token={gotify.app_token}",
        b"message=hello+world&title=x",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200 and (reply["message"], reply["priority"]) == ("hello world", 4)
    status, _, reply = call("POST", f"{gotify.url}/message", json_body={"message": "m"})
    assert (status, reply["error"], reply["errorCode"]) == (401, "Unauthorized", 401)
    assert call("POST", f"{gotify.url}/message?token=bad", json_body={"message": "m"})[0] == 401
    assert (
        call("POST", f"{gotify.url}/message", headers=key, json_body={"title": "no message"})[0]
        == 400
    )
    assert [m["message"] for m in gotify.messages] == ["m", "hello world"]


def deliver(fake: FakeService) -> tuple[int, dict[str, str], Any]:
    """Send one valid message to `fake`; return the answer."""
    if isinstance(fake, NtfyFake):
        return call("POST", f"{fake.url}/t", b"hi")
    if isinstance(fake, DiscordFake):
        return call("POST", fake.webhook_url, json_body={"content": "hi"})
    if isinstance(fake, TelegramFake):
        return call(
            "POST", f"{fake.api_url}/sendMessage", json_body={"chat_id": 424242, "text": "hi"}
        )
    assert isinstance(fake, GotifyFake)
    return call(
        "POST",
        f"{fake.url}/message",
        headers={"X-Gotify-Key": fake.app_token},
        json_body={"message": "hi"},
    )


RETRY_AFTER = {
    "ntfy": lambda headers, body: (body["code"], headers.get("Retry-After")) == (42901, "3"),
    "discord": lambda headers, body: (
        (body["retry_after"], headers["Retry-After"], headers["X-RateLimit-Remaining"])
        == (2.6, "3", "0")
    ),
    "telegram": lambda headers, body: (
        body["parameters"]["retry_after"] == 3
        and body["description"] == "Too Many Requests: retry after 3"
    ),
    "gotify": lambda headers, body: body["errorCode"] == 429,
}


@pytest.mark.parametrize(
    "kind", [NtfyFake, DiscordFake, TelegramFake, GotifyFake], ids=lambda k: k.name
)
def test_injected_failures_then_delivery(kind: type[FakeService]) -> None:
    """Each fake answers injected 429s in its service's form (retry-after where the service
    gives one), then a 500, then drops a connection, refuses connections while down, and
    delivers again on the same port once up; every request is recorded."""
    with kind() as fake:
        fake.fail_next(2, 429, retry_after=2.6)
        fake.fail_next(1, 500)
        fake.fail_next(1, 0)
        for _ in range(2):
            status, headers, body = deliver(fake)
            assert status == 429 and RETRY_AFTER[fake.name](headers, body)
        assert deliver(fake)[0] == 500
        with pytest.raises(
            (http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)
        ):
            deliver(fake)
        assert fake.messages == []
        port = fake.port
        fake.go_down()
        with pytest.raises(urllib.error.URLError):
            deliver(fake)
        fake.come_up()
        assert fake.port == port
        assert deliver(fake)[0] in (200, 204)
        assert len(fake.messages) == 1
        assert [r.status for r in fake.wait_for(5)] == [429, 429, 500, 0, fake.requests[-1].status]
