"""The daemon's side of `forge-syncctl add NAME docker://CONTAINER` and `add NAME
local:/PATH`: no host key and no login, but the same checks before anything is written.

docker://: the engine (`--docker-host`, default unix:///run/docker.sock; an ssh:// engine
through the daemon's key and known_hosts) must answer, and the container exist and run
(else the engine's own words); the probe `add` runs over SSH then runs in the container
(an exec) and picks the front end the same way (`--kind`, `--root`: its folder in the
container). local:: the folder must exist, be a folder the daemon can read, be named by its
real path (no symlink on the way: `local:` names exactly the folder synced), and neither
hold the library nor be inside it; its kind is `--kind`, else what the folder looks like.
The drop-in and the reload are `add`'s (`add.write_entry`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from forge_syncd.config.loader import discovered_container
from forge_syncd.config.model import ContainerConfig, DockerConfig
from forge_syncd.config.presets import PRESETS
from forge_syncd.control.protocol import BAD_PARAMS, FAILED
from forge_syncd.onboard.detect import (
    FIND_TIMEOUT_S,
    MAX_OUTPUT,
    Detection,
    NoChoice,
    choose,
    detect_script,
    parse_detection,
    probe_bases,
)
from forge_syncd.onboard.request import AddParams, Refused
from forge_syncd.onboard.target import DockerTarget, LocalTarget
from forge_syncd.onboard.write import write_entry
from forge_syncd.remote.errors import RemoteError
from forge_syncd.transports.docker import execs
from forge_syncd.transports.docker.engine import Engine, engine_message
from forge_syncd.transports.shell.result import OutputTooLarge

if TYPE_CHECKING:
    from forge_syncd.service.view import DaemonView

ENGINE_TIMEOUT_S = 30.0
SOCKET_HINT = (
    " (the daemon's user needs the socket: add it to the group that owns it, usually"
    " `docker`, which is root-equivalent; see README, Install)"
)


def add_elsewhere(daemon: DaemonView, request: AddParams) -> dict[str, Any]:
    """Answer one `add` call for a docker:// or local: target (steps `choose` or
    `added`, as for SSH). Raise Refused."""
    if isinstance(request.target, DockerTarget):
        return _add_docker(daemon, request, request.target)
    assert isinstance(request.target, LocalTarget)
    return _add_local(daemon, request, request.target)


def _checked(daemon: DaemonView, entry: dict[str, Any]) -> ContainerConfig:
    """The container `entry` defines, validated as the loader validates an entry of
    `containers:` (with the config's `defaults:`). Raise Refused."""
    defaults = json.loads(daemon.config.defaults_json)
    container, problems = discovered_container(entry, {}, defaults)
    if container is None:
        raise Refused(BAD_PARAMS, "; ".join(problems))
    return container


# -- docker:// --------------------------------------------------------------------------
def _add_docker(daemon: DaemonView, request: AddParams, target: DockerTarget) -> dict[str, Any]:
    host = request.docker_host or DockerConfig().host
    entry = {
        "name": request.name,
        "transport": "docker",
        "container": target.container,
        "kind": "generic",
        "root": "/",
        "docker": {"host": host},
    }
    probing = _checked(daemon, entry)
    engine = Engine(host, target.container, probing.docker.user, ENGINE_TIMEOUT_S, probing.ssh)
    _running(engine)
    base = {
        "container": request.name,
        "transport": "docker",
        "docker_host": host,
        "docker_container": target.container,
    }
    detection = _detect(engine, request.root is not None)
    notes = list(detection.notes)
    found: dict[str, Any] = {
        "found": [f.as_dict() for f in detection.found],
        "home": detection.home,
        "notes": notes,
    }
    try:
        picked = choose(detection.found, request.kind, request.root)
    except NoChoice as exc:
        said = "".join(f"; {note}" for note in notes)
        raise Refused(FAILED, f"container {target.container}: {exc}{said}") from None
    if isinstance(picked, list):
        return {**base, "step": "choose", **found, "candidates": [f.as_dict() for f in picked]}
    entry = {**entry, "kind": picked.kind, "root": picked.root}
    _checked(daemon, entry)
    logged = {"docker_host": host, "docker_container": target.container}
    _, path, changes = write_entry(daemon, request.name, entry, logged)
    if picked.root not in {f.root for f in detection.found}:
        notes.append(f"{picked.root} was not found in the container (yet)")
    added = {"kind": picked.kind, "root": picked.root, "file": str(path), "learned": False}
    return {**base, "step": "added", **added, **found, "reload": changes}


def _running(engine: Engine) -> None:
    """Refuse (`failed`) unless the engine answers and the container exists and runs; the
    message carries the engine's own words."""
    try:
        status, body = engine.request("GET", f"/containers/{quote(engine.container, safe='')}/json")
    except RemoteError as exc:
        hint = SOCKET_HINT if "Permission denied" in str(exc) else ""
        raise Refused(FAILED, f"{exc}{hint}") from None
    if status == 404:
        raise Refused(
            FAILED,
            f"no container {engine.container!r} at {engine.host}: {engine_message(body)}",
        )
    if status != 200:
        raise Refused(
            FAILED, f"the Docker engine at {engine.host} answered {status}: {engine_message(body)}"
        )
    try:
        state = json.loads(body).get("State") or {}
        running, said = state.get("Running") is True, str(state.get("Status", "?"))[:40]
    except (ValueError, AttributeError):
        raise Refused(
            FAILED, "the Docker engine's answer about the container is not understood"
        ) from None
    if not running or state.get("Paused") is True:
        shown = "".join(c if c.isprintable() else "?" for c in said)
        raise Refused(
            FAILED,
            f"container {engine.container} is not running (its state: {shown}): start it"
            f" (docker start {engine.container}) and add it again",
        )


def _detect(engine: Engine, has_root: bool) -> Detection:
    """Run `add`'s probe in the container; return what it found. A container without the
    probe's tools (busybox only) says so in a note when `--root` was given, else Refused."""
    try:
        result = execs.run(
            engine,
            detect_script(probe_bases()),
            max_output=MAX_OUTPUT,
            idle_timeout_s=FIND_TIMEOUT_S + 10,
        )
    except OutputTooLarge:
        problem = f"the container printed over {MAX_OUTPUT} bytes to the probe"
    except RemoteError as exc:
        problem = f"the probe did not run in the container ({exc}): pass --kind and --root"
    else:
        return parse_detection(result.stdout)
    if not has_root:
        raise Refused(FAILED, problem)
    return Detection(notes=[f"nothing detected: {problem}"])


# -- local: -------------------------------------------------------------------------------
def _add_local(daemon: DaemonView, request: AddParams, target: LocalTarget) -> dict[str, Any]:
    path = _readable_folder(target.path)
    _apart_from_library(daemon, path)
    kind = request.kind if request.kind != "auto" else _looks_like(path)
    entry = {"name": request.name, "transport": "local", "kind": kind, "root": path}
    _checked(daemon, entry)
    _, written, changes = write_entry(daemon, request.name, entry, {})
    notes = [] if request.kind != "auto" else [f"kind {kind}: from what {path} holds"]
    return {
        "container": request.name,
        "transport": "local",
        "step": "added",
        "kind": kind,
        "root": path,
        "file": str(written),
        "learned": False,
        "found": [],
        "home": None,
        "notes": notes,
        "reload": changes,
    }


def _readable_folder(path: str) -> str:
    """Return `path` when it is the real path of a folder the daemon can list. Refuse
    (`failed`) a missing path, a file, a path through a symlink (naming the real one), and
    a folder the daemon cannot read."""
    real = os.path.realpath(path)
    if real != path:
        if not os.path.exists(path):
            raise Refused(FAILED, f"{path} does not exist on this machine")
        raise Refused(
            FAILED,
            f"{path} goes through a symlink: add the folder by its real path (local:{real})",
        )
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except FileNotFoundError:
        raise Refused(FAILED, f"{path} does not exist on this machine") from None
    except NotADirectoryError:
        raise Refused(FAILED, f"{path} is not a folder") from None
    except OSError as exc:
        raise Refused(
            FAILED, f"the daemon cannot read {path}: {exc.strerror or exc} (uid {os.getuid()})"
        ) from None
    return path


def _apart_from_library(daemon: DaemonView, path: str) -> None:
    """Refuse a folder that is the library, inside it, or holds it: its own copies would
    be synced into it again."""
    library = Path(os.path.realpath(daemon.config.media_root))
    folder = Path(path)
    if folder == library or library in folder.parents or folder in library.parents:
        raise Refused(FAILED, f"{path} overlaps the library ({library}): sync a folder outside it")


def _looks_like(path: str) -> str:
    """The kind a local folder looks like: forge when it holds one of Forge's output
    folders, comfyui when it is a ComfyUI `output` folder, else generic."""
    if any(os.path.isdir(os.path.join(path, f)) for f in PRESETS["forge"].folders):
        return "forge"
    parent = os.path.basename(os.path.dirname(path)).lower()
    if os.path.basename(path) == "output" and "comfy" in parent:
        return "comfyui"
    return "generic"
