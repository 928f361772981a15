"""The pure side of the notification sinks: what the events add up to, and what to say.

A run's landed files are summed in a `RunTotals` dict (JSON in the sink's state: counts by
kind of media, bytes, the first and last mtime, files that replaced an earlier version, the
first image small enough to attach); runs waiting for `min_interval` are merged per
container into a landed draft; `landed_notice` turns a draft into text. A container's health
is a count of consecutive failed syncs: `health_step` says when that becomes "failing" and
when a success after it is "recovered" — once each, never once per retry.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from forge_syncd.cli.format import count_size, relative, size
from forge_syncd.events.sinks.notify.render import (
    NAME_MAX,
    TITLE_MAX,
    ImageRef,
    Notice,
    clean,
    clip,
    one_line,
)
from forge_syncd.text import plural

KINDS = ("landed", "failing", "recovered", "at_risk", "drained")
IMAGE_EXTENSIONS = frozenset(
    {"png", "apng", "jpg", "jpeg", "jfif", "webp", "gif", "bmp", "tif", "tiff", "avif", "heic"}
    | {"heif", "jxl"}
)
VIDEO_EXTENSIONS = frozenset(("mp4", "m4v", "mov", "webm", "mkv", "avi"))
# Runs the sink never announces as new: a backfill catalogues files already in the library.
QUIET_RUNS = frozenset({"backfill"})
CONTAINERS_LISTED = 10
RunTotals = dict[str, Any]


def media_kind(path: str) -> str:
    """Given a file's path, return "images", "videos" or "others" by its extension."""
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if extension in IMAGE_EXTENSIONS:
        return "images"
    if extension in VIDEO_EXTENSIONS:
        return "videos"
    return "others"


def epoch(stamp: Any) -> float | None:
    """Given an ISO 8601 time from an event, return it as seconds since the epoch, or None
    when it is not one."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp[:64]).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def new_run() -> RunTotals:
    return {
        "files": 0,
        "bytes": 0,
        "images": 0,
        "videos": 0,
        "others": 0,
        "versioned": 0,
        "runs": 1,
        "first_mtime": None,
        "last_mtime": None,
        "image": None,
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def add_file(totals: RunTotals, event: dict[str, Any], attach_max: int) -> None:
    """Add a `file_synced` event to a run's totals; remember it as the image to attach if
    it is the first image of at most `attach_max` bytes."""
    path = str(event.get("path") or "")
    nbytes = _int(event.get("size"))
    kind = media_kind(path)
    totals["files"] += 1
    totals["bytes"] += nbytes
    totals[kind] += 1
    mtime = epoch(event.get("mtime"))
    if mtime is not None:
        first, last = totals["first_mtime"], totals["last_mtime"]
        totals["first_mtime"] = mtime if first is None else min(first, mtime)
        totals["last_mtime"] = mtime if last is None else max(last, mtime)
    if kind == "images" and totals["image"] is None and 0 < nbytes <= attach_max:
        local = event.get("local_path_b64")
        if not isinstance(local, str):
            local = base64.b64encode(str(event.get("local_path") or "").encode()).decode()
        totals["image"] = {"path": path[:4096], "local_b64": local, "size": nbytes}


def merge(into: RunTotals, more: RunTotals) -> RunTotals:
    """Return the totals of two sets of runs together (the earlier image kept)."""
    merged = {key: into[key] + more[key] for key in ("files", "bytes", "images", "videos")}
    merged |= {key: into[key] + more[key] for key in ("others", "versioned", "runs")}
    firsts = [t for t in (into["first_mtime"], more["first_mtime"]) if t is not None]
    lasts = [t for t in (into["last_mtime"], more["last_mtime"]) if t is not None]
    merged["first_mtime"] = min(firsts) if firsts else None
    merged["last_mtime"] = max(lasts) if lasts else None
    merged["image"] = into["image"] or more["image"]
    return merged


def what_landed(totals: RunTotals, span: bool = True) -> str:
    """Return "12 new images, 2 videos, 31.0 MiB, 4 min of output" for run totals (the span
    from the first file's mtime to the last's, when there is one)."""
    parts = []
    media = totals["images"] + totals["videos"]
    if totals["images"]:
        parts.append(plural(totals["images"], "new image"))
    if totals["videos"]:
        parts.append(plural(totals["videos"], "video" if totals["images"] else "new video"))
    if totals["others"]:
        parts.append(plural(totals["others"], "other file" if media else "new file"))
    parts.append(size(totals["bytes"]))
    first, last = totals["first_mtime"], totals["last_mtime"]
    if span and first is not None and last is not None and last - first >= 1:
        parts.append(f"{relative(last - first)} of output")
    return ", ".join(parts)


def image_of(draft: dict[str, RunTotals]) -> ImageRef | None:
    """Return the image to attach for a landed draft: the first container's first image."""
    for totals in draft.values():
        image = totals.get("image")
        if isinstance(image, dict):
            try:
                local = base64.b64decode(str(image["local_b64"]), validate=True)
            except (ValueError, KeyError):
                continue
            return ImageRef(str(image["path"]), local, _int(image.get("size")))
    return None


