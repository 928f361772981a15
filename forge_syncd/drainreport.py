"""What `forge-syncctl drain` and `forge-syncd --once --drain` print for a drain report
(`drain.DrainReport.as_dict`). Apart from `drain.py` so the CLIs need not import the sync
machinery (and paramiko) to print it."""

from __future__ import annotations

from typing import Any


def report_lines(report: dict[str, Any]) -> list[str]:
    """Given a drain report (`DrainReport.as_dict`), return what the CLIs print: the verdict
    first, then each file that is not safe and why. Remote names are shown escaped
    (`display`), never as markup."""
    name = report["container"]
    if report["error"]:
        return [f"{name}: NOT safe to destroy: {report['error']}"]
    size = _gib(report["bytes"])
    lines = []
    if report["safe"]:
        lines.append(f"{name}: safe to destroy: {report['files']} files, {size} verified")
    else:
        lines.append(
            f"{name}: NOT safe to destroy: {report['unsafe_count']} files are not safe"
            f" ({report['files']} files, {size} verified)"
        )
        lines += [f"  {item['path']}: {item['reason']}" for item in report["unsafe"]]
        if report["unsafe_count"] > len(report["unsafe"]):
            lines.append(f"  ... and {report['unsafe_count'] - len(report['unsafe'])} more")
    purged = report["purged"]
    if purged is not None:
        lines.append(
            f"{name}: purge {purged['result']}: {purged['files']} files,"
            f" {_gib(purged['bytes'])} deleted from the container"
            + (f" ({purged['error']})" if purged["error"] else "")
        )
    return lines


def _gib(count: int) -> str:
    return f"{count / 1024**3:.2f} GiB"
