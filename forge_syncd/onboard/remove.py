"""The daemon's side of `forge-syncctl remove NAME [--force]`: stop syncing a box that
`add` added, keeping its library and history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forge_syncd.cli.format import size
from forge_syncd.config.validate import NAME
from forge_syncd.control.methods import METHODS
from forge_syncd.control.protocol import AT_RISK, BAD_PARAMS, FAILED, NOT_FOUND, NOT_REMOVABLE
from forge_syncd.logs import get_logger
from forge_syncd.onboard.dropin import defined_at, delete, put_back, set_aside
from forge_syncd.onboard.request import Refused
from forge_syncd.text import plural

if TYPE_CHECKING:
    from forge_syncd.service.view import DaemonView


def remove_box(daemon: DaemonView, params: dict[str, Any]) -> dict[str, Any]:
    """Given `{"name", "force"}`, remove the container's drop-in and reload; return
    `{"container", "file", "remote_only", "reload"}`. Raise Refused: `not_found` (no such
    container), `not_removable` (defined in the main config, an admin's drop-in or by
    discovery: the message names the file and line, or the source), `at_risk` (the box
    holds files the library has not got, and no `force`), `failed` (the reload refused)."""
    name, force = params.get("name"), params.get("force", False)
    known = METHODS["remove"].params
    unknown = sorted(set(params) - set(known))
    if unknown:
        names = ", ".join(sorted(known))
        raise Refused(BAD_PARAMS, f"unknown param {unknown[0]!r} (known: {names})")
    if not isinstance(name, str) or not NAME.match(name) or not isinstance(force, bool):
        raise Refused(BAD_PARAMS, "name must be a container name and force a boolean")
    with daemon.onboard_lock:
        origin = defined_at(daemon.config, name)
        if origin is None:
            raise _nowhere(daemon, name)
        if not origin.daemon_written:
            raise Refused(
                NOT_REMOVABLE,
                f"{name!r} is defined in {origin}, not by `forge-syncctl add`: an admin removes"
                " it there, then runs `forge-syncctl reload` (its library and history stay)",
            )
        runner = daemon.runners.get(name)
        at_risk = runner.remote_only.summary() if runner is not None else None
        if at_risk and at_risk["files"] and not force:
            raise Refused(
                AT_RISK,
                f"{name} holds {plural(at_risk['files'], 'file')} ({size(at_risk['bytes'])})"
                f" not yet in the library: run `forge-syncctl drain {name}` first (or"
                " `remove --force` to stop syncing them)",
            )
        aside = set_aside(origin.file)
        result = daemon.reload()
        if not result["reloaded"]:
            put_back(aside, origin.file)
            raise Refused(FAILED, f"the reload failed; {name} stays:\n{result['error']}")
        delete(aside)
    get_logger().info(
        "container_removed", container=name, file=str(origin.file), forced=force, at_risk=at_risk
    )
    return {
        "container": name,
        "file": str(origin.file),
        "remote_only": at_risk,
        "reload": {k: result[k] for k in ("added", "removed", "changed")},
    }


def _nowhere(daemon: DaemonView, name: str) -> Refused:
    """Why `name` cannot be removed when no file defines it: discovery found it, or there
    is no such container."""
    for index, containers in list(daemon.discovered.items()):
        if any(c.name == name for c in containers) and index < len(daemon.config.discover):
            source = daemon.config.discover[index].label
            return Refused(
                NOT_REMOVABLE, f"{name!r} is found by discovery source {source}: remove it there"
            )
    return Refused(NOT_FOUND, f"no container {name!r}")
