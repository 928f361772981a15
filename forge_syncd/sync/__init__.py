"""Syncing one container into the library.

- `plan.py`: what to fetch (pure);
- `memo.py`: when a remembered plan may be reused (pure);
- `verify.py`: when a fetched file counts as verified (pure);
- `commit.py`: landing fetched files (verify, versions, rename) and recording them;
- `fetch.py`: adopting local copies, making folders, the transfer thread;
- `changed.py`: the watched-files path (the plan for the files a live watcher reported);
- `run.py`: one run, the I/O around the rules; `sync_container` is its entry point.

The library's side (local copies, versions, hashing, free space) is `library/`; the watcher
of live mode is `live/`.
"""

from __future__ import annotations

from forge_syncd.sync.plan import FORGET_GUARD_MIN, SyncPlan, plan_sync
from forge_syncd.sync.run import SyncState, sync_container

__all__ = [
    "FORGET_GUARD_MIN",
    "SyncPlan",
    "SyncState",
    "plan_sync",
    "sync_container",
]
