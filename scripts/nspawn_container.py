"""Helper of scripts/systemd-nspawn-test.

`python -m scripts.nspawn_container WORK`: a throwaway sshd "container" on the host's
127.0.0.1 with Forge output where a bare install keeps it (`~/stable-diffusion-webui/outputs`
of the sessions' HOME, WORK/home), kept running until SIGTERM. Writes into the work folder
WORK: PORT, OUTPUTS (the Forge outputs folder), FINGERPRINT (the host key's SHA256:...), the
known_hosts line; the client key and authorized_keys are in WORK/sshd.

`python -m scripts.nspawn_container compare OUTPUTS MEDIA`: prints how many of the files a
Forge sync of OUTPUTS must produce are in MEDIA with the same content and mtime
(`38/38 files`), and what differs; exit 0 only when MEDIA holds exactly those files.
"""

from __future__ import annotations

import base64
import hashlib
import signal
import sys
import time
from pathlib import Path

from tests.support.sshd import SshdServer
from tests.support.trees import expected_forge_files, forge_tree, tree_files


def serve(work: Path) -> int:
    stop = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    # Installed before anything else: a SIGTERM during start-up still stops the sshd.
    signal.signal(signal.SIGTERM, request_stop)
    server = SshdServer(work / "sshd", home=work / "home").start()
    try:
        outputs = work / "home" / "stable-diffusion-webui" / "outputs"
        forge_tree(outputs, generated=20)
        (work / "OUTPUTS").write_text(str(outputs))
        (work / "FINGERPRINT").write_text(fingerprint(server.host_key_line()))
        (work / "known_hosts").write_text(server.host_key_line())
        (work / "PORT").write_text(str(server.port))
        while not stop:
            time.sleep(0.2)
    finally:
        server.stop()
    return 0


def fingerprint(known_hosts_line: str) -> str:
    """Given a known_hosts line, return its key's OpenSSH fingerprint (SHA256:base64)."""
    blob = base64.b64decode(known_hosts_line.split()[2])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def compare(outputs: Path, media: Path) -> int:
    want = expected_forge_files(outputs)
    got = tree_files(media) if media.is_dir() else {}
    same = sum(1 for path, value in want.items() if got.get(path) == value)
    print(f"{same}/{len(want)} files")
    for path in sorted(set(want) | set(got)):
        if path not in got:
            print(f"  missing {path!r}")
        elif path not in want:
            print(f"  extra   {path!r}")
        elif got[path] != want[path]:
            print(f"  differs {path!r}")
    return 0 if got == want else 1


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        return compare(Path(sys.argv[2]), Path(sys.argv[3]))
    if len(sys.argv) == 2:
        return serve(Path(sys.argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
