"""`jsonl`: append one event per line to a file, fsynced before the event counts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class JsonlSink:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.path = Path(options["path"])

    def deliver(self, event: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        pass
