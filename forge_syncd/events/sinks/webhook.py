"""`webhook`: POST the event as JSON; any 2xx status means delivered."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from forge_syncd import __version__


class WebhookSink:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.url = str(options["url"])
        self.timeout_s = float(options.get("timeout_s", 10.0))

    def deliver(self, event: dict[str, Any]) -> None:
        request = urllib.request.Request(  # noqa: S310 - the URL is http(s), checked by config
            self.url,
            data=json.dumps(event).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"forge-syncd/{__version__}",
                "Idempotency-Key": f"forge-syncd-{event.get('id')}",
            },
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
            if not 200 <= response.status < 300:
                raise RuntimeError(f"{self.url} answered {response.status}")

    def close(self) -> None:
        pass
