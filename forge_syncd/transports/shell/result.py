"""What running one of the shell scripts on a box gives back, whatever carries it (an SSH
exec channel, a Docker exec stream, a local process)."""

from __future__ import annotations

from dataclasses import dataclass

from forge_syncd.remote.errors import RemoteError


@dataclass(frozen=True)
class ScriptResult:
    """A finished script: its exit status and what it printed (bounded by the caller)."""

    status: int
    stdout: bytes
    stderr: bytes


class OutputTooLarge(RemoteError):
    """A script printed more than its caller allows."""
