"""The container keys that depend on `transport:` (SPEC round 3): `ssh` needs `host` (and
may have `ssh:`); `local` needs `root` (a folder of this machine) and has neither `host`
nor `ssh:`; `docker` may have `container:` and `docker:`, and neither `host` nor `ssh:`;
`container:` and `docker:` apply to `docker` only.

Checked on the raw mapping, before its values are, so a key that does not apply is named as
such (with its file and line), not reported as unknown or missing.
"""

from __future__ import annotations

from collections.abc import Callable

from forge_syncd.config.yamlnodes import LineDict

# Keys that apply only to `ssh`, and why `local` has none of them.
SSH_ONLY = ("host", "ssh")
NOT_FOR_LOCAL = "does not apply to transport 'local' (its files are in root, on this machine)"
NOT_FOR_DOCKER = "does not apply to transport 'docker' (the engine is docker.host)"
DOCKER_ONLY = ("container", "docker")

Add = Callable[[int, str, str], None]


def transport_issues(value: LineDict, path: str, add: Add) -> None:
    """Given a container's raw mapping, report through `add(line, key_path, message)` the
    keys its transport requires and lacks, and those it has that do not apply."""
    transport = value.get("transport", "ssh")
    if transport != "docker":
        for name in DOCKER_ONLY:
            if name in value:
                add(
                    value.key_lines[name],
                    f"{path}.{name}",
                    f"applies only to transport 'docker' (this one is {transport!r})",
                )
    if transport == "docker":
        for name in SSH_ONLY:
            if name in value:
                add(value.key_lines[name], f"{path}.{name}", NOT_FOR_DOCKER)
    elif transport == "local":
        for name in SSH_ONLY:
            if name in value:
                add(value.key_lines[name], f"{path}.{name}", NOT_FOR_LOCAL)
        if "root" not in value:
            add(value.line, f"{path}.root", "required for transport 'local' (the source folder)")
    elif transport == "ssh" and "host" not in value:
        add(value.line, f"{path}.host", "required key is missing")
