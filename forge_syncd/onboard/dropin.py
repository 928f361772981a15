"""The drop-ins `forge-syncctl add` writes (`<state_dir>/containers.d/NAME.yaml`) and where
a container is defined (file and line), for `add` (a name in use) and `remove` (only a
drop-in the daemon wrote, for that container alone, is deleted). The folders and the file
names read are `config.dropins`'."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from forge_syncd import __version__
from forge_syncd.atomicfile import fsync_folder, write_atomically
from forge_syncd.config.dropins import admin_dropin_folder, dropin_files, dropin_folder, dropin_path
from forge_syncd.config.model import Config
from forge_syncd.config.yamlnodes import LineDict, LineList, YamlError, parse

FILE_MODE = 0o640
FOLDER_MODE = 0o750
# A drop-in being removed is renamed to this first (no longer `*.yaml`, so a reload skips
# it) and put back if the reload fails.
REMOVING_SUFFIX = ".removing"


@dataclass(frozen=True)
class Origin:
    """Where a container is defined: the file and the line of its `name:`, and whether the
    file is a drop-in the daemon wrote for it alone (the one `remove` may delete)."""

    file: Path
    line: int
    daemon_written: bool = False

    def __str__(self) -> str:
        return f"{self.file} line {self.line}"


def defined_at(config: Config, name: str) -> Origin | None:
    """Given the running config and a container name, return where that name is defined
    on disk now: the main file, then the admins' drop-ins, then the daemon's (each folder in
    name order); None when nowhere."""
    files = [config.path, *_yaml_files(admin_dropin_folder(config.path))]
    ours = _yaml_files(dropin_folder(config))
    for path in [*files, *ours]:
        line, alone = _name_line(path, name)
        if line is not None:
            written = path in ours and path.name == f"{name}.yaml" and alone
            return Origin(path, line, written)
    return None


def _yaml_files(folder: Path) -> list[Path]:
    try:
        return dropin_files(folder)
    except OSError:
        return []


def _name_line(path: Path, name: str) -> tuple[int | None, bool]:
    """Return the line where `path` defines container `name` (None if it does not) and
    whether it is the only container the file holds."""
    try:
        document = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YamlError):
        return None, False
    if not isinstance(document, LineDict):
        return None, False
    containers = document.get("containers")
    if not isinstance(containers, LineList):
        return None, False
    for index, entry in enumerate(containers):
        if isinstance(entry, LineDict) and entry.get("name") == name:
            line = entry.value_lines.get("name", containers.item_lines[index])
            return line, len(containers) == 1 and set(document) == {"containers"}
    return None, False


def dropin_text(entry: dict[str, Any], now: datetime | None = None) -> str:
    """Given a container entry, return the drop-in's text: a comment saying who wrote it and
    how to remove it, then `containers:` with the entry."""
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = (
        f"# Written by `forge-syncctl add` (forge-syncd {__version__}) at {when}.\n"
        f"# `forge-syncctl remove {entry['name']}` removes it (and keeps the library).\n"
    )
    body = yaml.safe_dump(
        {"containers": [entry]}, sort_keys=False, default_flow_style=None, allow_unicode=True
    )
    return header + body


def write_dropin(config: Config, name: str, text: str) -> Path:
    """Write the drop-in `text` of container `name` atomically (mode 0640; its folder made
    0750 when missing); return its path. Raise OSError."""
    folder = dropin_folder(config)
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    path = dropin_path(config, name)
    write_atomically(path, text.encode(), FILE_MODE)
    return path


def set_aside(path: Path) -> Path:
    """Rename a drop-in out of the loader's sight (durably); return the new path."""
    aside = path.with_name(path.name + REMOVING_SUFFIX)
    os.rename(path, aside)
    fsync_folder(path.parent)
    return aside


def put_back(aside: Path, path: Path) -> None:
    """Undo `set_aside`."""
    os.rename(aside, path)
    fsync_folder(path.parent)


def delete(path: Path) -> None:
    """Delete a drop-in (or one set aside) durably; a missing one is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fsync_folder(path.parent)
