"""Sidecar files beside a media file: `<name>.txt` (A1111/Forge "save text information about
generation parameters as text file") and `<name>.json` (SwarmUI metadata)."""

from __future__ import annotations

import os

from forge_syncd.events.budget import MetadataProblem, Meter

SIDECARS = ((b".txt", "txt"), (b".json", "json"))


def read_sidecars(path: bytes, meter: Meter) -> dict[str, str]:
    """Given a media file, return its sidecars' texts by kind (`txt`, `json`); a sidecar over
    the text cap or that cannot be read is skipped and said."""
    stem = os.path.splitext(path)[0]
    found: dict[str, str] = {}
    for suffix, kind in SIDECARS:
        sidecar = stem + suffix
        if sidecar == path:
            continue
        try:
            handle = open(sidecar, "rb")  # noqa: SIM115 - closed below, the open may fail
        except FileNotFoundError:
            continue
        except OSError as exc:
            meter.note(MetadataProblem.UNREADABLE, f"{kind} sidecar: {exc.strerror or exc}")
            continue
        with handle:
            limit = min(meter.budget.max_text, meter.text_left)
            data = handle.read(limit + 1)
        if len(data) > limit:
            meter.note(MetadataProblem.TOO_LARGE, f"{kind} sidecar over {limit} bytes skipped")
            continue
        meter.text_left -= len(data)
        found[kind] = data.decode("utf-8", "replace")
    return found
