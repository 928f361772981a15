"""The daemon's side of `forge-syncctl add`: confirm the host key, log in, detect the front
end, write the drop-in, apply it.

The caller is an operator who may not read the key: the daemon does every step with its
own key and answers with the next thing a person must decide (`confirm_host_key`,
`choose`) or what went wrong (`login_refused`, an error). Each call starts again from the
handshake, so nothing is kept between calls; a fingerprint the person confirmed is checked
against the key the box presents on the call that writes it. Nothing is written until the
login worked and the folder is chosen: then the host key (when new) goes into known_hosts,
the drop-in into `<state_dir>/containers.d/`, and the daemon reloads (`write.py`).
A docker:// or local: TARGET has no host key and no login: `elsewhere.py` answers it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_syncd.config.loader import discovered_container
from forge_syncd.config.model import ContainerConfig, SshConfig
from forge_syncd.control.protocol import BAD_PARAMS, EXISTS, FAILED, HOST_KEY
from forge_syncd.onboard.detect import (
    FIND_TIMEOUT_S,
    MAX_OUTPUT,
    Choice,
    Detection,
    NoChoice,
    choose,
    detect_script,
    parse_detection,
    probe_bases,
)
from forge_syncd.onboard.elsewhere import add_elsewhere
from forge_syncd.onboard.hostkey import KeyCheck, Unconfirmed, address, key_fields, writable_hint
from forge_syncd.onboard.request import AddParams, Refused, add_params
from forge_syncd.onboard.target import SshTarget
from forge_syncd.onboard.write import where_defined, write_entry
from forge_syncd.remote.errors import AuthError, HostKeyError, RemoteError
from forge_syncd.transports.shell.result import OutputTooLarge
from forge_syncd.transports.ssh.connection import Connection, connect, sh_command
from forge_syncd.transports.ssh.identity import public_key_line
from forge_syncd.transports.ssh.trust import trust_host_key

if TYPE_CHECKING:
    from forge_syncd.service.view import DaemonView


def add_box(daemon: DaemonView, params: dict[str, Any]) -> dict[str, Any]:
    """Answer one `add` call (see the module's docstring and the README for the result
    of each step). Raise Refused."""
    request = add_params(params)
    where = where_defined(daemon, request.name)
    if where is not None:
        raise Refused(EXISTS, f"a container named {request.name!r} is already defined in {where}")
    if not isinstance(request.target, SshTarget):
        return add_elsewhere(daemon, request)
    return _add_ssh(daemon, request)


def _add_ssh(daemon: DaemonView, request: AddParams) -> dict[str, Any]:
    """`add` of an ssh:// target: confirm the host key, log in, detect, write."""
    container = _container(daemon, request, Choice("generic", "/"))
    ssh = container.ssh
    base = {
        "container": request.name,
        "host": container.host,
        "port": ssh.port,
        "user": ssh.user,
        "known_hosts": str(ssh.known_hosts),
    }
    check = KeyCheck(daemon, request.fingerprint, container)
    logged_in = _log_in(container, check)
    if isinstance(logged_in, dict):
        return {**base, **logged_in}
    try:
        detection = detect(logged_in)
    except Refused as exc:
        if request.root is None:
            raise
        detection = Detection(notes=[f"nothing detected: {exc.message}"])
    finally:
        logged_in.close()
    key_shown = key_fields(check.key, check.previous)
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
        raise Refused(FAILED, f"{address(container)}: {exc}{said}") from None
    if isinstance(picked, list):
        candidates = [f.as_dict() for f in picked]
        return {**base, "step": "choose", **key_shown, **found, "candidates": candidates}
    final = _container(daemon, request, picked)
    learned, path, changes = _write(daemon, request, final, check)
    if picked.root not in {f.root for f in detection.found}:
        notes.append(f"{picked.root} was not found on the box (yet)")
    return {
        **base,
        "step": "added",
        "kind": final.kind,
        "root": final.root,
        "file": str(path),
        **key_shown,
        "learned": learned,
        **found,
        "reload": changes,
    }


