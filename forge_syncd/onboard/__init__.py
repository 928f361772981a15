"""Adding and removing a box from the command line (`forge-syncctl add` / `remove`): the
target, the front-end detection, the drop-in the daemon writes, and the two flows."""
