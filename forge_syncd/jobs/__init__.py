"""One job (sync or cleanup) of one container: what it works with, what it reports, how it
is run and recorded.

- `kinds.py`: the job names, run results, container and watch states (`StrEnum`s);
- `outcome.py`: what a run reports besides its counters (`SyncReport`, `AtRisk`,
  `CleanupReport`), read by the runner, live mode and the control API.
"""
