"""Containers found rather than configured: the `discover:` sources.

- `ssh_config`: the Host blocks of an OpenSSH client config (tools that rent boxes write
  them from the provider's API), parsed by paramiko's own `SSHConfig`. Each Host alias
  without wildcards that matches one of `hosts` is a container: the alias names it
  (lower-cased; characters outside `[a-z0-9_-]` become `-`), HostName, Port, User and
  IdentityFile fill `host` and `ssh`.
- `command`: a program printing a JSON array of container entries (the keys of a
  `containers:` entry); run without a shell, at most COMMAND_TIMEOUT_S, at most
  MAX_OUTPUT bytes read.

Every entry gets its source's container keys, then is validated exactly as a configured
one (`loader.discovered_container`); a bad entry is reported and skipped, the others go on.
A source that cannot be read at all raises DiscoveryError: the daemon then keeps what that
source found before, so a passing failure never unschedules a container.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

import paramiko

from forge_syncd.config.loader import discovered_container
from forge_syncd.config.model import Config, ContainerConfig, DiscoverSource

COMMAND_TIMEOUT_S = 30.0
MAX_OUTPUT = 1024 * 1024
MAX_ENTRIES = 1000
WILDCARDS = re.compile(r"[*?!]")


class DiscoveryError(Exception):
    """A source could not be read (file, command, output): nothing it found is known."""


@dataclass
class Found:
    """What one source found: valid containers, and problems with the entries skipped."""

    containers: list[ContainerConfig] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def container_name(alias: str) -> str:
    """Given a Host alias, return the container name SPEC makes of it."""
    name = re.sub(r"[^a-z0-9_-]", "-", alias.lower())
    return name.lstrip("-_")


def ssh_config_entries(source: DiscoverSource) -> list[dict[str, Any]]:
    """Return the container entries of an ssh_config source. Raise DiscoveryError."""
    assert source.path is not None
    try:
        config = paramiko.SSHConfig.from_path(str(source.path))
    except (OSError, UnicodeDecodeError, paramiko.ConfigParseError, ValueError) as exc:
        raise DiscoveryError(f"cannot read {source.path}: {exc}") from exc
    entries = []
    for alias in sorted(config.get_hostnames(), key=container_name):
        if WILDCARDS.search(alias) or not any(fnmatch.fnmatchcase(alias, p) for p in source.hosts):
            continue
        try:
            found = config.lookup(alias)
        except (paramiko.SSHException, ValueError, KeyError) as exc:
            raise DiscoveryError(f"{source.path}: Host {alias}: {exc}") from exc
        ssh: dict[str, Any] = {}
        if "port" in found:
            ssh["port"] = int(found["port"]) if str(found["port"]).isdigit() else found["port"]
        if "user" in found:
            ssh["user"] = found["user"]
        if found.get("identityfile"):
            ssh["identity_file"] = os.path.expanduser(found["identityfile"][0])
        entry: dict[str, Any] = {"name": container_name(alias), "host": found["hostname"]}
        if ssh:
            entry["ssh"] = ssh
        entries.append(entry)
    return entries


def command_entries(source: DiscoverSource) -> list[dict[str, Any]]:
    """Run a command source; return its entries. Raise DiscoveryError."""
    try:
        process = subprocess.Popen(  # the operator's own command, no shell
            list(source.command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise DiscoveryError(f"cannot run {source.command[0]}: {exc.strerror or exc}") from exc
    try:
        out, err = process.communicate(timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise DiscoveryError(f"{source.command[0]} ran over {COMMAND_TIMEOUT_S:g}s") from None
    if process.returncode != 0:
        message = err[:300].decode("utf-8", "replace").strip()
        raise DiscoveryError(f"{source.command[0]} exited {process.returncode}: {message}")
    if len(out) > MAX_OUTPUT:
        raise DiscoveryError(f"{source.command[0]} printed more than {MAX_OUTPUT} bytes")
    try:
        entries = json.loads(out)
    except (ValueError, RecursionError) as exc:
        raise DiscoveryError(f"{source.command[0]} did not print JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise DiscoveryError(f"{source.command[0]} must print a JSON array of entries")
    return entries[:MAX_ENTRIES]


def discover(source: DiscoverSource, config: Config) -> Found:
    """Read one source; return the containers it found (validated with the config's
    `defaults` and the source's keys) and the entries it skipped, why. Raise
    DiscoveryError when the source itself cannot be read."""
    read = ssh_config_entries if source.type == "ssh_config" else command_entries
    entries = read(source)
    template = json.loads(source.template_json)
    defaults = json.loads(config.defaults_json)
    found = Found()
    names: set[str] = set()
    for index, entry in enumerate(entries):
        label = f"entry {index}"
        if not isinstance(entry, dict):
            found.problems.append(f"{label}: not a mapping")
            continue
        if isinstance(entry.get("name"), str):
            label = f"entry {entry['name'][:64]!r}"
        container, problems = discovered_container(entry, template, defaults)
        if container is None:
            found.problems += [f"{label}: {problem}" for problem in problems]
        elif container.name in names:
            found.problems.append(f"{label}: duplicate container name")
        else:
            names.add(container.name)
            found.containers.append(container)
    return found


def merge(
    configured: tuple[ContainerConfig, ...], found: list[list[ContainerConfig]]
) -> tuple[list[ContainerConfig], list[str]]:
    """Given the configured containers and what each source found, return the containers to
    run (configured ones first; a name already taken is skipped) and the clashes."""
    merged = list(configured)
    taken = {c.name for c in configured}
    clashes = []
    for containers in found:
        for container in containers:
            if container.name in taken:
                clashes.append(f"{container.name}: a container of that name exists already")
                continue
            taken.add(container.name)
            merged.append(container)
    return merged, clashes
