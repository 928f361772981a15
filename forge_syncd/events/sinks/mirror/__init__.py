"""The `mirror` sink: a second copy of the library on an rclone remote (README "Mirror").

`sink.py` queues what events land and copies it (`copier.py`) through one `rclone rcd`
(`rcd.py`); `state.py` keeps the queue and what the mirror holds; `holds.py` answers
`cleanup.require_mirror` from that state.
"""

from __future__ import annotations

from typing import Any

from forge_syncd.events.sinks.mirror.sink import MirrorSink

__all__ = ["MirrorSink", "mirror_sink"]


def mirror_sink(name: str, options: dict[str, Any]) -> MirrorSink:
    """Given the sink's name and options (with `state_dir`), return the running sink."""
    return MirrorSink(name, options)
