"""The `docker` discovery source's reading of the engine's container list: the engine is
hostile input, so a name that is not a Docker name, a record that is not running, and a
label value that is no kind are skipped with a warning, never turned into a container."""

from __future__ import annotations

from typing import Any

import pytest

from forge_syncd.config.model import DiscoverSource
from forge_syncd.service.discover.docker import entry_of

SOURCE = DiscoverSource(type="docker", docker_host="unix:///run/docker.sock")


def record(name: Any, kind: Any = "comfyui", state: str = "running") -> dict[str, Any]:
    return {"Names": [name], "State": state, "Labels": {"forge-sync.kind": kind}}


def test_a_labelled_running_container_is_a_docker_entry() -> None:
    """A running container labelled with a kind gives `{name, transport: docker,
    container, kind, docker: {host}}` with its Docker name (its leading slash dropped)."""
    assert entry_of(record("/comfy.1"), SOURCE) == (
        "container comfy.1",
        {
            "name": "comfy.1",
            "transport": "docker",
            "container": "comfy.1",
            "kind": "comfyui",
            "docker": {"host": "unix:///run/docker.sock"},
        },
    )


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (record("/../../etc"), "is not a Docker name: skipped"),
        (record("/a/b"), "is not a Docker name: skipped"),
        (record("/" + "a" * 200), "is not a Docker name: skipped"),
        (record("/x\n\x1b[31m"), "is not a Docker name: skipped"),
        (record(None), "is not a Docker name: skipped"),
        ({"Names": "nope"}, "is not a Docker name: skipped"),
        (record("/ok", state="exited"), "container ok is not running: skipped"),
        (record("/ok", kind="local"), "label forge-sync.kind='local' is not a kind"),
        (record("/ok", kind=["comfyui"]), "label forge-sync.kind=missing is not a kind"),
    ],
)
def test_hostile_records_are_skipped_with_a_warning(given: dict[str, Any], said: str) -> None:
    """Each hostile or unusable record is a warning (printable, bounded), never an entry."""
    _origin, warning = entry_of(given, SOURCE)
    assert isinstance(warning, str) and said in warning
    assert warning.isprintable() and len(warning) < 300
