"""The lines that tell how a run ended, shared by `forge-syncctl sync|cleanup --wait` and
`forge-syncd --once`: what was copied or deleted, what was left on the container and why,
what a cleanup keeps and why."""

from __future__ import annotations

from typing import Any

from forge_syncd.cli.format import count_size, duration, plural, size, spec_duration

# Why a sync left a wanted file on the container (`not_copied` reasons), and what to do.
NOT_COPIED = {
    "settling": "still being written (modified within settle): the next sync takes {it}",
    "too_large": "larger than max_file_size: raise sync.max_file_size to sync {it}",
    "mtime_in_future": "dated ahead of the container's clock: synced once two looks agree",
    "refused": "a name or date the library cannot hold (see file_skipped in the log)",
    "deferred": "changed or gone while being copied: the next sync takes {it}",
}
# Why a cleanup keeps a file (`kept` reasons).
KEPT = {
    "preserved": "preserved",
    "released": "deleted from the library on purpose",
    "not_synced": "not synced",
    "too_large": "over max_file_size",
    "writing": "still being written",
    "changed_on_remote": "changed on the container since synced",
    "bytes_unconfirmed": "copy to be checked again",
    "no_recorded_hash": "no recorded sha256",
    "local_copy_missing": "library copy missing",
    "local_copy_differs": "library copy differs",
    "not_mirrored": "not yet on the mirror",
}


def run_line(run: dict[str, Any], kinds: str = "") -> str:
    """ "forge-a: sync success, 3 files, 4.2 MiB synced in 1.2s", a cleanup's "... purged
    ...", and a failure's error in parentheses (after its kinds, when given)."""
    if run.get("dry_run"):
        return dry_run_line(run)
    verb = "purged" if run["job"] == "cleanup" else "synced"
    line = (
        f"{run['container']}: {run['job']} {run['result']},"
        f" {count_size(run['files'], run['bytes'])} {verb}"
    )
    if run.get("duration_s") is not None:
        line += f" in {duration(run['duration_s'])}"
    return line + error_text(run, kinds)


def error_text(run: dict[str, Any], kinds: str = "") -> str:
    """A failed run's error as the end of its line: " (kinds: error)", " (error)", or ""."""
    if not run.get("error"):
        return ""
    return f" ({kinds}: {run['error']})" if kinds else f" ({run['error']})"


def not_copied_lines(run: dict[str, Any]) -> list[str]:
    """One line for each reason a sync left files on the container: "  not copied: 1 file
    (2.9 MiB), larger than max_file_size: raise sync.max_file_size to sync it"."""
    lines = []
    for entry in run.get("not_copied") or []:
        files, nbytes = int(entry["files"]), int(entry["bytes"])
        what = plural(files, "file") + (f" ({size(nbytes)})" if nbytes else "")
        why = NOT_COPIED.get(entry["reason"], entry["reason"])
        why = why.replace("{it}", "it" if files == 1 else "them")
        lines.append(f"  not copied: {what}, {why}")
    return lines


def kept_text(run: dict[str, Any]) -> str:
    """ "45 files: 40 newer than 30d, 3 preserved, 2 not synced" (what a cleanup keeps)."""
    kept = run.get("kept") or []
    total = sum(int(entry["files"]) for entry in kept)
    if not total:
        return "0 files"
    parts = [f"{entry['files']} {kept_reason(run, entry['reason'])}" for entry in kept]
    return f"{plural(total, 'file')}: {', '.join(parts)}"


def kept_reason(run: dict[str, Any], reason: str) -> str:
    if reason == "too_young":
        older = run.get("older_than_s")
        return f"newer than {spec_duration(older)}" if older is not None else "too young"
    return KEPT.get(reason, reason.replace("_", " "))


def dry_run_line(run: dict[str, Any]) -> str:
    """ "forge-a: cleanup dry run: would delete 23 files, 278.6 KiB; would keep 45 files:
    40 newer than 30d, 3 preserved, 2 not synced"."""
    purge = [d for d in run.get("decisions") or [] if d["action"] == "purge"]
    line = (
        f"{run['container']}: cleanup dry run: would delete"
        f" {count_size(len(purge), sum(int(d['size']) for d in purge))}"
    )
    if run.get("kept") is not None:
        line += f"; would keep {kept_text(run)}"
    return line + error_text(run)


def decision_row(run: dict[str, Any], decision: dict[str, Any]) -> list[str]:
    """A dry run's decision as a listing row: container, action, size, path."""
    if decision["action"] == "purge":
        action = "would delete"
    else:
        action = f"keep: {kept_reason(run, decision['reason'])}"
    return [run["container"], action, size(int(decision["size"])), str(decision["path"])]
