"""Fault injection for the hardening tests: a daemon we can SIGKILL and restart, a log we
can follow across restarts, an sshd we can kill with all its sessions and bring back on the
same port, and a TCP proxy that makes a container come and go."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from forge_syncd.paths import TEMP_NAME
from tests.support.cli import BIN
from tests.support.sshd import SshdServer


def spawn_daemon(config: Path, stderr: Path) -> subprocess.Popen[bytes]:
    """Start the installed daemon on `config`, appending its stderr to `stderr` (so a test
    can prove no traceback escaped)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    with open(stderr, "ab") as sink:
        return subprocess.Popen(
            [str(BIN / "forge-syncd"), "--config", str(config)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )


def sigkill(process: subprocess.Popen[bytes]) -> None:
    """kill -9 one process we started, and reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


class LogTail:
    """Follows a JSON-lines log file that several daemon processes append to in turn.

    `mark()` remembers where the file ends now; `since_mark()` returns the records written
    after it. A line cut short by a kill -9 is skipped (the next process appends after it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def since_mark(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        found = []
        for line in data.split(b"\n"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
        return found

    def events(self) -> list[str]:
        return [str(r.get("event")) for r in self.since_mark()]


def open_jobs(records: list[dict[str, Any]]) -> set[str]:
    """Return the jobs ("sync", "cleanup") started and not yet finished in `records`."""
    running: set[str] = set()
    for record in records:
        event = str(record.get("event"))
        for job in ("sync", "cleanup"):
            if event == f"{job}_started":
                running.add(job)
            elif event in (f"{job}_finished", f"{job}_failed"):
                running.discard(job)
    return running


def temp_files(root: Path) -> list[bytes]:
    """Return every forge-syncd temporary file (`.fs-<hex>.part`) under `root`."""
    found = []
    for folder, _dirs, files in os.walk(os.fsencode(root)):
        found += [os.path.join(folder, name) for name in files if TEMP_NAME.match(name)]
    return found


def manifest_rows(state_dir: Path, container: str) -> dict[bytes, tuple[int, int, str]]:
    """Return {path: (size, mtime_ns, state)} of the manifest's file rows, read with sqlite3."""
    db = sqlite3.connect(f"file:{state_dir / 'manifest.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT path, size, mtime_ns, state FROM files WHERE container = ?", (container,)
        ).fetchall()
    finally:
        db.close()
    return {bytes(r[0]): (int(r[1]), int(r[2]), str(r[3])) for r in rows}


def version_rows(state_dir: Path, container: str) -> dict[bytes, tuple[bytes, str]]:
    """Return {version_path: (path, state)} of the manifest's version rows."""
    db = sqlite3.connect(f"file:{state_dir / 'manifest.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT version_path, path, state FROM versions WHERE container = ?", (container,)
        ).fetchall()
    finally:
        db.close()
    return {bytes(r[0]): (bytes(r[1]), str(r[2])) for r in rows}


def manifest_events(state_dir: Path) -> dict[int, dict[str, Any]]:
    """Return the manifest's event outbox, {id: event}."""
    db = sqlite3.connect(f"file:{state_dir / 'manifest.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, body FROM events").fetchall()
    finally:
        db.close()
    return {int(r[0]): json.loads(r[1]) for r in rows}


def jsonl_events(path: Path) -> list[dict[str, Any]]:
    """Return the events a jsonl sink wrote (a line a kill cut short is skipped)."""
    if not path.exists():
        return []
    found = []
    for line in path.read_bytes().split(b"\n"):
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def write_reliability(name: str, data: Any) -> None:
    """Write `name` into $FORGE_RELIABILITY_DIR when it is set (scripts/reliability reads it)."""
    folder = os.environ.get("FORGE_RELIABILITY_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        Path(folder, name).write_text(json.dumps(data, indent=2) + "\n")


def descendants(pid: int) -> list[int]:
    """Return the pids of every process below `pid` (from /proc), children first."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_sshd_hard(server: SshdServer) -> None:
    """SIGKILL the test sshd and every session process it started, as if the container
    died: open connections break mid-stream and the port stops answering."""
    assert server.process is not None
    children = descendants(server.process.pid)
    server.process.send_signal(signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    server.process = None


def restart_sshd_same_port(server: SshdServer, timeout: float = 15) -> None:
    """Start `server`'s sshd again on the port it had (same keys, same known_hosts line)."""
    deadline = time.monotonic() + timeout
    while True:
        server.launch()
        if server.wait_listening():
            return
        server.stop()
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not come back on port {server.port}")
        time.sleep(0.2)


class FlappingProxy:
    """A TCP proxy on 127.0.0.1 in front of `target_port` whose path can go down.

    `down()` closes every open connection (the peer sees them drop mid-stream) and stops
    listening (new connections are refused); `up()` listens on the same port again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener: socket.socket | None = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.closing = threading.Event()
        self.connections = 0
        self._serve(self.listener)

    def _serve(self, listener: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self.closing.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += 1
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while not self.closing.is_set():
                for key, _ in selector.select(timeout=0.1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            a.close()
            b.close()

    def down(self) -> None:
        """Drop every connection and refuse new ones."""
        with self.lock:
            if self.listener is not None:
                # shutdown wakes the thread blocked in accept(); close alone would leave the
                # port listening until that accept returned.
                with contextlib.suppress(OSError):
                    self.listener.shutdown(socket.SHUT_RDWR)
                self.listener.close()
                self.listener = None
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets = []

    def up(self) -> None:
        """Listen on the same port again."""
        with self.lock:
            if self.listener is None:
                self.listener = socket.create_server(("127.0.0.1", self.port))
                self._serve(self.listener)

    def close(self) -> None:
        self.closing.set()
        self.down()
