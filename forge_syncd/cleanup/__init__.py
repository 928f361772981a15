"""Purging old media from a container once it is safely copied.

- `rules.py`: what may be purged, how unrecorded purges are settled, when cleanup is held
  back (pure);
- `run.py`: one run, the I/O around the rules; `cleanup_container` is its entry point;
- `drain.py`: drain, before a box is destroyed: a final sync, sha256 on both ends, safety
  verdicts, and with `--purge` the delete.
"""

from __future__ import annotations

from forge_syncd.cleanup.rules import Action, Decision, decide, select_purgeable
from forge_syncd.cleanup.run import cleanup_container

__all__ = ["Action", "Decision", "cleanup_container", "decide", "select_purgeable"]
