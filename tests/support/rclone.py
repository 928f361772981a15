"""rclone for tests: a config with a local-folder remote and an SFTP remote on the test sshd,
and a remote-control daemon (`rclone rcd`) started and stopped by PID.

Debian's `rclone` (1.60 on bookworm). `write_config(path, nas_root=..., sshd=...)` writes an
rclone config file (passed to every command with `--config`, never the user's own) with:
- `local`: the local filesystem (`type = local`, paths absolute);
- `nas`: an `alias` of the folder `nas_root`, so `nas:forge-media` is `nas_root/forge-media`
  (the form the mirror sink's `remote:` takes);
- `box`: SFTP to the test sshd (tests/support/sshd.py) with its client key and its own
  known_hosts file (host key checked), paths absolute; `sftpnas`: an alias of `sftp_root` on
  it. rclone hashes over SFTP by running `md5sum`/`sha1sum` on the server: MD5 and SHA-1
  only (no SHA-256 in 1.60); the local backend hashes SHA-256 too.

`Rclone(config).run(...)`, `.lsjson(...)`, `.hashsum(...)` run the CLI; `RcloneDaemon(config)
.start()` runs `rclone rcd --rc-addr 127.0.0.1:PORT --rc-no-auth` and waits until it answers;
`.call(method, **params)` posts to its API (`operations/copyfile`, `core/stats`...);
`.stop()` ends it by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.sshd import SshdServer, free_port

RCLONE = shutil.which("rclone") or "/usr/bin/rclone"


def missing_reason() -> str | None:
    """Return why rclone cannot run here, or None."""
    if shutil.which("rclone") is None:
        return "rclone not found: apt-get install rclone (scripts/bootstrap.sh does)"
    return None


def write_config(
    path: Path,
    nas_root: Path | None = None,
    sshd: SshdServer | None = None,
    sftp_root: str | None = None,
) -> Path:
    """Write an rclone config at `path` with the remotes above (`nas` when `nas_root` is
    given, `box` when `sshd` is, `sftpnas` when both `sshd` and `sftp_root` are); return
    `path`."""
    sections: dict[str, dict[str, str]] = {"local": {"type": "local"}}
    if nas_root is not None:
        sections["nas"] = {"type": "alias", "remote": str(nas_root)}
    if sshd is not None:
        sections["box"] = {
            "type": "sftp",
            "host": "127.0.0.1",
            "port": str(sshd.port),
            "user": sshd.user,
            "key_file": str(sshd.client_key),
            "known_hosts_file": str(sshd.known_hosts),
            "shell_type": "unix",
            "md5sum_command": "md5sum",
            "sha1sum_command": "sha1sum",
        }
        if sftp_root is not None:
            sections["sftpnas"] = {"type": "alias", "remote": f"box:{sftp_root}"}
    lines = []
    for name, options in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {value}" for key, value in options.items()]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


@dataclass
class Rclone:
    """The rclone CLI with one config file."""

    config: Path

    def run(
        self, *args: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `rclone --config CONFIG args...`; return it (output captured as text). Raise
        CalledProcessError on a non-zero exit when `check`."""
        return subprocess.run(
            [RCLONE, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def copyto(self, source: Path | str, dest: str) -> None:
        """Copy one file to `remote:path` (`rclone copyto`, checksum verified by rclone)."""
        self.run("copyto", str(source), dest)

    def lsjson(self, remote: str, hashes: bool = True) -> list[dict[str, Any]]:
        """Return `rclone lsjson -R` of `remote` (with `--hash` when `hashes`)."""
        args = ["lsjson", "-R", "--files-only", remote]
        if hashes:
            args.insert(1, "--hash")
        result: list[dict[str, Any]] = json.loads(self.run(*args).stdout)
        return result

    def hashsum(self, kind: str, remote: str) -> dict[str, str]:
        """Return {path: digest} from `rclone hashsum KIND remote`. Raise CalledProcessError
        where the remote cannot make that hash."""
        digests = {}
        for line in self.run("hashsum", kind, remote).stdout.splitlines():
            digest, _, name = line.partition("  ")
            digests[name] = digest
        return digests


@dataclass
class RcloneDaemon:
    """One `rclone rcd` on 127.0.0.1 without auth, with one config file."""

    config: Path
    log_file: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 20.0) -> RcloneDaemon:
        """Start it on a free port and wait until `core/version` answers; return self. Raise
        RuntimeError (with its log's tail) if it exits or does not answer in `timeout` s."""
        self.port = free_port()
        log = self.log_file or self.config.with_name("rcd.log")
        with open(log, "ab") as handle:
            self.process = subprocess.Popen(
                [
                    *(RCLONE, "rcd", "--config", str(self.config), "--rc-no-auth"),
                    *(f"--rc-addr=127.0.0.1:{self.port}", "-v"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                self.call("core/version", _timeout=1)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        self.stop()
        tail = " | ".join(log.read_text(errors="replace").splitlines()[-5:])
        raise RuntimeError(f"rclone rcd did not answer: {tail}")

    def call(self, method: str, _timeout: float = 120.0, **params: Any) -> dict[str, Any]:
        """POST `params` as JSON to `method`; return the JSON answer. Raise RuntimeError with
        rclone's error text on an HTTP error."""
        request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
            self.url + method,
            data=json.dumps(params).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=_timeout) as response:  # noqa: S310
                result: dict[str, Any] = json.loads(response.read() or b"{}")
                return result
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"rclone rc {method}: {exc.code} {exc.read()[:500]!r}") from exc

    def stop(self) -> None:
        """End it by PID (SIGTERM, SIGKILL after 10 s); idempotent."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def features(cli: Rclone, remote: str) -> dict[str, Any]:
    """Return `rclone backend features remote:` (name, hashes, optional features)."""
    result: dict[str, Any] = json.loads(cli.run("backend", "features", remote).stdout)
    return result


@dataclass
class Remotes:
    """A config with `nas` (alias of `nas_root`) and `box`/`sftpnas` (the test sshd, alias of
    `sftp_root` on it), and the CLI using it."""

    cli: Rclone
    nas_root: Path
    sftp_root: Path


def make_remotes(workdir: Path, sshd: SshdServer) -> Remotes:
    """Given a scratch folder and a running sshd, make the two roots and the config there."""
    nas_root, sftp_root = workdir / "nas", workdir / "sftp-nas"
    nas_root.mkdir(parents=True)
    sftp_root.mkdir(parents=True)
    config = write_config(workdir / "rclone.conf", nas_root, sshd, str(sftp_root))
    return Remotes(Rclone(config), nas_root, sftp_root)
