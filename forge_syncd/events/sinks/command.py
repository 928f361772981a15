"""`exec`: run a command with the event JSON on stdin; exit 0 means delivered."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any


class ExecSink:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.command = list(options["command"])
        self.timeout_s = float(options.get("timeout_s", 30.0))

    def deliver(self, event: dict[str, Any]) -> None:
        # The child must not talk to systemd in our name.
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        done = subprocess.run(
            self.command,
            input=json.dumps(event).encode(),
            capture_output=True,
            timeout=self.timeout_s,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip()[-300:]
            raise RuntimeError(f"{self.command[0]} exited {done.returncode}: {tail}")

    def close(self) -> None:
        pass
