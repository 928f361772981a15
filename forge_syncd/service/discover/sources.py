"""Containers found rather than configured: the `discover:` sources.

- `ssh_config`: the Host blocks of an OpenSSH client config (tools that rent boxes write
  them from the provider's API; a regular file of at most MAX_OUTPUT bytes), parsed by
  paramiko's own `SSHConfig` (`transports/ssh/ssh_config.py`). `Match` blocks are
  cut out of the text first and reported: paramiko's lookup would evaluate them, and
  `Match exec` runs a command. Each Host alias without wildcards that matches one of
  `hosts` is a container: the alias names it (lower-cased; characters outside
  `[a-z0-9_-]` become `-`), HostName, Port, User and IdentityFile fill `host` and `ssh`.
- `docker`: the running containers of a Docker engine carrying a label, its value the
  kind (`discover/docker.py`): each a `transport: docker` container named after it.
- `command`: a program printing a JSON array of container entries (the keys of a
  `containers:` entry); run without a shell in a session of its own, at most
  COMMAND_TIMEOUT_S, at most MAX_OUTPUT bytes read; its whole process group is killed when
  it ends, however it ends (what it left running must not hold its output open).

Every entry gets its source's container keys, then is validated exactly as a configured
one (`loader.discovered_container`); a bad entry is reported and skipped, the others go on.
A name that two entries of one source claim (`vast-1` and `Vast.1`) is refused for all of
them: which box it means cannot be told. A source that cannot be read at all raises
DiscoveryError: the daemon then keeps what that source found before, so a passing failure
never unschedules a container.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import selectors
import signal
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge_syncd.config.loader import discovered_container
from forge_syncd.config.model import Config, ContainerConfig, DiscoverSource
from forge_syncd.service.discover.docker import DockerListingError, entry_of, running_labelled
from forge_syncd.transports.ssh.ssh_config import SshConfigError, parse_hosts

COMMAND_TIMEOUT_S = 30.0
MAX_OUTPUT = 1024 * 1024
MAX_ENTRIES = 1000
WILDCARDS = re.compile(r"[*?!]")
CHUNK = 64 * 1024
POLL_S = 0.1
STDERR_KEPT = 300  # bytes of stderr quoted when a command fails

# The process groups of the commands running now (their leaders' pids): killed at stop.
_running: set[int] = set()
_running_lock = threading.Lock()


class DiscoveryError(Exception):
    """A source could not be read (file, command, output): nothing it found is known."""


@dataclass(frozen=True)
class Clash:
    """A container name that several entries of one source claim: all of them refused."""

    name: str
    claimed_by: tuple[str, ...]  # "Host vast-1", "entry 3": in the source's order

    def __str__(self) -> str:
        return f"{self.name[:64]!r} claimed by {' and '.join(self.claimed_by)}: all refused"


@dataclass
class Listing:
    """What a source holds before validation: (where each entry comes from, the entry),
    and what was ignored in the source itself (a Match block)."""

    entries: list[tuple[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Found:
    """What one source found: valid containers, problems with the entries skipped, names
    refused because several entries claim them, and warnings about the source."""

    containers: list[ContainerConfig] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    clashes: list[Clash] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def container_name(alias: str) -> str:
    """Given a Host alias, return the container name SPEC makes of it."""
    name = re.sub(r"[^a-z0-9_-]", "-", alias.lower())
    return name.lstrip("-_")


# -- ssh_config ------------------------------------------------------------------------
def read_ssh_config(path: Path) -> str:
    """Return the text of the ssh_config at `path`: a regular file of at most MAX_OUTPUT
    bytes of UTF-8, newlines read as text mode reads them. Raise DiscoveryError; a FIFO or
    a device is refused, never waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise DiscoveryError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DiscoveryError(f"cannot read {path}: not a regular file")
        data = file.read(MAX_OUTPUT + 1)
    if len(data) > MAX_OUTPUT:
        raise DiscoveryError(f"cannot read {path}: larger than {MAX_OUTPUT} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DiscoveryError(f"cannot read {path}: {exc}") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def ssh_config_entries(source: DiscoverSource) -> Listing:
    """Return the container entries of an ssh_config source. Raise DiscoveryError."""
    assert source.path is not None
    try:
        hosts, warnings = parse_hosts(read_ssh_config(source.path))
    except SshConfigError as exc:
        raise DiscoveryError(f"cannot parse {source.path}: {exc}") from exc
    aliases = [
        alias
        for alias in hosts.aliases
        if not WILDCARDS.search(alias) and any(fnmatch.fnmatchcase(alias, p) for p in source.hosts)
    ]
    listing = Listing(warnings=warnings)
    # Sorted on the name and then the alias itself: never on set order (hash-seeded).
    for alias in sorted(aliases, key=lambda alias: (container_name(alias), alias)):
        try:
            found = hosts.lookup(alias)
        except SshConfigError as exc:
            raise DiscoveryError(f"{source.path}: Host {alias}: {exc}") from exc
        listing.entries.append((f"Host {alias}", _entry(alias, found)))
    return listing


def _entry(alias: str, found: dict[str, Any]) -> dict[str, Any]:
    """Given a Host alias and what paramiko's lookup gave for it, return its entry."""
    ssh: dict[str, Any] = {}
    if "port" in found:
        port = str(found["port"])
        # Only plain ASCII digits: "²".isdigit() is true and int("²") raises. Anything else
        # stays a string, which validation refuses for this entry alone.
        ssh["port"] = int(port) if re.fullmatch(r"[0-9]{1,9}", port) else port
    if "user" in found:
        ssh["user"] = found["user"]
    if found.get("identityfile"):
        ssh["identity_file"] = os.path.expanduser(found["identityfile"][0])
    entry: dict[str, Any] = {"name": container_name(alias), "host": found["hostname"]}
    if ssh:
        entry["ssh"] = ssh
    return entry


# -- command ---------------------------------------------------------------------------
def command_entries(source: DiscoverSource) -> Listing:
    """Run a command source; return its entries. Raise DiscoveryError."""
    out = run_command(source.command)
    try:
        entries = json.loads(out)
    except (ValueError, RecursionError) as exc:
        raise DiscoveryError(f"{source.command[0]} did not print JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise DiscoveryError(f"{source.command[0]} must print a JSON array of entries")
    return Listing(entries=[(f"entry {i}", e) for i, e in enumerate(entries[:MAX_ENTRIES])])


def run_command(argv: tuple[str, ...]) -> bytes:
    """Run `argv` (no shell) in a session of its own; return what it printed. Raise
    DiscoveryError when it cannot start, runs over COMMAND_TIMEOUT_S (until its output is
    closed and it has exited), prints more than MAX_OUTPUT bytes (on stdout or stderr), or
    exits non-zero. Its process group is killed as soon as it exits, and at the end in any
    case: what it left running is never waited for."""
    try:
        process = subprocess.Popen(  # the operator's own command, no shell
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise DiscoveryError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    with _running_lock:
        _running.add(process.pid)
    deadline = time.monotonic() + COMMAND_TIMEOUT_S
    try:
        out, err = _read_output(process, argv[0], deadline)
        while not _exited(process.pid):  # its output closed: it should be exiting
            if time.monotonic() >= deadline:
                raise DiscoveryError(f"{argv[0]} ran over {COMMAND_TIMEOUT_S:g}s")
            time.sleep(POLL_S)
    finally:
        _end(process)
    if process.returncode != 0:
        message = err[:STDERR_KEPT].decode("utf-8", "replace").strip()
        raise DiscoveryError(f"{argv[0]} exited {process.returncode}: {message}")
    return out


def _read_output(
    process: subprocess.Popen[bytes], name: str, deadline: float
) -> tuple[bytes, bytes]:
    """Read `process`'s stdout and stderr in chunks until both are closed; return stdout
    and the start of stderr. Raise DiscoveryError past `deadline` or past MAX_OUTPUT on
    either. When the process exits, kill its group: a child it left in the background
    would otherwise hold the output open."""
    assert process.stdout is not None and process.stderr is not None
    out = bytearray()
    err = bytearray()
    read = {process.stdout.fileno(): 0, process.stderr.fileno(): 0}
    exited = False
    with selectors.DefaultSelector() as selector:
        for stream in (process.stdout, process.stderr):
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise DiscoveryError(f"{name} ran over {COMMAND_TIMEOUT_S:g}s")
            if not exited and _exited(process.pid):
                exited = True
                _kill_group(process.pid)
            for key, _ in selector.select(min(left, POLL_S)):
                chunk = os.read(key.fd, CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                read[key.fd] += len(chunk)
                if read[key.fd] > MAX_OUTPUT:
                    where = "" if key.fileobj is process.stdout else " on stderr"
                    raise DiscoveryError(f"{name} printed more than {MAX_OUTPUT} bytes{where}")
                if key.fileobj is process.stdout:
                    out += chunk
                elif len(err) < STDERR_KEPT:
                    err += chunk[: STDERR_KEPT - len(err)]
    return bytes(out), bytes(err)


def _exited(pid: int) -> bool:
    """True once child `pid` has exited. It is not reaped (WNOWAIT): while it is a zombie
    its pid, and so its process group's id, cannot be given to another process."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped by someone else: gone
        return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, signal.SIGKILL)


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill `process`'s group (before reaping it: see `_exited`), close its pipes, reap it."""
    _kill_group(process.pid)
    with _running_lock:
        _running.discard(process.pid)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    # Not even SIGKILL ends a process stuck in the kernel: it is not waited for.
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def kill_running_commands() -> None:
    """Kill the process group of every discovery command running now (the daemon stops)."""
    with _running_lock:
        for pgid in _running:
            _kill_group(pgid)


# -- docker ------------------------------------------------------------------------------
def docker_entries(source: DiscoverSource, config: Config) -> Listing:
    """Return the container entries of a docker source (`discover/docker.py`); a container
    skipped is a warning naming it. Raise DiscoveryError."""
    try:
        records = running_labelled(source, config)
    except DockerListingError as exc:
        raise DiscoveryError(str(exc)) from exc
    listing = Listing()
    for record in records:
        origin, entry = entry_of(record, source)
        if isinstance(entry, str):
            listing.warnings.append(entry)
        else:
            entry["name"] = container_name(entry["name"])
            listing.entries.append((origin, entry))
    return listing


# -- one source ------------------------------------------------------------------------
def discover(source: DiscoverSource, config: Config) -> Found:
    """Read one source; return the containers it found (validated with the config's
    `defaults` and the source's keys), the entries it skipped and why, the names it
    refused as clashing, and its warnings. Raise DiscoveryError when the source itself
    cannot be read, and on any unexpected error: nothing read is then applied."""
    try:
        return _discover(source, config)
    except DiscoveryError:
        raise
    except Exception as exc:  # a discovery failure is a record, never a crash
        raise DiscoveryError(f"unexpected error: {type(exc).__name__}: {exc}") from exc


def _discover(source: DiscoverSource, config: Config) -> Found:
    if source.type == "docker":
        listing = docker_entries(source, config)
    else:
        listing = (ssh_config_entries if source.type == "ssh_config" else command_entries)(source)
    template = json.loads(source.template_json)
    defaults = json.loads(config.defaults_json)
    found = Found(clashes=name_clashes(listing.entries), warnings=listing.warnings)
    refused = {clash.name for clash in found.clashes}
    names: set[str] = set()
    for origin, entry in listing.entries:
        label = origin
        if not isinstance(entry, dict):
            found.problems.append(f"{label}: not a mapping")
            continue
        name = entry.get("name")
        if isinstance(name, str):
            if name in refused:
                continue
            label = f"entry {name[:64]!r}"
        container, problems = discovered_container(entry, template, defaults)
        if container is not None and container.transport == "local":  # never a source's pick
            container, problems = None, ["transport: 'local' is not discovered (configure it)"]
        if container is None:
            found.problems += [f"{label}: {problem}" for problem in problems]
        elif container.name in names:  # two spellings of one name after validation
            found.problems.append(f"{label}: duplicate container name")
        else:
            names.add(container.name)
            found.containers.append(container)
    return found


def name_clashes(entries: list[tuple[str, Any]]) -> list[Clash]:
    """Given a source's (origin, entry) pairs, return each name that more than one entry
    claims, with the origins in the source's order; sorted by name."""
    claims: dict[str, list[str]] = {}
    for origin, entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            claims.setdefault(entry["name"], []).append(origin)
    return [
        Clash(name, tuple(origins)) for name, origins in sorted(claims.items()) if len(origins) > 1
    ]


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
