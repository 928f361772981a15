"""Live mode, all of it but the remote script (`transports/shell/watch.py`): the watcher
thread and its restarts (`watch.py`), when a burst ends (`burst.py`), watcher records turned
into changes (`interpret.py`), when a reported file is complete (`changes.py`), and what a
watcher may send (`budget.py`)."""
