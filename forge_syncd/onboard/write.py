"""Writing what `add` decided: the drop-in `<state_dir>/containers.d/NAME.yaml`, once the
config loads with it, then the reload that starts the container (`write_entry`); and where
a name is defined already (`where_defined`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_syncd.config.dropins import dropin_path
from forge_syncd.config.loader import ConfigError, load_config
from forge_syncd.control.protocol import EXISTS, FAILED
from forge_syncd.logs import get_logger
from forge_syncd.onboard.dropin import defined_at, delete, dropin_text, write_dropin
from forge_syncd.onboard.request import Refused

if TYPE_CHECKING:
    from forge_syncd.service.view import DaemonView


def write_entry(
    daemon: DaemonView,
    name: str,
    entry: dict[str, Any],
    logged: dict[str, Any],
    trust: Callable[[], bool] | None = None,
) -> tuple[bool, Path, dict[str, Any]]:
    """Write the drop-in of container `entry` once the config loads with it (`trust`, when
    given, first: it writes the host key and says whether it did), reload; return what
    `trust` said, the drop-in's path and the reload's changes. A reload that fails takes the
    drop-in away again (a trusted key stays: a person confirmed it). Raise Refused."""
    with daemon.onboard_lock:
        where = where_defined(daemon, name)
        if where is not None:
            raise Refused(EXISTS, f"a container named {name!r} was just defined in {where}")
        text = dropin_text(entry)
        target = dropin_path(daemon.config, name)
        try:  # the reload would read it so: refuse now what it would refuse
            load_config(daemon.config_path, pending={target: text})
        except ConfigError as exc:
            raise Refused(
                FAILED, f"the config would not load with {target} (nothing written):\n{exc}"
            ) from None
        learned = trust() if trust is not None else False
        try:
            path = write_dropin(daemon.config, name, text)
        except OSError as exc:
            raise Refused(FAILED, f"cannot write {target}: {exc.strerror or exc}") from None
        daemon.first_triggers[name] = "add"  # its first sync counts as `add`'s
        result = daemon.reload()
        daemon.first_triggers.pop(name, None)
        if not result["reloaded"]:
            delete(path)
            error = result["error"]
            raise Refused(FAILED, f"the reload refused the new drop-in (removed):\n{error}")
        if name not in daemon.runners:
            delete(path)
            daemon.reload()
            raise Refused(FAILED, f"the reload did not pick up {path} (removed)")
    get_logger().info(
        "container_added",
        container=name,
        kind=entry["kind"],
        transport=entry.get("transport", "ssh"),
        **logged,
        root=entry["root"],
        file=str(path),
        host_key_learned=learned,
    )
    changes = {k: result[k] for k in ("added", "removed", "changed")}
    return learned, path, changes


def where_defined(daemon: DaemonView, name: str) -> str | None:
    """Where container `name` is defined now (a file and line, a discovery source), or None
    when it is not: then `add` may use the name."""
    origin = defined_at(daemon.config, name)
    if origin is not None:
        return str(origin)
    for index, containers in list(daemon.discovered.items()):
        if any(c.name == name for c in containers) and index < len(daemon.config.discover):
            return f"discovery source {daemon.config.discover[index].label}"
    if name in daemon.runners:
        return "the running config (changed on disk since: reload)"
    path = dropin_path(daemon.config, name)
    if path.exists():
        return str(path)
    return None
