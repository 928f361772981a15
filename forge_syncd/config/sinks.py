"""The `ingest:` sinks of a checked config, and the check of `cleanup.require_mirror`
against them."""

from __future__ import annotations

from typing import Any

from forge_syncd.config.model import SinkConfig
from forge_syncd.config.schema import SINK_DEFAULTS, SINKS
from forge_syncd.config.validate import Checked, Issues


def _value(section: dict[str, Checked], key: str, default: Any = None) -> Any:
    found = section.get(key)
    return default if found is None else found.value


def build_sinks(top: dict[str, Checked], issues: Issues) -> list[SinkConfig]:
    """Given the checked top level, return the `ingest:` sinks (options under their
    dataclass names, with their type's defaults); a name used twice is reported."""
    sinks: list[SinkConfig] = []
    seen: set[str] = set()
    for index, entry in enumerate(_value(top, "ingest", [])):
        own: dict[str, Checked] = entry.value
        name, sink_type = _value(own, "name"), _value(own, "type")
        if name is None or sink_type is None:
            continue
        if name in seen:
            issues.add(own["name"].line, f"ingest[{index}].name", f"duplicate sink name {name!r}")
        seen.add(name)
        keys = SINKS.get(sink_type, {})
        options = {
            (keys[key].attr or key if key in keys else key): (
                tuple(i.value for i in checked.value)
                if isinstance(checked.value, list)
                else checked.value
            )
            for key, checked in own.items()
            if key not in ("name", "type")
        }
        defaults = SINK_DEFAULTS.get(sink_type, {})
        sinks.append(SinkConfig(name, sink_type, {**defaults, **options}))
    return sinks


def check_mirror(
    cleanup: dict[str, Checked], where: str, issues: Issues, mirrors: frozenset[str]
) -> None:
    """Report a `cleanup.require_mirror` that names no mirror sink of `ingest:`."""
    wanted = cleanup.get("require_mirror")
    if wanted is None or wanted.value is None or wanted.value in mirrors:
        return
    known = ", ".join(sorted(mirrors)) or "none is configured"
    issues.add(
        wanted.line,
        f"{where}.cleanup.require_mirror",
        f"{wanted.value!r} is not a mirror sink of ingest: (mirror sinks: {known})",
    )
