"""An `add` request, checked (`add_params`), and why `add` or `remove` refuses (`Refused`).
Shared by the three kinds of TARGET (`add.py` for ssh://, `elsewhere.py` for docker:// and
local:) and `remove.py`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from forge_syncd.config.dockerhost import parse_docker_host
from forge_syncd.config.validate import NAME
from forge_syncd.control.methods import METHODS
from forge_syncd.control.protocol import BAD_PARAMS
from forge_syncd.onboard.target import (
    DockerTarget,
    LocalTarget,
    SshTarget,
    TargetError,
    parse_target,
)

KINDS = ("auto", "forge", "comfyui", "generic")
FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
MAX_ROOT = 4096


class Refused(Exception):
    """`add` or `remove` cannot go on; `code` is the control protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AddParams:
    """An `add` request, checked."""

    name: str
    target: SshTarget | DockerTarget | LocalTarget
    kind: str
    root: str | None
    fingerprint: str | None
    docker_host: str | None = None


def add_params(params: dict[str, Any]) -> AddParams:
    """Given the `add` params, return them checked. Raise Refused (`bad_params`): a
    missing or malformed name, target, kind, root or fingerprint; an unknown param."""
    known = set(METHODS["add"].params)
    unknown = sorted(set(params) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise Refused(BAD_PARAMS, f"unknown param {unknown[0]!r} (known: {names})")
    name, target = params.get("name"), params.get("target")
    if not isinstance(name, str) or not NAME.match(name):
        raise Refused(BAD_PARAMS, f"NAME {_shown(name)} must match [a-z0-9][a-z0-9_-]*")
    if not isinstance(target, str):
        raise Refused(BAD_PARAMS, "target must be a string: ssh://[user@]host[:port]")
    try:
        parsed = parse_target(target)
    except TargetError as exc:
        raise Refused(BAD_PARAMS, str(exc)) from None
    kind = params.get("kind") or "auto"
    if kind not in KINDS:
        raise Refused(BAD_PARAMS, f"kind must be one of {', '.join(KINDS)}, not {_shown(kind)}")
    root = params.get("root")
    if root is not None:
        if not isinstance(root, str) or not root.startswith("/") or len(root) > MAX_ROOT:
            raise Refused(BAD_PARAMS, f"root must be an absolute path, not {_shown(root)}")
        if not root.isprintable():
            raise Refused(BAD_PARAMS, "root holds a control character")
        root = root.rstrip("/") or "/"
    wanted = params.get("fingerprint")
    if wanted is not None and (not isinstance(wanted, str) or not FINGERPRINT.match(wanted)):
        raise Refused(
            BAD_PARAMS,
            f"fingerprint must look like SHA256:<43 base64 characters>, not {_shown(wanted)}",
        )
    docker_host = params.get("docker_host")
    _fits_target(parsed, root, wanted, docker_host)
    return AddParams(name, parsed, kind, root, wanted, docker_host)


def _fits_target(target: object, root: str | None, wanted: str | None, host: object) -> None:
    """Refuse (`bad_params`) the options that do not apply to `target`'s transport, and a
    malformed docker_host."""
    if wanted is not None and not isinstance(target, SshTarget):
        raise Refused(
            BAD_PARAMS,
            "--fingerprint applies only to ssh:// targets: a docker:// or local: target has no"
            " host key (an engine at ssh://... is checked against the daemon's known_hosts)",
        )
    if host is not None:
        if not isinstance(target, DockerTarget):
            raise Refused(BAD_PARAMS, "--docker-host applies only to docker:// targets")
        try:
            parse_docker_host(host if isinstance(host, str) else "")
        except ValueError as exc:
            raise Refused(BAD_PARAMS, f"--docker-host: {exc}") from None
    if root is not None and isinstance(target, LocalTarget):
        raise Refused(
            BAD_PARAMS, "--root does not apply to local: targets (local:/PATH is the folder)"
        )


def _shown(value: object) -> str:
    """A param as an error message shows it: its repr, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
