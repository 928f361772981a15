"""`forge-syncctl find [...] [--json]`: search the catalog, one row a file, newest first,
through the daemon or, when it is not running, in the catalog the config names."""

from __future__ import annotations

import argparse
from typing import Any

from forge_syncd.cli import connect
from forge_syncd.cli.commands import Command
from forge_syncd.cli.format import local_time
from forge_syncd.cli.parser import add_json, add_limit
from forge_syncd.cli.table import Cell, Column, cut_to, natural_width, print_table, render
from forge_syncd.cli.term import Out
from forge_syncd.control.client import CallFailed, ControlClient
from forge_syncd.text import printable

COLUMNS = [
    Column("MODIFIED"),
    Column("CONTAINER"),
    Column("PATH"),
    Column("MODEL"),
    Column("SEED", right=True),
    Column("PROMPT", cut=True),
]
SEARCHED = ("prompt", "model", "seed", "lora", "container", "since")


def params_of(args: argparse.Namespace) -> dict[str, Any]:
    params = {key: getattr(args, key) for key in SEARCHED if getattr(args, key) is not None}
    params["limit"] = args.limit
    return params


def find(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    """No catalog configured is a failed operation (exit 1), not a usage error."""
    try:
        result = client.call("find", params_of(args))
    except CallFailed as exc:
        if exc.code != "not_found":
            raise
        out.error(exc.message)
        return 1
    return show(out, result, args.json)


def offline(args: argparse.Namespace, out: Out, why: str) -> int:
    """No daemon: search the config's catalog read-only (say so on stderr); exit 0, 2 for
    bad options, 3 if the catalog cannot be read either."""
    from forge_syncd.cli.offline import StateUnreadable, catalog_sink, find_rows, not_running

    config = connect.config_path(args)
    try:
        rows, source = find_rows(catalog_sink(config), params_of(args))
    except ValueError as exc:
        out.error(str(exc))
        return 2
    except StateUnreadable as exc:
        out.error(why, [f"and the catalog cannot be searched without it: {exc}"])
        return 3
    out.note(f"forge-syncd is not running ({not_running(why)}); from {source}")
    return show(out, {"files": rows, "catalog": None, "truncated": False}, args.json)


def show(out: Out, result: dict[str, Any], as_json: bool) -> int:
    if as_json:
        out.json(result)  # a path that is not UTF-8: `\udcXX` escapes
        return 0
    files = result["files"]
    if not files:
        out.line("no matching files")
        return 0
    rows = [row(out, found) for found in files]
    if out.width is not None and natural_width(COLUMNS, rows) > out.width:
        # A terminal too narrow for the prompts: each goes under its file, cut to fit.
        header, *lines = render(out, COLUMNS[:-1], [r[:-1] for r in rows])
        out.line(header)
        for line, cells in zip(lines, rows, strict=True):
            out.line(line)
            prompt = cells[-1].text if isinstance(cells[-1], Cell) else cells[-1]
            if prompt:
                out.line(out.paint(cut_to("    " + printable(prompt), out.width), "dim"))
    else:
        print_table(out, COLUMNS, rows)
    if result.get("truncated"):
        out.line(f"(only the newest {len(files)} fit in one answer: narrow the search)")
    return 0


def row(out: Out, found: dict[str, Any]) -> list[Cell | str]:
    """Given a `find` row: its mtime (local zone), container, path (an earlier version
    marked), model, seed and prompt (on one line)."""
    path = str(found["path"]) + (" (earlier version)" if found.get("versioned_at") else "")
    return [
        local_time(str(found["mtime"]), out.utc, seconds=True),
        Cell(str(found["container"])),
        Cell(path),
        Cell(str(found.get("model") or "-")),
        "-" if found.get("seed") is None else str(found["seed"]),
        Cell(" ".join(str(found.get("prompt") or "").split())),
    ]


def add_arguments(find: argparse.ArgumentParser) -> None:
    find.add_argument("--prompt", metavar="TEXT", help="every word of TEXT is in the prompt")
    find.add_argument("--model", metavar="M", help="the model's name contains M (any case)")
    find.add_argument("--seed", type=int, metavar="N", help="exactly this seed")
    find.add_argument("--lora", metavar="L", help="a LoRA's name contains L (any case)")
    find.add_argument("--container", metavar="NAME", help="only this container's files")
    find.add_argument("--since", metavar="DUR", help="modified in the last DUR (7d, 12h, 600)")
    add_limit(find, 50, "files")
    add_json(find)


COMMANDS = (
    Command(
        "find",
        "find",
        "search the media catalog, newest first",
        "Search the catalog (a `catalog` or `postgres` sink must be configured): one line a"
        " file, newest first. Every option given must match. Works without the daemon: then"
        " it reads the catalog the config names.",
        add_arguments,
        find,
        offline,
    ),
)
