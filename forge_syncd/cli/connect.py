"""Finding and greeting the daemon: which socket (and why that one), the `hello` check of
the protocol version, and what to tell a person when nothing answers."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, NamedTuple

from forge_syncd import __version__
from forge_syncd.control.client import ControlClient, DaemonBusy, DaemonUnreachable
from forge_syncd.control.protocol import PROTOCOL_VERSION

DEFAULT_SOCKET = Path("/run/forge-sync/control.sock")
DEFAULT_CONFIG = Path("/etc/forge-sync.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/forge-sync")


class ProtocolMismatch(Exception):
    """The daemon speaks another version of the control protocol (exit 1)."""


class Where(NamedTuple):
    """The socket to use and, for messages, where that path came from."""

    path: Path
    source: str


def config_path(args: argparse.Namespace) -> Path:
    """--config, else $FORGE_SYNC_CONFIG, else /etc/forge-sync.yaml."""
    return Path(args.config or os.environ.get("FORGE_SYNC_CONFIG") or DEFAULT_CONFIG)


def config_document(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Return the config file's YAML document (read as plain data: only a few keys are
    needed, and the daemon's secrets need not be readable), or (None, why not)."""
    try:
        text = path.read_text()
    except OSError as exc:
        return None, exc.strerror or str(exc)
    import yaml  # only when a config is read: `--socket` needs no YAML

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return None, f"not valid YAML ({str(exc).splitlines()[0]})"
    if not isinstance(document, dict):
        return None, "not a mapping"
    return document, None


def where(args: argparse.Namespace) -> Where:
    """--socket, else $FORGE_SYNC_SOCKET, else the config's control.socket, else the
    default; with where it came from."""
    if args.socket:
        return Where(Path(args.socket), "--socket")
    if os.environ.get("FORGE_SYNC_SOCKET"):
        return Where(Path(os.environ["FORGE_SYNC_SOCKET"]), "$FORGE_SYNC_SOCKET")
    path = config_path(args)
    document, problem = config_document(path)
    control = (document or {}).get("control")
    socket = control.get("socket") if isinstance(control, dict) else None
    if isinstance(socket, str) and socket:
        return Where(Path(socket), f"control.socket in {path}")
    why = problem or "it sets no control.socket"
    return Where(DEFAULT_SOCKET, f"the default ({path}: {why})")


def state_dir(args: argparse.Namespace) -> tuple[Path, str]:
    """Return the config's state_dir (else the default) and where it came from."""
    path = config_path(args)
    document, problem = config_document(path)
    value = (document or {}).get("state_dir")
    if isinstance(value, str) and value:
        return Path(value), f"state_dir in {path}"
    return DEFAULT_STATE_DIR, f"the default ({path}: {problem or 'it sets no state_dir'})"


def greet(path: Path) -> ControlClient:
    """Connect to the daemon at `path` and check it speaks our protocol; return the
    connection. Raise DaemonUnreachable (nothing answers, or busy) or ProtocolMismatch."""
    client = ControlClient(path)
    try:
        hello = client.call("hello")
    except BaseException:
        client.close()
        raise
    theirs = hello.get("protocol") if isinstance(hello, dict) else None
    if theirs != PROTOCOL_VERSION:
        client.close()
        raise ProtocolMismatch(mismatch_text(path, theirs, hello))
    return client


def mismatch_text(path: Path, theirs: object, hello: object) -> str:
    """Say which side is older, and what to do."""
    version = hello.get("version") if isinstance(hello, dict) else None
    daemon = f"forge-syncd {version}" if isinstance(version, str) else "the daemon"
    head = (
        f"{daemon} at {path} speaks control protocol {theirs!r}; this forge-syncctl"
        f" ({__version__}) speaks {PROTOCOL_VERSION}"
    )
    if isinstance(theirs, int) and theirs > PROTOCOL_VERSION:
        return f"{head}: the daemon is newer: upgrade forge-syncctl (the forge-syncd package)"
    if isinstance(theirs, int):
        return (
            f"{head}: the daemon is older: restart it on the installed version"
            " (systemctl restart forge-syncd)"
        )
    return f"{head}: it did not say which protocol it speaks"


def unreachable_hints(exc: DaemonUnreachable, spot: Where) -> list[str]:
    """What to check when nothing answers at `spot`: where the path came from, whether
    the daemon runs, how to point at another one."""
    if isinstance(exc, DaemonBusy):
        return []  # it runs, and says what to do
    hints = [f"the socket path is from {spot.source}"]
    if "Permission denied" not in str(exc):
        hints.append("is forge-syncd running? systemctl status forge-syncd")
    hints.append("another daemon's socket: --socket PATH, or --config PATH (its control.socket)")
    return hints
