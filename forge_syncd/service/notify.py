"""The systemd notify protocol (sd_notify) through `sdnotify`; silent outside systemd."""

from __future__ import annotations

import os

import sdnotify


class Notifier:
    """Sends READY/STATUS/WATCHDOG/RELOADING/STOPPING to $NOTIFY_SOCKET when there is one."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        if self._notifier is not None and self._notifier.socket is not None:
            # Never let a slow or stuck reader of the notify socket block the main loop:
            # a full socket drops the message (sdnotify swallows the error) instead.
            self._notifier.socket.setblocking(False)
        self._last_status: str | None = None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Half of $WATCHDOG_USEC (when it is meant for this process), or None."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 1_000_000 / 2

    def send(self, *lines: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(lines))

    def status(self, text: str) -> None:
        """Send STATUS= only when it changed (it is shown by `systemctl status`)."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")
