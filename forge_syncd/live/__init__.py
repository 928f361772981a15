"""Live mode, all of it but the remote script (`transports/shell/watch.py`): the watcher
thread (`watch.py`), when a reported file is complete (`changes.py`), and what a watcher may
send (`budget.py`)."""
