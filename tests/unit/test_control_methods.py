"""The control methods have one list (`control/methods.py`): the protocol accepts exactly
those, the daemon's API handles exactly those (streaming exactly where the list says), and
forge-syncctl's commands (each declared by its module in `cli/commands/`) call them, with
params the list names. A method added in one place and not the others fails here."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from forge_syncd.catalog.query import FIND_PARAMS
from forge_syncd.cli import app, commands
from forge_syncd.cli.commands import Command, in_list_order, parser
from forge_syncd.control import protocol
from forge_syncd.control.methods import LIST, METHODS, check_handlers
from forge_syncd.service.api import ControlApi
from tests.support.fake_daemon import REFUSAL, FakeDaemon

# One command line per forge-syncctl command, with every option that sends a param.
EXAMPLES = {
    "status": ["status"],
    "sync": ["sync", "forge-a", "--wait", "--json"],
    "cleanup": ["cleanup", "forge-a", "--dry-run", "--wait", "--force", "--json"],
    "watch": ["watch", "forge-a", "--json"],
    "pause": ["pause", "forge-a"],
    "resume": ["resume", "forge-a"],
    "cancel": ["cancel", "forge-a"],
    "reload": ["reload"],
    "history": ["history", "forge-a", "--limit", "5"],
    "drain": ["drain", "forge-a", "--purge", "--json"],
    "find": [
        *("find", "--prompt", "duck", "--model", "sdxl", "--seed", "7", "--lora", "detail"),
        *("--container", "forge-a", "--since", "7d", "--limit", "5"),
    ],
    "add": [
        *("add", "forge-b", "ssh://root@127.0.0.1:2222", "--kind", "forge"),
        *("--root", "/workspace/out", "--fingerprint", "SHA256:abc", "--yes"),
    ],
    "remove": ["remove", "forge-b", "--force"],
    "dedupe": ["dedupe", "--dry-run"],
}


def parsed_commands() -> set[str]:
    """The commands forge-syncctl's parser knows."""
    subparsers = parser()._subparsers
    assert subparsers is not None
    return {name for action in subparsers._group_actions for name in action.choices or ()}


def test_server_protocol_and_cli_agree() -> None:
    """The list, the protocol's names, the API's handlers and the CLI's commands name the
    same methods; a method streams (`watch`) exactly when its handler returns an iterator
    (the server streams what the list says); each CLI command declares the method it calls."""
    assert len(METHODS) == len(LIST), "a method listed twice"
    assert set(METHODS) == protocol.METHODS
    assert all(method.since <= protocol.PROTOCOL_VERSION for method in LIST)
    api = ControlApi(SimpleNamespace())  # type: ignore[arg-type]
    assert set(api.methods) == set(METHODS)
    for name, handler in api.methods.items():
        returns = typing.get_origin(typing.get_type_hints(handler)["return"])
        assert (returns is Iterator) == METHODS[name].streams, name
    assert parsed_commands() == set(commands.every()) == set(EXAMPLES)
    declared = {command.method for command in commands.every().values()}
    assert declared | {"hello"} == set(METHODS)  # `hello`: every command greets with it


def test_every_module_of_cli_commands_declares_commands() -> None:
    """The registry is the folder: each module in `cli/commands/` declares at least one
    command (a module that declares none would be imported for nothing), and `--help` lists
    the commands in the order of the list of methods."""
    from importlib import import_module

    for module in commands.modules():
        declared = import_module(f"forge_syncd.cli.commands.{module}").COMMANDS
        assert declared and all(isinstance(each, Command) for each in declared), module
    order = [method.name for method in LIST if method.name in commands.every()]
    assert [each.method for each in commands.every().values()] == order


def test_a_command_calling_a_method_not_in_the_list_is_refused() -> None:
    """A command module that names a method control/methods.py does not list stops
    forge-syncctl from building its parser, naming the command and the method; so does a
    command name declared twice."""
    status = commands.every()["status"]
    stray = status._replace(name="frobnicate", method="frobnicate")
    with pytest.raises(RuntimeError, match=r"frobnicate calls 'frobnicate', which is not a"):
        in_list_order([status, stray])
    with pytest.raises(RuntimeError, match=r"forge-syncctl status is declared twice"):
        in_list_order([status, status])


def test_the_validators_accept_the_params_listed() -> None:
    """`find`, `add` and `remove` refuse an unknown param: what they know is the list's."""
    from forge_syncd.onboard.remove import remove_box
    from forge_syncd.onboard.request import Refused, add_params

    assert set(METHODS["find"].params) == FIND_PARAMS
    with pytest.raises(Refused) as added:
        add_params({"nope": 1})
    assert added.value.message.endswith(f"(known: {', '.join(sorted(METHODS['add'].params))})")
    with pytest.raises(Refused) as removed:
        remove_box(SimpleNamespace(), {"nope": 1})  # type: ignore[arg-type]
    assert removed.value.message.endswith(f"(known: {', '.join(sorted(METHODS['remove'].params))})")


def test_a_handler_set_that_differs_from_the_list_is_refused() -> None:
    """The daemon's API checks its handlers against the list when it is made: a method
    missing, or one the list does not have, is named."""
    check_handlers(set(METHODS), "api")
    with pytest.raises(RuntimeError, match=r"missing \['status'\], not listed there \['nope'\]"):
        check_handlers((set(METHODS) - {"status"}) | {"nope"}, "api")


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_each_command_calls_its_method_with_listed_params(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run against a daemon on a real socket, each command greets it with `hello`, then
    calls the method it declares; every param any request carries is one the list names."""
    path = tmp_path / "d.sock"
    daemon = FakeDaemon(path, {"protocol": protocol.PROTOCOL_VERSION, "version": "0.1.0"})
    try:
        code = app.main(["--socket", str(path), *EXAMPLES[command]])
    finally:
        daemon.close()
    assert code == 1 and REFUSAL in capsys.readouterr().err  # it got to its call
    sent = daemon.sent()
    assert [r["method"] for r in sent[:2]] == ["hello", commands.every()[command].method]
    for request in sent:
        listed = METHODS[request["method"]].params
        assert set(request["params"]) <= set(listed), (request, listed)