def landed_notice(
    draft: dict[str, RunTotals], key: str, link: str | None, prompt: str | None
) -> Notice:
    """Given a landed draft (container name -> its runs' totals, in the order they came),
    return the notice: one container says its totals; several say the sum, then one line
    each (at most CONTAINERS_LISTED). `prompt` is the attached image's prompt, if read."""
    names = list(draft)
    total = draft[names[0]]
    for name in names[1:]:
        total = merge(total, draft[name])
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    details = []
    if len(names) > 1:
        details += [f"{n}: {what_landed(draft[n], span=False)}" for n in names[:CONTAINERS_LISTED]]
        if len(names) > CONTAINERS_LISTED:
            details.append(f"and {plural(len(names) - CONTAINERS_LISTED, 'more container')}")
    if total["runs"] > 1:
        details.append(f"in {total['runs']} syncs")
    if total["versioned"]:
        details.append(
            f"{plural(total['versioned'], 'file')} replaced an earlier one (kept in .versions)"
        )
    image = image_of(draft)
    if image is not None:
        details.append(f"first: {clean(image.path, NAME_MAX)}")
        if prompt:
            details.append(f"prompt: {one_line(prompt)}")
    return Notice(
        "landed", key, clip(shown, TITLE_MAX), what_landed(total), tuple(details), link, image
    )


def health_step(
    failures: int, failing_since: str | None, result: str, ts: str, failing_after: int
) -> tuple[int, str | None, str | None]:
    """Given a container's consecutive failed syncs, since when it has been called failing
    (None: it is not), a sync's result and time, and how many failures make "failing",
    return the new (failures, failing_since, transition) where transition is "failing",
    "recovered" or None. A cancelled run changes nothing."""
    if result == "failure":
        failures += 1
        if failing_since is None and failures >= failing_after:
            return failures, ts, "failing"
        return failures, failing_since, None
    if result == "success":
        return 0, None, "recovered" if failing_since is not None else None
    return failures, failing_since, None


def failing_notice(
    container: str, failures: int, error: str | None, key: str, link: str | None
) -> Notice:
    details = (f"error: {clean(error)}",) if error else ()
    headline = f"sync failing: {plural(failures, 'failed run')} in a row"
    return Notice("failing", key, container, headline, details, link)


def recovered_notice(
    container: str, failures: int, failing_for_s: float | None, key: str, link: str | None
) -> Notice:
    headline = f"recovered: syncing again after {plural(failures, 'failed run')}"
    details = (f"failing for {relative(failing_for_s)}",) if failing_for_s else ()
    return Notice("recovered", key, container, headline, details, link)


def at_risk_notice(
    container: str, files: int, nbytes: int, oldest_s: float, key: str, link: str | None
) -> Notice:
    headline = (
        f"{count_size(files, nbytes)} only on the container, the oldest {relative(oldest_s)} old"
    )
    details = ("not yet copied: if the container goes, they go with it",)
    return Notice("at_risk", key, container, headline, details, link)


def drained_notice(event: dict[str, Any], key: str, link: str | None) -> Notice:
    """Given a `drain_complete` event, return the verdict as the CLI's drain says it."""
    container = clean(str(event.get("container") or "?"), 64)
    verified = count_size(_int(event.get("files")), _int(event.get("bytes")))
    error = event.get("error")
    if error:
        headline = f"NOT safe to destroy: {clean(str(error), 300)}"
    elif event.get("safe") is True:
        headline = f"safe to destroy: {verified} verified"
    else:
        unsafe = plural(_int(event.get("unsafe_count")), "file")
        headline = f"NOT safe to destroy: {unsafe} not safe; {verified} verified"
    return Notice("drained", key, container, headline, (), link)