def _log_in(container: ContainerConfig, check: KeyCheck) -> Connection | dict[str, Any]:
    """Connect and log in with the daemon's key, `check` judging the host key. Return the
    connection, or the step to answer instead: `confirm_host_key` (the key needs a
    person), `login_refused` (with the public key line to install). Raise Refused."""
    ssh = container.ssh
    try:
        return connect(container.host, ssh, check_key=check)
    except Unconfirmed as exc:
        return {"step": "confirm_host_key", **key_fields(exc.key, exc.previous)}
    except AuthError as exc:
        return {
            "step": "login_refused",
            **key_fields(check.key, check.previous),
            "identity_file": str(ssh.identity_file),
            "public_key": public_key_line(ssh.identity_file),
            "error": str(exc),
        }
    except HostKeyError as exc:
        raise Refused(HOST_KEY, str(exc)) from None
    except RemoteError as exc:
        raise Refused(FAILED, f"cannot log in to {address(container)}: {exc}") from None


def detect(connection: Connection) -> Detection:
    """Run the detection script on the box; return what it found. Raise Refused."""
    try:
        result = connection.run(
            sh_command(detect_script(probe_bases())),
            idle_timeout=FIND_TIMEOUT_S + 10,
            max_output=MAX_OUTPUT,
        )
    except OutputTooLarge:
        raise Refused(FAILED, f"the box printed over {MAX_OUTPUT} bytes to the probe") from None
    except RemoteError as exc:
        raise Refused(
            FAILED,
            f"the box ran no probe command ({exc}): pass --kind and --root, or use SSH over"
            " exposed TCP (a proxied SSH such as RunPod's gives only a terminal)",
        ) from None
    return parse_detection(result.stdout)


def _entry(request: AddParams, choice: Choice, user: str) -> dict[str, Any]:
    assert isinstance(request.target, SshTarget)
    return {
        "name": request.name,
        "kind": choice.kind,
        "host": request.target.host,
        "root": choice.root,
        "ssh": {"user": user, "port": request.target.port},
    }


def _container(daemon: DaemonView, request: AddParams, choice: Choice) -> ContainerConfig:
    """The container the drop-in would define, validated as the loader validates an entry
    of `containers:` (with the config's `defaults:`). Raise Refused."""
    defaults = json.loads(daemon.config.defaults_json)
    assert isinstance(request.target, SshTarget)
    user = request.target.user or _default_user(defaults)
    container, problems = discovered_container(_entry(request, choice, user), {}, defaults)
    if container is None:
        raise Refused(BAD_PARAMS, "; ".join(problems))
    return container


def _default_user(defaults: dict[str, Any]) -> str:
    ssh = defaults.get("ssh")
    user = ssh.get("user") if isinstance(ssh, dict) else None
    return user if isinstance(user, str) else SshConfig().user


def _write(
    daemon: DaemonView, request: AddParams, container: ContainerConfig, check: KeyCheck
) -> tuple[bool, Path, dict[str, Any]]:
    """Trust the host key (when new), write the drop-in, reload; return whether the key was
    written, the drop-in's path and the reload's changes (`write_entry`). Raise Refused."""
    ssh = container.ssh
    entry = {
        "name": container.name,
        "kind": container.kind,
        "host": container.host,
        "root": container.root,
        "ssh": {"user": ssh.user, "port": ssh.port},
    }

    def trust() -> bool:
        if check.known or check.key is None:
            return False
        try:
            return trust_host_key(ssh.known_hosts, container.host, ssh.port, check.key)
        except HostKeyError as exc:
            raise Refused(FAILED, f"{exc}{writable_hint(exc, daemon)}") from None

    logged = {"host": container.host, "port": ssh.port}
    return write_entry(daemon, request.name, entry, logged, trust)
