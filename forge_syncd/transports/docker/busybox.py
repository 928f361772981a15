"""The listing script of a container without GNU find (busybox): `find` hands the names to
`sh` as arguments (never as code), each is tested for its type and `stat -c '%s %Y'`-ed on
its own (no name is ever parsed out of stat's output), and printed in the four NUL-ended
fields of the GNU listing (`shell/listing.py`), whose strict parser reads it. Mtimes are in
whole seconds (what busybox's stat gives), as over SFTP."""

from __future__ import annotations

import shlex

from forge_syncd.transports.shell.listing import find_start

EACH = (
    'for f; do if [ -L "$f" ]; then t=l; elif [ -f "$f" ]; then t=f; '
    'elif [ -p "$f" ]; then t=p; elif [ -S "$f" ]; then t=s; else t=b; fi; '
    'm=$(stat -c "%s %Y" -- "$f" 2>/dev/null) || continue; '
    'printf "%s\\0%s\\0%s\\0%s\\0" "$t" "${m%% *}" "${m#* }" "$f"; done'
)


def busybox_find_script(root: str, folders: tuple[str, ...]) -> str:
    """Given a root and its folders (empty: the whole root), return the listing script."""
    lines = find_start(root, folders)
    lines.append(f"exec find \"$@\" ! -type d -exec sh -c {shlex.quote(EACH)} sh '{{}}' +")
    return "\n".join(lines) + "\n"
