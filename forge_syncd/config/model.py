"""The validated configuration, as frozen dataclasses.

These are what the rest of the daemon sees. They are built by `forge_syncd.config.load`
only after the whole file validated, so every field here is already of its final type:
durations and intervals in seconds (float), sizes in bytes (int), rates in bytes/s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from forge_syncd.config.bwlimit import BwLimit

HostKeyPolicy = Literal["strict", "accept-new"]
Kind = Literal["forge", "comfyui", "generic"]
Verify = Literal["size", "sha256"]
LogLevel = Literal["debug", "info", "warning", "error"]
OnLocalDelete = Literal["refetch", "forget"]
Dedupe = Literal["auto", "hardlink", "off"]
# `transport:` (schema.TRANSPORTS); issue 27 adds "docker" and "local".
TransportKind = Literal["ssh", "local", "docker"]


@dataclass(frozen=True)
class Schedule:
    """Exactly one of `interval_s` (seconds between runs) or `cron` (a crontab line)."""

    interval_s: float | None = None
    cron: str | None = None


@dataclass(frozen=True)
class SshConfig:
    user: str = "root"
    port: int = 22
    identity_file: Path = Path("/etc/forge-sync/id_ed25519")
    known_hosts: Path = Path("/etc/forge-sync/known_hosts")
    host_key_policy: HostKeyPolicy = "strict"
    connect_timeout_s: float = 15.0
    keepalive_s: float = 30.0


@dataclass(frozen=True)
class DockerConfig:
    """`transport: docker`: the engine's address, the user scripts run as in the container,
    and the container (name or id; "" = the container's own `name`)."""

    host: str = "unix:///run/docker.sock"
    user: str = "root"
    container: str = ""


@dataclass(frozen=True)
class SyncConfig:
    schedule: Schedule = Schedule(interval_s=300.0)
    include: tuple[str, ...] = (
        "*.png",
        "*.jpg",
        "*.jpeg",
        "*.webp",
        "*.gif",
        "*.mp4",
        "*.webm",
        "*.txt",
        "*.json",
    )
    exclude: tuple[str, ...] = ()
    settle_s: float = 5.0
    transfers: int = 4
    connections: int = 0  # SSH connections a fetch may spread over; 0: auto (1 to 4)
    verify: Verify = "size"
    # A rate, timetable or auto (`config/bwlimit.py`); an int: a fixed rate in bytes/s.
    bwlimit: BwLimit | int | None = None
    auto_delay_s: float = 0.025
    max_file_size: int = 50 * 1024**3
    max_listing_files: int = 2_000_000
    max_listing_size: int = 512 * 1024**2
    keep_versions: float | Literal["all"] = "all"  # seconds a version is kept, or all
    on_local_delete: OnLocalDelete = "refetch"
    watch: bool = True  # live mode (forge_syncd/live/); the schedule reconciles
    # Files at least this large are hashed on the container first (sync/shortcut.py).
    dedupe_min_size: int = 8 * 1024**2

    @property
    def keep_versions_s(self) -> float | None:
        """Seconds an earlier version is kept; None: kept for ever."""
        return None if self.keep_versions == "all" else self.keep_versions


@dataclass(frozen=True)
class CleanupConfig:
    enabled: bool = False
    schedule: Schedule = Schedule(interval_s=3600.0)
    older_than_s: float = 24 * 3600.0
    dry_run: bool = False
    preserve: tuple[str, ...] = ()
    require_mirror: str | None = None  # a mirror sink's name: purge only what it holds


@dataclass(frozen=True)
class ContainerConfig:
    name: str
    kind: Kind
    host: str
    root: str
    folders: tuple[str, ...]
    transport: TransportKind = "ssh"
    ssh: SshConfig = SshConfig()
    sync: SyncConfig = SyncConfig()
    cleanup: CleanupConfig = CleanupConfig()
    docker: DockerConfig = DockerConfig()
    # The file that defines it: the main config or a drop-in ("" for a discovered one).
    # Not part of equality: a container moved, unchanged, from one file to another is not
    # "changed" on reload (its running jobs are left alone).
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class LogConfig:
    level: LogLevel = "info"
    file: Path | None = None


@dataclass(frozen=True)
class ControlConfig:
    """`group`: the control socket's group (operators are its members); None: the
    daemon's own group."""

    socket: Path = Path("/run/forge-sync/control.sock")
    group: str | None = "forge-syncctl"


@dataclass(frozen=True)
class LibraryConfig:
    """Who can read the library: what the daemon creates under `media_root` gets these
    modes and, with `group`, that group (None: the daemon's own). `dedupe`: identical
    bytes stored once (`library/dedupe.py`)."""

    group: str | None = None
    file_mode: int = 0o640
    dir_mode: int = 0o2750
    dedupe: Dedupe = "auto"


@dataclass(frozen=True)
class MetricsConfig:
    """`listen` is None when metrics are disabled."""

    listen: tuple[str, int] | None = ("127.0.0.1", 9721)


@dataclass(frozen=True)
class LimitsConfig:
    """`limits:`: `bwlimit` caps every container's transfers together (None: no cap)."""

    bwlimit: BwLimit | None = None


@dataclass(frozen=True)
class SinkConfig:
    """One ingest sink. `options` holds the type-specific keys, already validated:
    jsonl/catalog: {"path": Path}; exec: {"command": tuple[str, ...], "timeout_s": float};
    webhook: {"url": str, "timeout_s": float}; python: {"entry_point": str, "options": dict};
    ntfy, discord, telegram, gotify: their keys (durations as `<key>_s`, secret files as
    Paths: the secrets themselves are read by the sink, never kept here); mirror: {"remote":
    str, "rclone_config": Path, "bwlimit_bps": int | None, "retry_max_s": float}.
    """

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DiscoverSource:
    """One `discover:` entry. `template_json`: the container keys it applies to every
    container it finds (kind, root, folders, ssh, sync, cleanup), as parsed, in JSON."""

    type: Literal["ssh_config", "command", "docker"]
    path: Path | None = None
    hosts: tuple[str, ...] = ("*",)
    command: tuple[str, ...] = ()
    interval_s: float = 60.0
    template_json: str = "{}"
    docker_host: str = "unix:///run/docker.sock"  # type docker: the engine
    docker_label: str = "forge-sync.kind"  # type docker: the label; its value is the kind

    @property
    def label(self) -> str:
        """How logs and `--check-config` name this source."""
        if self.type == "docker":
            return f"docker {self.docker_host} label {self.docker_label}"
        if self.type == "ssh_config":
            return f"ssh_config {self.path}"
        return "command " + " ".join(self.command)


@dataclass(frozen=True)
class Config:
    path: Path
    media_root: Path
    state_dir: Path = Path("/var/lib/forge-sync")
    log: LogConfig = LogConfig()
    control: ControlConfig = ControlConfig()
    metrics: MetricsConfig = MetricsConfig()
    library: LibraryConfig = LibraryConfig()
    limits: LimitsConfig = LimitsConfig()
    containers: tuple[ContainerConfig, ...] = ()
    ingest: tuple[SinkConfig, ...] = ()
    discover: tuple[DiscoverSource, ...] = ()
    # The `defaults:` section as parsed (plain values): discovered entries are validated
    # with it exactly as entries of `containers:` are (`loader.discovered_container`).
    defaults_json: str = "{}"
    # The drop-in files read besides `path`, in the order they were read.
    dropins: tuple[Path, ...] = ()
