"""What `forge-syncctl drain` and `forge-syncd --once --drain` print for a drain report
(`drain.DrainReport.to_json`), and the exit code it means (`drain_exit_ok`): each file that
is not safe and why, what to do about each reason, then the verdict — one line of fixed
shape, easy to read and to parse:

    forge-a: safe to destroy: 41 files, 59.1 MiB verified
    forge-a: NOT safe to destroy: 3 files not safe; 40 files, 58.2 MiB verified
    forge-a: NOT safe to destroy: the container cannot be reached: ...

Apart from `drain.py` so the CLIs need not import the sync machinery (and paramiko) to
print it: the reasons are matched by their (stable) words, `safety.CopyStatus` values.
"""

from __future__ import annotations

import os

from forge_syncd.cli.format import count_size, plural, size
from forge_syncd.control.messages import DrainReportJson, UnsafeFileJson

AGAIN = "then drain again"
# A hint for each reason drain gives (`safety.CopyStatus` values); {n}: "1 file" / "3 files",
# {them}: it / them, {name}: the container, {largest}: the largest file's size, {patterns}:
# include patterns. A reason not here is the listing's own (a refused name or date).
HINTS = {
    "excluded": (
        "{n} that include/exclude do not take: if {they_matter}, add a pattern to"
        " sync.include ({patterns}) and drain again; if not, delete {them} on the box"
    ),
    "too_large": (
        "{n} over max_file_size (the largest {largest}): raise sync.max_file_size above it"
        " and drain again, or copy {them} by hand and delete {them} on the box"
    ),
    "writing": ("{n} still being written: wait until the box stops generating, " + AGAIN),
    "not_synced": (
        "{n} the final sync did not copy: see its error (forge-syncctl history {name}), " + AGAIN
    ),
    "local_copy_missing": (
        "{n} without a readable library copy: drain again (its sync fetches {them})"
    ),
    "local_copy_differs": (
        "{n} whose library copy has another size: drain again (its sync fetches {them})"
    ),
    "changed_on_remote": ("{n} changed since copied: drain again (its sync fetches {them})"),
    "bytes_differ": ("{n} whose library copy differs: forge-syncctl sync {name} --wait, " + AGAIN),
    "unhashed": (
        "{n} the container could not hash (unreadable there?): check {them} on the box, " + AGAIN
    ),
    "bytes_unconfirmed": ("{n} to be checked again: forge-syncctl sync {name} --wait, " + AGAIN),
    "not_mirrored": (
        "{n} not yet on the mirror (cleanup.require_mirror): wait until forge-syncctl status"
        " shows the mirror all copied, " + AGAIN
    ),
}
# What each reason reads as after a file's name (the JSON says the word itself).
LABELS = {
    "excluded": "excluded by include/exclude, but present",
    "too_large": "larger than max_file_size: never synced",
    "writing": "still being written (modified within settle)",
    "not_synced": "not synced",
    "local_copy_missing": "missing locally",
    "local_copy_differs": "the library copy has another size",
    "changed_on_remote": "changed on the container since it was synced",
    "bytes_differ": "the library copy's sha256 differs",
    "unhashed": "its sha256 could not be computed on the container",
    "bytes_unconfirmed": "its library copy may hold older bytes: the next sync fetches it again",
    "not_mirrored": "safe in the library, not yet on the mirror (require_mirror)",
}
REFUSED_HINT = (
    "{n} with a name or date the library cannot hold: copy {them} by hand, then delete {them}"
    " on the box"
)


def drain_exit_ok(report: DrainReportJson) -> bool:
    """Whether a drain exits 0: every file in scope has a verified copy (`safe`), and the
    purge, when one ran, did not fail."""
    purged = report["purged"]
    return report["safe"] and (purged is None or purged["result"] != "failure")


def report_lines(report: DrainReportJson) -> list[str]:
    """Given a drain report, return what the CLIs print: the files that are not safe (with
    why), a hint per reason, the verdict, then the purge's outcome. Remote names come
    escaped (`display`); the caller prints them as plain text."""
    name = report["container"]
    if report["error"]:
        return [f"{name}: NOT safe to destroy: {report['error']}"]
    lines = [
        f"  {item['path']}: {LABELS.get(item['reason'], item['reason'])}"
        for item in report["unsafe"]
    ]
    left = report["unsafe_count"] - len(report["unsafe"])
    if left > 0:
        lines.append(f"  ... and {left} more")
    released = report.get("released_count", 0)
    if released:
        lines.append(
            f"  {plural(released, 'file')} deleted from the library on purpose"
            " (on_local_delete: forget): not kept, gone with the box"
        )
    hints = hint_lines(name, report["unsafe"])
    if hints:
        lines += ["what to do:", *hints]
    verified = count_size(report["files"], report["bytes"])
    if report["safe"]:
        lines.append(f"{name}: safe to destroy: {verified} verified")
    else:
        not_safe = plural(report["unsafe_count"], "file")
        lines.append(f"{name}: NOT safe to destroy: {not_safe} not safe; {verified} verified")
    purged = report["purged"]
    if purged is not None:
        lines.append(
            f"{name}: purge {purged['result']}: {count_size(purged['files'], purged['bytes'])}"
            " deleted from the container" + (f" ({purged['error']})" if purged["error"] else "")
        )
    return lines


def hint_lines(name: str, unsafe: list[UnsafeFileJson]) -> list[str]:
    """One line for each reason among the files listed, in the order first seen."""
    by_reason: dict[str, list[UnsafeFileJson]] = {}
    for item in unsafe:
        by_reason.setdefault(item["reason"], []).append(item)
    return [f"  {hint(name, reason, items)}" for reason, items in by_reason.items()]


def hint(name: str, reason: str, items: list[UnsafeFileJson]) -> str:
    many = len(items) != 1
    largest = max((i["size"] or 0 for i in items), default=0)
    return HINTS.get(reason, REFUSED_HINT).format(
        n=plural(len(items), "file"),
        them="them" if many else "it",
        they_matter="they matter" if many else "it matters",
        name=name,
        largest=size(largest),
        patterns=patterns(items),
    )


def patterns(items: list[UnsafeFileJson]) -> str:
    """Include patterns that would take these files: "*.md", "*.safetensors"."""
    found: list[str] = []
    for item in items:
        base = os.path.basename(item["path"])
        stem, ext = os.path.splitext(base)
        pattern = f'"*{ext}"' if ext and stem else f'"{base}"'
        if pattern not in found:
            found.append(pattern)
    return "e.g. " + ", ".join(found[:4])
