"""The control methods: the one list (SPEC "Control protocol").

A method is added here, its handler in the daemon's `ControlApi` (which refuses to start
unless its handlers are exactly these) and its command in a module of
`forge_syncd/cli/commands/` (which names the method each command calls; `--help` lists the
commands in the order of this list); `tests/unit/test_control_methods.py` fails until the
three agree. Pure and light: forge-syncctl's fast path imports it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple


class Method(NamedTuple):
    """One control method: its name, the params it reads, whether it answers with a
    stream of events after its result (`watch`), and the control protocol version that
    brought it. (A NamedTuple: forge-syncctl does not load `dataclasses`.)"""

    name: str
    params: tuple[str, ...] = ()
    streams: bool = False
    since: int = 1


LIST = (
    Method("hello"),
    Method("status"),
    Method("sync", ("containers", "wait")),
    Method("cleanup", ("containers", "wait", "dry_run", "force")),
    Method("watch", ("containers",), streams=True),
    Method("pause", ("container",)),
    Method("resume", ("container",)),
    Method("cancel", ("container",)),
    Method("reload"),
    Method("history", ("container", "limit")),
    Method("drain", ("container", "purge")),
    Method("find", ("prompt", "model", "seed", "lora", "container", "since", "limit")),
    Method("add", ("name", "target", "kind", "root", "fingerprint", "docker_host")),
    Method("remove", ("name", "force")),
    Method("dedupe", ("dry_run",)),
)
METHODS: dict[str, Method] = {method.name: method for method in LIST}


def check_handlers(names: Collection[str], where: str) -> None:
    """Raise RuntimeError unless `names` (the methods `where` handles) are exactly METHODS."""
    missing = sorted(set(METHODS) - set(names))
    extra = sorted(set(names) - set(METHODS))
    if missing or extra:
        raise RuntimeError(
            f"{where} does not handle the control methods of control/methods.py:"
            f" missing {missing}, not listed there {extra}"
        )
