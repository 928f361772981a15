"""What the remote offers, asked in one sh script, and the parser of its answers."""

from __future__ import annotations

from dataclasses import dataclass

from forge_syncd.transports.shell.result import ScriptResult

# Every remote command goes through `sh -c` so the user's login shell only has to parse one
# quoted word; nothing untrusted is ever spliced into these scripts. python3's start (~20 ms)
# runs beside the other checks, not before them.
PROBE_SCRIPT = r"""
{ python3 -I -c 'import hashlib' >/dev/null 2>&1 && echo python3; } &
find . -maxdepth 0 -printf 'gnu_find\n' 2>/dev/null
tar --version 2>/dev/null | grep -q 'GNU tar' && echo tar
printf '' | sha256sum -z >/dev/null 2>&1 && echo sha256sum
printf '' | xargs -0 -r true >/dev/null 2>&1 && echo xargs
stat -c %s:%Y . >/dev/null 2>&1 && echo stat
printf 'now %s\n' "$(date +%s 2>/dev/null)"
wait
"""


@dataclass(frozen=True)
class Capabilities:
    """Tools found on the remote and its clock's offset from ours (remote - local, seconds)."""

    gnu_find: bool = False
    tar: bool = False
    sha256sum: bool = False
    xargs: bool = False
    stat: bool = False
    python3: bool = False  # a working python3 (hashes and deletes: `hashing.with_python`)
    clock_offset_s: float = 0.0
    shell: bool = True  # False: the probe's command never ran (no exec on this endpoint)
    said: str = ""  # what the endpoint printed instead, when no command ran (bounded)

    @property
    def remote_hashing(self) -> bool:
        return self.python3 or (self.sha256sum and self.xargs)

    @property
    def tar_stream(self) -> bool:
        """GNU tar with --null/-T, and GNU stat for the post-check."""
        return self.tar and self.gnu_find and self.xargs and self.stat

    @property
    def remote_delete(self) -> bool:
        """python3, or xargs and stat for the re-check and sha256sum for the bytes
        (`delete.py`)."""
        return self.python3 or (self.xargs and self.stat and self.sha256sum)

    @property
    def fast_paths(self) -> frozenset[str]:
        """The fast paths the remote offers by name (`find`, `tar`, `hash`, `delete`): what
        status and logs may show; the choices themselves read the properties above."""
        offered = {
            "find": self.gnu_find,
            "tar": self.tar_stream,
            "hash": self.remote_hashing,
            "delete": self.remote_delete,
        }
        return frozenset(name for name, yes in offered.items() if yes)


def parse_probe(output: bytes, local_now: float) -> Capabilities:
    """Given the probe's stdout and the local time it ran at, return the Capabilities."""
    words = set()
    offset = 0.0
    for raw in output.decode("ascii", "replace").splitlines():
        line = raw.strip()
        if line.startswith("now "):
            stamp = line[4:].strip()
            # A plain number of at most 12 digits (until the year 33658): anything else
            # is no clock we can use (a 400-digit answer would overflow a float).
            if stamp.isdigit() and len(stamp) <= 12:
                offset = float(int(stamp)) - local_now
                # Offsets under two seconds are just the round trip and rounding.
                offset = 0.0 if abs(offset) < 2 else offset
        else:
            words.add(line)
    return Capabilities(
        gnu_find="gnu_find" in words,
        tar="tar" in words,
        sha256sum="sha256sum" in words,
        xargs="xargs" in words,
        stat="stat" in words,
        python3="python3" in words,
        clock_offset_s=offset,
    )


PROBE_OUTPUT = 64 * 1024  # more than the probe's own answers ever need


# Between the probe's answers and the listing that may follow them in the same command.
LISTING_START = b"\x1eforge-syncd-listing\x1e"


def with_listing(probe_script: str, listing_script: str | None) -> str:
    """The probe's script, then `listing_script` (if any) in a subshell of the same
    command, after LISTING_START: the first listing costs no command of its own."""
    if listing_script is None:
        return probe_script
    return probe_script + f"printf '\\036forge-syncd-listing\\036'\n(\n{listing_script})\n"


def split_probe(
    result: ScriptResult, local_now: float
) -> tuple[Capabilities, bytes, ScriptResult | None]:
    """Given what a `with_listing` command returned and the local time it ran at, return
    the Capabilities, the probe's own answers, and the listing's result (None when it
    carried none, or the remote has no GNU find to trust it from)."""
    answers, found, listing = result.stdout.partition(LISTING_START)
    capabilities = parse_probe(answers, local_now)
    if not (found and capabilities.gnu_find):
        return capabilities, answers, None
    return capabilities, answers, ScriptResult(result.status, listing, result.stderr)
