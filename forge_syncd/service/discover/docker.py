"""The `docker` discovery source: the running containers of a Docker engine that carry a
label (`forge-sync.kind` by default), the label's value being the kind.

The engine is asked once per read (`GET /containers/json` filtered on the label and on
`status=running`, at most MAX_ANSWER bytes: `engine.Engine.request`). What it answers is
as hostile as a container: a container's name must be a Docker name (letters, digits,
`_.-`, at most 128 characters, no slash) or the container is skipped with a warning, and
the forge-syncd name is made of it as of an ssh_config alias (`sources.container_name`);
a label value that is not a kind is skipped with one warning naming the container. Each
container found becomes `{name, transport: docker, container: ITS NAME, kind, docker:
{host}}` with the source's container keys; never a `local` one.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from forge_syncd.config.loader import discovered_container
from forge_syncd.config.model import Config, DiscoverSource, SshConfig
from forge_syncd.config.schema import KINDS
from forge_syncd.remote.errors import RemoteError
from forge_syncd.transports.docker.engine import Engine, engine_message

ENGINE_TIMEOUT_S = 30.0
MAX_CONTAINERS = 1000
DOCKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class DockerListingError(Exception):
    """The engine could not be asked, or its answer is not a list of containers."""


def daemon_ssh(config: Config) -> SshConfig:
    """The daemon's SSH settings (`defaults.ssh`: its key and known_hosts), for an engine
    at ssh://; validated as a container's."""
    probe = {"name": "probe", "transport": "docker", "kind": "generic", "root": "/"}
    container, _problems = discovered_container(probe, {}, json.loads(config.defaults_json))
    return container.ssh if container is not None else SshConfig()


def running_labelled(source: DiscoverSource, config: Config) -> list[dict[str, Any]]:
    """Ask the engine for its running containers carrying the source's label; return the
    engine's records (at most MAX_CONTAINERS). Raise DockerListingError."""
    engine = Engine(source.docker_host, "", "root", ENGINE_TIMEOUT_S, daemon_ssh(config))
    filters = json.dumps({"label": [source.docker_label], "status": ["running"]})
    try:
        status, body = engine.request("GET", f"/containers/json?filters={quote(filters)}")
    except RemoteError as exc:
        raise DockerListingError(str(exc)) from exc
    if status != 200:
        said = engine_message(body)
        raise DockerListingError(f"the Docker engine answered {status}: {said}")
    try:
        records = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DockerListingError(f"the Docker engine's container list is not JSON: {exc}") from exc
    if not isinstance(records, list):
        raise DockerListingError("the Docker engine's container list is not a list")
    return [r for r in records[:MAX_CONTAINERS] if isinstance(r, dict)]


def entry_of(
    record: dict[str, Any], source: DiscoverSource
) -> tuple[str, dict[str, Any]] | tuple[str, str]:
    """Given one record of the engine's list, return (origin, container entry), or
    (origin, warning) when it is skipped: no usable name, not running, or a label value
    that is not a kind."""
    names = record.get("Names")
    raw = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else ""
    name = raw[1:] if raw.startswith("/") else raw
    if not DOCKER_NAME.match(name):
        shown = "".join(c if c.isprintable() else "?" for c in name[:64])
        return "container ?", f"a container whose name {shown!r} is not a Docker name: skipped"
    origin = f"container {name}"
    if record.get("State") not in (None, "running"):
        return origin, f"{origin} is not running: skipped"
    labels = record.get("Labels")
    kind = labels.get(source.docker_label) if isinstance(labels, dict) else None
    if kind not in KINDS:
        shown = repr(kind)[:64] if isinstance(kind, str) else "missing"
        return origin, (
            f"{origin}: label {source.docker_label}={shown} is not a kind"
            f" ({', '.join(KINDS)}): skipped"
        )
    return origin, {
        "name": name,  # made a forge-syncd name by the caller (`sources.container_name`)
        "transport": "docker",
        "container": name,
        "kind": kind,
        "docker": {"host": source.docker_host},
    }
