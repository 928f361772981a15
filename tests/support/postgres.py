"""A throwaway PostgreSQL server on 127.0.0.1 for tests, from Debian's `postgresql` package.

`PostgresServer(...).start()` runs `initdb` in a scratch folder of its own (under the system
temp dir: pytest's own is closed to other users), starts the server with `pg_ctl` on a free
port with its Unix socket in that folder, and waits until it accepts connections. `stop()`
shuts it down (`pg_ctl stop -m fast`) keeping its data, so `start()` brings the same
databases back (a test of a database that goes down); `destroy()` stops it and removes the
folder. As root, every server program runs as the `postgres` OS user (initdb refuses root).

Authentication: trust on the Unix socket (the `postgres` superuser, for setting up), a
password (scram-sha-256) on TCP, so a DSN handed to the code under test is a real one.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.support.sshd import free_port

SUPERUSER = "postgres"
OS_USER = "postgres"  # who runs the server when the tests run as root


def find_bindir() -> Path | None:
    """Return the folder holding `initdb` and `pg_ctl`: from PATH, else Debian's
    /usr/lib/postgresql/<version>/bin (the newest version); None if there is none."""
    found = shutil.which("initdb")
    if found is not None:
        bindir = Path(os.path.realpath(found)).parent
        if (bindir / "pg_ctl").exists():
            return bindir
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    versions.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)])
    return versions[-1] if versions else None


def served() -> Iterator[PostgresServer]:
    """Yield a started server and destroy it after (a module-scoped fixture's body); skip
    the test, saying why, where none can start here."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.destroy()


def missing_reason() -> str | None:
    """Return why a server cannot be started here, or None if it can."""
    if find_bindir() is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under "
            "/usr/lib/postgresql/*/bin: apt-get install postgresql (scripts/bootstrap.sh does)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no {OS_USER!r} OS user to run PostgreSQL as"
    return None


@dataclass
class PostgresServer:
    """One PostgreSQL server. `password` is that of every role `create_database` makes."""

    password: str = "forge-test-password"
    workdir: Path | None = None
    port: int = 0
    bindir: Path | None = None

    @property
    def data(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "data"

    @property
    def log_file(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "server.log"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a server program (as `postgres` when we are root); raise with its output and
        the server log if it fails."""
        assert self.bindir is not None and self.workdir is not None
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            as_user = {"user": OS_USER, "group": pwd.getpwnam(OS_USER).pw_gid, "extra_groups": []}
        result = subprocess.run(
            [str(self.bindir / argv[0]), *argv[1:]],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
            check=False,
            **as_user,
        )
        if result.returncode != 0:
            log = self.log_file.read_text()[-3000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{argv[0]} failed ({result.returncode}): {result.stdout}{result.stderr}\n{log}"
            )
        return result

    def start(self) -> PostgresServer:
        """Create the cluster (first time) and start the server; return self once it
        accepts connections."""
        if self.workdir is None:
            self.bindir = find_bindir()
            if self.bindir is None:
                raise RuntimeError(missing_reason())
            self.workdir = Path(tempfile.mkdtemp(prefix="forge-syncd-pg-"))
            if os.geteuid() == 0:
                shutil.chown(self.workdir, OS_USER, pwd.getpwnam(OS_USER).pw_gid)
            self._run(
                "initdb",
                "--pgdata", str(self.data),
                "--username", SUPERUSER,
                "--encoding", "UTF8",
                "--no-locale",
                "--auth-local", "trust",
                "--auth-host", "scram-sha-256",
                "--no-sync",
            )  # fmt: skip
        restart = self.port != 0  # the same port again, so DSNs handed out still hold
        for attempt in range(5):
            self.port = self.port or free_port()
            try:
                self._pg_ctl_start()
                return self
            except RuntimeError:
                if restart or attempt == 4:
                    raise
                self.port = 0  # taken between free_port() and the server's bind: another
        return self

    def _pg_ctl_start(self) -> None:
        settings = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=50 -c shared_buffers=16MB"
        )
        self._run(
            "pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.log_file),
            "--wait", "--timeout", "60", "-o", settings,
        )  # fmt: skip

    def stop(self) -> None:
        """Shut the server down (data kept; `start()` brings it back on the same port)."""
        if self.workdir is not None and (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "--pgdata", str(self.data), "-m", "fast", "--wait")

    def destroy(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self.stop()
        finally:
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None

    def superuser(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """Return an autocommit connection as the superuser, through the Unix socket."""
        return psycopg.connect(
            host=str(self.workdir), port=self.port, user=SUPERUSER, dbname=dbname, autocommit=True
        )

    def create_database(self, name: str, owner: str = "forge") -> str:
        """Create role `owner` (with the password, once) and database `name` owned by it;
        return the DSN a client uses (TCP on 127.0.0.1, password auth)."""
        with self.superuser() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,))
            if exists.fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(owner), sql.Literal(self.password)
                    )
                )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
        return self.dsn(name, owner)

    def dsn(self, dbname: str, user: str = "forge") -> str:
        return f"postgresql://{user}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def load_dump(self, dbname: str, dump: Path, owner: str = "forge") -> None:
        """Run a plain-SQL dump (`pg_dump --no-owner`) into database `dbname` with `psql`,
        connected as `owner` (so what it creates is the owner's, as a daemon's would be);
        raise if any statement fails."""
        assert self.bindir is not None
        subprocess.run(
            [
                str(self.bindir / "psql"), "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1",
                "--file", str(dump), self.dsn(dbname, owner),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )  # fmt: skip
