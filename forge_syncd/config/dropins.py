"""Config drop-ins: where they are, which files count, and who wrote them.

Besides the main file, every `*.yaml` in `forge-sync.d/` beside it (`/etc/forge-sync.d/`,
written by admins) and then in `<state_dir>/containers.d/` (written by the daemon for
`forge-syncctl add`) is read, each folder in name order. Hidden files (a writer's temporary
name) and other names are ignored; a folder that does not exist holds none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from forge_syncd.config.model import Config, ContainerConfig

ADMIN_FOLDER = "forge-sync.d"
DAEMON_FOLDER = "containers.d"


def admin_dropin_folder(config_path: Path) -> Path:
    """Given the main config's path, return the admins' drop-in folder beside it."""
    return config_path.parent / ADMIN_FOLDER


def state_dropin_folder(state_dir: Path) -> Path:
    """Given a state_dir, return the folder of the drop-ins the daemon writes."""
    return state_dir / DAEMON_FOLDER


def dropin_folder(config: Config) -> Path:
    """Return the folder where the daemon writes a drop-in per added container."""
    return state_dropin_folder(config.state_dir)


def dropin_path(config: Config, name: str) -> Path:
    """Return the drop-in file the daemon writes for container `name`."""
    return dropin_folder(config) / f"{name}.yaml"


def written_by_daemon(config: Config, container: ContainerConfig) -> bool:
    """Return whether `container` is defined by a drop-in the daemon wrote (one it may
    remove), not by the main file, an admin's drop-in or discovery."""
    return bool(container.source) and Path(container.source).parent == dropin_folder(config)


def is_dropin_name(name: str) -> bool:
    """Return whether a file name in a drop-in folder is read: `*.yaml`, not hidden."""
    return name.endswith(".yaml") and not name.startswith(".") and len(name) > len(".yaml")


def dropin_files(folder: Path, pending: Mapping[Path, str] | None = None) -> list[Path]:
    """Given a drop-in folder (and drop-ins about to be written: their paths count as
    there), return its drop-ins in name order; [] when it does not exist (nor its parent:
    a state_dir still to be made, or not a folder, which start-up reports). Raise OSError
    when it exists but cannot be listed."""
    names = {p.name for p in pending or {} if p.parent == folder and is_dropin_name(p.name)}
    try:
        names.update(os.listdir(folder))
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        if os.path.lexists(folder):
            raise
    return [folder / name for name in sorted(names) if is_dropin_name(name)]
