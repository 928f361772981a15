"""Control requests while the daemon starts: its socket listens before the containers are
added (the socket is what keeps a second daemon off the same state), so a request that
comes meanwhile waits for them instead of answering `not_found` for a configured container
(a full CI run saw `forge-syncctl sync flappy` answered `no container 'flappy'`)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

import forge_syncd.service.api
from forge_syncd.control.protocol import INTERNAL, Request, RequestError
from forge_syncd.service.api import ControlApi


def test_a_request_during_start_up_waits_until_the_containers_are_added() -> None:
    daemon = SimpleNamespace(started=threading.Event(), runners={})
    api = ControlApi(daemon)  # type: ignore[arg-type]
    answers: list[Any] = []
    caller = threading.Thread(
        target=lambda: answers.append(api(Request(1, "hello", {}))), daemon=True
    )
    caller.start()
    time.sleep(0.3)
    assert caller.is_alive() and answers == []
    daemon.started.set()
    caller.join(10)
    assert answers and answers[0]["protocol"]


def test_a_start_up_that_never_ends_gets_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forge_syncd.service.api, "STARTING_WAIT_S", 0.1)
    api = ControlApi(SimpleNamespace(started=threading.Event(), runners={}))  # type: ignore[arg-type]
    with pytest.raises(RequestError) as raised:
        api(Request(7, "status", {}))
    assert raised.value.code == INTERNAL and "still starting" in raised.value.message
    assert raised.value.request_id == 7
