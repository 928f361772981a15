"""The README's first command: a throwaway SSH "container" with Forge output, synced.

Starts a private sshd on 127.0.0.1 (its own keys, a random port), fills a Forge-layout
outputs folder with the real A1111/ComfyUI fixtures, generated PNGs and hostile file names,
writes a config, and runs the installed `forge-syncd` daemon: the first sync copies
everything, then three new images "generated" on the container arrive on the next runs, and
SIGTERM stops it cleanly. Everything lives in one temporary folder, removed
at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.sshd import SshdServer
from tests.support.trees import fake_png, forge_tree, tree_files, write_file

CONFIG = """\
media_root: {work}/media
state_dir: {work}/state
log: {{level: info, file: {work}/log/forge-syncd.jsonl}}
control: {{socket: {work}/run/control.sock}}
metrics: {{listen: null}}
defaults:
  ssh:
    user: {user}
    identity_file: {key}
    known_hosts: {known_hosts}
  sync: {{interval: 2s, settle: 0s, verify: sha256}}
containers:
  - name: forge-a
    kind: forge
    host: 127.0.0.1
    root: {remote}
    ssh: {{port: {port}}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the demo folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="forge-sync-demo-"))
    sshd = SshdServer(work / "sshd").start()
    try:
        return demo(work, sshd)
    finally:
        sshd.stop()
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def demo(work: Path, sshd: SshdServer) -> int:
    remote = work / "container" / "stable-diffusion-webui" / "outputs"
    forge_tree(remote, generated=24)
    config = work / "forge-sync.yaml"
    config.write_text(
        CONFIG.format(
            work=work,
            user=sshd.user,
            key=sshd.client_key,
            known_hosts=sshd.known_hosts,
            remote=remote,
            port=sshd.port,
        )
    )
    print(f"container: sshd on 127.0.0.1:{sshd.port}, Forge outputs in {remote}")
    print(f"config:    {config}\n")
    forge_syncd = shutil.which("forge-syncd") or "forge-syncd"
    subprocess.run([forge_syncd, "--check-config", "--config", str(config)], check=True)
    print("\n== forge-syncd (the daemon, syncing every 2 s; Ctrl-C stops it)", flush=True)
    daemon = subprocess.Popen([forge_syncd, "--config", str(config)])
    media = work / "media" / "forge-a"
    try:
        wait_for(lambda: len(tree_files(media)) >= 40, "the first sync")
        rng = random.Random(7)
        for n in range(3):
            new = (
                remote
                / "txt2img-images"
                / "2026-11-24"
                / f"{100 + n:05d}-{rng.randrange(10**9)}.png"
            )
            write_file(new, fake_png(rng, 30_000), time.time() - 60)
            print(f"\n-- Forge writes {new.name}; waiting for it to arrive", flush=True)
            target = media / new.relative_to(remote)
            wait_for(target.exists, new.name)
    except KeyboardInterrupt:
        pass
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=20)
    print(f"\n== forge-syncd stopped (exit {code}); the library: {media}")
    for path, (data, _mtime) in sorted(tree_files(media).items()):
        print(f"  {len(data):>7}  {path.decode('utf-8', 'backslashreplace')!r}")
    print("\nSymlinks, the FIFO, stray folders and non-media files stayed on the container;")
    print(f"the JSON log of every file is in {work / 'log' / 'forge-syncd.jsonl'}.")
    return code


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {what} did not happen within {timeout:.0f} s")
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
