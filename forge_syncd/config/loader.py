"""Load `/etc/forge-sync.yaml` and its drop-ins into a `Config`, or report every problem at
once."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from forge_syncd.config.dropins import admin_dropin_folder, dropin_files, state_dropin_folder
from forge_syncd.config.hostchecks import check_identity, check_library_group
from forge_syncd.config.model import (
    CleanupConfig,
    Config,
    ContainerConfig,
    ControlConfig,
    DiscoverSource,
    DockerConfig,
    LibraryConfig,
    LimitsConfig,
    LogConfig,
    MetricsConfig,
    Schedule,
    SinkConfig,
    SshConfig,
    SyncConfig,
)
from forge_syncd.config.presets import PRESETS
from forge_syncd.config.schema import (
    CLEANUP,
    DOCKER,
    DROPIN,
    SSH,
    SYNC,
    TOP,
    Key,
)
from forge_syncd.config.sinks import build_sinks, check_mirror
from forge_syncd.config.validate import Checked, ConfigIssue, Issues, check_map
from forge_syncd.config.yamlnodes import LineDict, YamlError, parse


class ConfigError(Exception):
    """The config cannot be used. `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues


def load_config(path: Path, pending: dict[Path, str] | None = None) -> Config:
    """Given the config file's path, return the validated Config, with the containers and
    discovery sources of its drop-ins (`dropins.py`). Raise ConfigError listing every
    problem of every file (the main file's first, then each drop-in's, in reading order).

    `pending` maps drop-in paths to texts read as if they were written there (in place of
    what is there), so a drop-in can be checked before it is written."""
    document = _read(path, "config")
    assert document is not None  # only a drop-in may be empty
    issues = Issues(str(path))
    top = check_map(document, TOP, "", issues)
    check_library_group(_value(top, "library", {}).get("group"), issues)
    defaults: dict[str, Checked] = _value(top, "defaults", {})
    sinks = build_sinks(top, issues)
    names = Names()
    names.mirrors = frozenset(s.name for s in sinks if s.type == "mirror")
    check_mirror(_value(defaults, "cleanup", {}), "defaults", issues, names.mirrors)
    containers = _containers(_value(top, "containers") or [], defaults, issues, issues, names)
    sources = _sources(top, document, issues)
    folders = [admin_dropin_folder(path)]
    if "state_dir" in top or "state_dir" not in document:  # an invalid one is reported
        folders.append(state_dropin_folder(_value(top, "state_dir", DEFAULT_STATE_DIR)))
    later: list[ConfigIssue] = []
    read: list[Path] = []
    for folder in folders:
        try:
            files = dropin_files(folder, pending or {})
        except OSError as exc:
            reason = f"cannot read the drop-in folder: {exc.strerror or exc}"
            later.append(ConfigIssue(str(folder), 1, "(folder)", reason))
            continue
        for dropin in files:
            text = (pending or {}).get(dropin)
            found = _dropin(dropin, text, path, defaults, issues, names)
            if isinstance(found, ConfigError):
                later += found.issues
                continue
            read.append(dropin)
            containers += found[0]
            sources += found[1]
    if issues or later:
        raise ConfigError(sorted(issues, key=lambda issue: issue.line) + later)
    return dataclasses.replace(
        _config(path, top, containers, sinks),
        discover=tuple(sources),
        defaults_json=json.dumps(document.get("defaults") or {}),
        dropins=tuple(read),
    )


DEFAULT_STATE_DIR = Config.__dataclass_fields__["state_dir"].default


def _read(path: Path, what: str, text: str | None = None) -> LineDict | None:
    """Given a config file or a drop-in (`what`) and its text if known, return its
    document (None for an empty drop-in). Raise ConfigError (one issue) when it cannot be
    read or is not a mapping."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        issue = ConfigIssue(file, 1, "(file)", f"cannot read the {what}: {reason}")
        raise ConfigError([issue]) from None
    try:
        document = parse(text)
    except YamlError as exc:
        raise ConfigError([ConfigIssue(file, exc.line, exc.key_path, exc.message)]) from None
    if document is None and what == "drop-in":
        return None
    if not isinstance(document, LineDict):
        raise ConfigError([ConfigIssue(file, 1, "(file)", f"the {what} must be a YAML mapping")])
    return document


def _dropin(
    path: Path,
    text: str | None,
    main: Path,
    defaults: dict[str, Checked],
    main_issues: Issues,
    names: Names,
) -> tuple[list[ContainerConfig], list[DiscoverSource]] | ConfigError:
    """Read one drop-in (`text`: its content, if known): its containers (with the main
    file's `defaults`) and discovery sources, or a ConfigError with its problems (in line
    order)."""
    try:
        document = _read(path, "drop-in", text)
    except ConfigError as exc:
        return exc
    if document is None:
        return [], []
    issues = Issues(str(path))
    allowed = LineDict({k: v for k, v in document.items() if k not in TOP or k in DROPIN})
    allowed.line, allowed.key_lines, allowed.value_lines = (
        document.line,
        document.key_lines,
        document.value_lines,
    )
    for key in document.keys() - allowed.keys():
        issues.add(
            document.key_lines[key],
            key,
            f"not allowed in a drop-in, which holds only containers and discover ({key} goes"
            f" in {main})",
        )
    top = check_map(allowed, DROPIN, "", issues)
    containers = _containers(_value(top, "containers") or [], defaults, issues, main_issues, names)
    sources = _sources(top, document, issues)
    if issues:
        return ConfigError(sorted(issues, key=lambda issue: issue.line))
    return containers, sources


class Names(dict[str, tuple[str, int]]):
    """Container names already defined: name -> (file, line); `mirrors`: the mirror sinks
    `cleanup.require_mirror` may name (None: not checked, a discovered entry)."""

    mirrors: frozenset[str] | None = None

    def claim(self, name: str, file: str, line: int, where: str, issues: Issues) -> None:
        """Record `name` defined at file:line, or report it defined twice."""
        first = self.get(name)
        if first is None:
            self[name] = (file, line)
            return
        at = f"line {first[1]}" if first[0] == file else f"{first[0]}:{first[1]}"
        issues.add(line, f"{where}.name", f"duplicate container name {name!r} (first at {at})")


TEMPLATE_KEYS = ("kind", "root", "folders", "ssh", "sync", "cleanup")


def _sources(top: dict[str, Checked], document: LineDict, issues: Issues) -> list[DiscoverSource]:
    """The `discover:` sources; each type's own key is required."""
    sources = []
    raw = document.get("discover") or []
    for index, entry in enumerate(_value(top, "discover") or []):
        own: dict[str, Checked] = entry.value
        where = f"discover[{index}]"
        kind = _value(own, "type")
        needed = {"ssh_config": "path", "command": "command"}.get(kind or "")
        if needed is not None and not _value(own, needed):
            issues.add(entry.line, f"{where}.{needed}", f"required for type {kind}")
            continue
        if kind is None:
            continue
        template = {k: v for k, v in raw[index].items() if k in TEMPLATE_KEYS}
        sources.append(
            DiscoverSource(
                type=kind,
                path=_value(own, "path"),
                hosts=tuple(c.value for c in _value(own, "hosts", [])) or ("*",),
                command=tuple(c.value for c in _value(own, "command", [])),
                interval_s=_value(own, "interval", 60.0),
                template_json=json.dumps(template),
                docker_host=_value(own, "host", DiscoverSource.docker_host),
                docker_label=_value(own, "label", DiscoverSource.docker_label),
            )
        )
    return sources


def discovered_container(
    entry: dict[str, Any], template: dict[str, Any], defaults: dict[str, Any]
) -> tuple[ContainerConfig | None, list[str]]:
    """Given a discovered container entry (the keys of a `containers:` entry), its source's
    template and the config's `defaults`, return the ContainerConfig, validated exactly as
    an entry of `containers:` is, or None and the problems (key path: message)."""
    merged: dict[str, Any] = dict(template)
    for key, value in entry.items():
        if key in ("ssh", "sync", "cleanup") and isinstance(value, dict):
            base = merged.get(key)
            merged[key] = {**(base if isinstance(base, dict) else {}), **value}
        else:
            merged[key] = value
    try:
        document = parse(
            yaml.safe_dump({"media_root": "/", "defaults": defaults, "containers": [merged]})
        )
    except (YamlError, yaml.YAMLError, RecursionError) as exc:
        return None, [f"not a container entry: {exc}"]
    issues = Issues("(discovered)")
    top = check_map(document, TOP, "", issues)
    built = _containers(
        _value(top, "containers") or [], _value(top, "defaults", {}), issues, issues, Names()
    )
    built = [dataclasses.replace(c, source="") for c in built]
    if issues or not built:
        found = [f"{i.key_path.removeprefix('containers[0].')}: {i.message}" for i in issues]
        return None, found or ["not a container entry"]
    return built[0], []


def _value(section: dict[str, Checked], key: str, default: Any = None) -> Any:
    found = section.get(key)
    return default if found is None else found.value


def _config(
    path: Path, top: dict[str, Checked], containers: list[ContainerConfig], sinks: list[SinkConfig]
) -> Config:
    log = _value(top, "log", {})
    control = _value(top, "control", {})
    metrics = _value(top, "metrics", {})
    library = _value(top, "library", {})
    fields: dict[str, Any] = {
        "path": path,
        "media_root": _value(top, "media_root"),
        "log": LogConfig(**_attrs(log, TOP["log"].keys)),
        "control": ControlConfig(**_attrs(control, TOP["control"].keys)),
        "metrics": MetricsConfig(**_attrs(metrics, TOP["metrics"].keys)),
        "library": LibraryConfig(**_attrs(library, TOP["library"].keys)),
        "limits": LimitsConfig(**_attrs(_value(top, "limits", {}), TOP["limits"].keys)),
        "containers": tuple(containers),
        "ingest": tuple(sinks),
    }
    if "state_dir" in top:
        fields["state_dir"] = _value(top, "state_dir")
    return Config(**fields)


def _attrs(section: dict[str, Checked], keys: dict[str, Key]) -> dict[str, Any]:
    """Map accepted keys to dataclass fields (schedule keys are handled by the caller)."""
    return {
        keys[name].attr or name: checked.value
        for name, checked in section.items()
        if name not in ("interval", "schedule")
    }


def _merged(defaults: dict[str, Checked], own: dict[str, Checked]) -> dict[str, Checked]:
    """Deep-merge one section. A level that sets interval or schedule replaces both."""
    if own.keys() & {"interval", "schedule"}:
        defaults = {k: v for k, v in defaults.items() if k not in ("interval", "schedule")}
    return {**defaults, **own}


def _schedule(section: dict[str, Checked], fallback: Schedule) -> Schedule:
    if "schedule" in section:
        return Schedule(cron=section["schedule"].value)
    if "interval" in section:
        return Schedule(interval_s=section["interval"].value)
    return fallback


def _section_with_lists(section: dict[str, Checked]) -> dict[str, Checked]:
    """Lists arrive as lists of Checked; the dataclasses want tuples of plain values."""
    return {
        name: Checked(tuple(item.value for item in checked.value), checked.line)
        if isinstance(checked.value, list)
        else checked
        for name, checked in section.items()
    }


def _containers(
    entries: list[Checked],
    defaults: dict[str, Checked],
    issues: Issues,
    defaults_issues: Issues,
    names: Names,
) -> list[ContainerConfig]:
    """Build the `containers:` entries of one file (`issues` is that file's) with the
    main file's `defaults` (problems found in them go to `defaults_issues`); names are
    claimed in `names`, shared by every file."""
    built: list[ContainerConfig] = []
    for index, entry in enumerate(entries):
        own: dict[str, Checked] = entry.value
        where = f"containers[{index}]"
        name = _value(own, "name")
        if name is not None:
            names.claim(name, issues.file, own["name"].line, where, issues)
        container = _container(own, defaults, where, entry.line, issues, defaults_issues)
        if names.mirrors is not None:
            check_mirror(_value(own, "cleanup", {}), where, issues, names.mirrors)
        if container is not None:
            built.append(dataclasses.replace(container, source=issues.file))
    return built


def _container(
    own: dict[str, Checked],
    defaults: dict[str, Checked],
    where: str,
    line: int,
    issues: Issues,
    defaults_issues: Issues,
) -> ContainerConfig | None:
    kind = _value(own, "kind")
    transport = _value(own, "transport", "ssh")
    local = transport != "ssh"  # no host, no ssh (`config/transports.py`)
    needed = {"ssh": "host", "local": "root"}.get(transport, "name")
    if kind is None or any(_value(own, k) is None for k in ("name", needed)):
        return None  # already reported as missing or invalid
    preset = PRESETS[kind]
    root = _value(own, "root") or preset.root
    if root is None:
        issues.add(line, f"{where}.root", "required for kind 'generic' (no preset root)")
        return None
    folders = _value(own, "folders")
    sections = {
        name: _section_with_lists(_merged(_value(defaults, name, {}), _value(own, name, {})))
        for name in ("ssh", "sync", "cleanup")
    }
    ssh = SshConfig(**_attrs(sections["ssh"], SSH))
    if not local:
        own_ssh, defaults_ssh = _value(own, "ssh", {}), _value(defaults, "ssh", {})
        check_identity(
            ssh, sections["ssh"], own_ssh, defaults_ssh, where, line, issues, defaults_issues
        )
    sync = SyncConfig(**_attrs(sections["sync"], SYNC))
    cleanup = CleanupConfig(**_attrs(sections["cleanup"], CLEANUP))
    return ContainerConfig(
        name=_value(own, "name"),
        kind=kind,
        host=_value(own, "host", ""),
        transport=_value(own, "transport", "ssh"),
        root=str(root).rstrip("/") or "/",
        folders=tuple(f.value for f in folders) if folders is not None else preset.folders,
        ssh=ssh,
        docker=DockerConfig(
            **_attrs(_value(own, "docker", {}), DOCKER), container=_value(own, "container", "")
        ),
        sync=dataclasses.replace(sync, schedule=_schedule(sections["sync"], sync.schedule)),
        cleanup=dataclasses.replace(
            cleanup, schedule=_schedule(sections["cleanup"], cleanup.schedule)
        ),
    )
