"""Checks of what the config names on this machine, beyond its schema: the containers'
identity files (readable and private, as OpenSSH wants them) and `library.group`."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

from forge_syncd.config.model import SshConfig
from forge_syncd.config.validate import Checked, Issues


def check_library_group(group: Checked | None, issues: Issues) -> None:
    """`library.group` (its checked value, if set) must name a group of this system."""
    if group is None or group.value is None:
        return
    try:
        grp.getgrnam(group.value)
    except KeyError:
        issues.add(
            group.line,
            "library.group",
            f"no group {group.value!r} on this system (create it: groupadd {group.value})",
        )


def check_identity(
    ssh: SshConfig,
    merged: dict[str, Checked],
    own_ssh: dict[str, Checked],
    defaults_ssh: dict[str, Checked],
    where: str,
    line: int,
    issues: Issues,
    defaults_issues: Issues,
) -> None:
    """Given a container's ssh section (`merged`: its own `ssh:` over the `defaults`' one)
    and its own `ssh:` and `defaults:` ssh sections, check that the identity file is
    readable and private; report it where it was set, once (a problem of `defaults` goes
    to the main file's `defaults_issues`)."""
    path = ssh.identity_file
    problem = identity_file_problem(path)
    if problem is None:
        return
    into = issues
    if "identity_file" in own_ssh:
        at = (merged["identity_file"].line, f"{where}.ssh.identity_file")
    elif "identity_file" in defaults_ssh:
        at = (merged["identity_file"].line, "defaults.ssh.identity_file")
        into = defaults_issues
    else:
        at = (line, f"{where}.ssh.identity_file")
    if not any((i.line, i.key_path) == at for i in into):
        into.add(at[0], at[1], problem)


# What OpenSSH refuses as an "UNPROTECTED PRIVATE KEY FILE", except that the group may read
# it: the key is usually root's, shared with the daemon's group (0640).
LOOSE_KEY_BITS: tuple[tuple[int, str], ...] = (
    (stat.S_IROTH, "others can read it"),
    (stat.S_IWOTH, "others can write it"),
    (stat.S_IWGRP, "its group can write it"),
)


def identity_file_problem(path: Path) -> str | None:
    """Given an identity file's path, return why it cannot be used — missing, unreadable,
    or readable or writable by others or writable by its group — or None when it is fine."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else None
    except OSError:
        mode = None
    if mode is None or not os.access(path, os.R_OK):
        return f"identity file {path} does not exist or is not readable"
    loose = [why for bit, why in LOOSE_KEY_BITS if mode & bit]
    if not loose:
        return None
    return (
        f"identity file {path} has mode {mode:04o} ({', '.join(loose)}): unprotected private"
        " key file, refused as OpenSSH does; chmod 600 (or 640 to share it with a group)"
    )
