"""`forge-syncctl dedupe [--dry-run] [--json]`: share the identical bytes already in the
library (`library.dedupe`), and say how many files and bytes that saved."""

from __future__ import annotations

import argparse
from typing import Any

from forge_syncd.cli.commands import Command
from forge_syncd.cli.format import size
from forge_syncd.cli.parser import add_json
from forge_syncd.cli.term import Out
from forge_syncd.control.client import ControlClient


def dedupe(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    # A pass hashes every copy it shares: minutes on a large library, so no time limit.
    report = client.call("dedupe", {"dry_run": args.dry_run}, timeout=None)
    if args.json:
        out.json(report)
    else:
        show(out, report)
    return 1 if report["busy"] or report["unavailable"] else 0


def show(out: Out, report: dict[str, Any]) -> None:
    """Print what a pass did (or would do) in a few lines."""
    if report["mode"] == "off":
        out.line("library.dedupe is off: nothing shared (set auto or hardlink, then reload)")
        return
    files, saved = report["files"], size(report["bytes"])
    if report["dry_run"]:
        out.line(f"would share {files} file(s), saving {saved} ({report['mode']})")
    else:
        out.line(f"shared {files} file(s), saving {saved} ({report['mode']})")
    if report["already_files"]:
        out.line(
            f"already shared: {report['already_files']} file(s), {size(report['already_bytes'])}"
        )
    if report["left"]:
        out.line(f"left as copies: {report['left']} (bytes differ from the manifest, or gone)")
    out.line(f"saved in all (forge_sync_dedupe_saved_bytes): {size(report['saved_bytes'])}")
    if report["unavailable"]:
        out.error(
            "this library's filesystem cannot share blocks (no reflink): copies kept",
            ["XFS or btrfs can; or choose `library.dedupe: hardlink` (read-only files)"],
        )
    if report["busy"]:
        out.error(
            "skipped while a run held them: " + ", ".join(report["busy"]),
            ["run `forge-syncctl dedupe` again once they are idle"],
        )


def add_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--dry-run", action="store_true", help="only say what would be shared and saved"
    )
    add_json(command)


COMMANDS = (
    Command(
        "dedupe",
        "dedupe",
        "share identical bytes already in the library",
        "Share the identical files already in the library (same sha256 in the manifest,"
        " every copy hashed first): reflinks with `library.dedupe: auto`, read-only hard"
        " links with `hardlink`. Reports the files and bytes saved; --dry-run only says what"
        " would be. Exit 1 when the filesystem cannot share blocks or a container was busy.",
        add_arguments,
        dedupe,
    ),
)
