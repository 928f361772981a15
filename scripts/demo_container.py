"""The README's first command: a throwaway SSH "container" with Forge output, synced.

Starts a private sshd on 127.0.0.1 (its own keys, a random port), fills a Forge-layout
outputs folder with the real A1111/ComfyUI fixtures, generated PNGs and hostile file names,
writes a config, and runs the installed `forge-syncd --once` twice: the first run copies
everything, the second transfers nothing. Everything lives in one temporary folder, removed
at the end unless --keep is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.sshd import SshdServer
from tests.support.trees import forge_tree, tree_files

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
  sync: {{settle: 0s, verify: sha256}}
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
        CONFIG.format(work=work, user=sshd.user, key=sshd.client_key,
                      known_hosts=sshd.known_hosts, remote=remote, port=sshd.port)
    )
    print(f"container: sshd on 127.0.0.1:{sshd.port}, Forge outputs in {remote}")
    print(f"config:    {config}\n")
    forge_syncd = shutil.which("forge-syncd") or "forge-syncd"
    subprocess.run([forge_syncd, "--check-config", "--config", str(config)], check=True)
    for attempt in ("first run: copies everything", "second run: nothing changed"):
        print(f"\n== forge-syncd --once ({attempt})", flush=True)
        env = {**os.environ, "FORGE_SYNC_CONFIG": str(config)}
        done = subprocess.run([forge_syncd, "--once"], env=env)
        if done.returncode != 0:
            return done.returncode
    media = work / "media" / "forge-a"
    print(f"\n== the library: {media}")
    for path, (data, _mtime) in sorted(tree_files(media).items()):
        print(f"  {len(data):>7}  {path.decode('utf-8', 'backslashreplace')!r}")
    print("\nSymlinks, the FIFO, stray folders and non-media files stayed on the container;")
    print(f"the JSON log of every file is in {work / 'log' / 'forge-syncd.jsonl'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
