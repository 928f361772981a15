"""Helper of scripts/systemd-nspawn-test: a throwaway sshd "container" on the host's
127.0.0.1 with Forge output, kept running until SIGTERM. Writes PORT, the client key and the
known_hosts line into the work folder given as argv[1]."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from tests.support.sshd import SshdServer
from tests.support.trees import forge_tree


def main() -> int:
    work = Path(sys.argv[1])
    server = SshdServer(work / "sshd").start()
    forge_tree(work / "outputs", generated=20)
    (work / "known_hosts").write_text(server.host_key_line())
    (work / "PORT").write_text(str(server.port))
    stop = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    while not stop:
        time.sleep(0.2)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
