"""The remote side of live mode: one long-lived watcher per container, and its output.

One sh script (on an exec channel: SSH, `docker exec`) picks the first watcher the
container can run, installs nothing, and reports in one record format:
- `inotifywait -m -r` (inotify-tools), each reported name stat-ed by `find`;
- else a standard-library `python3` script using inotify through ctypes (every Forge and
  ComfyUI image has python3);
- else a change detector that needs only sh and GNU find: `find -newerct` every period, the
  period 24 times what the last look cost (so it takes at most 5% of a core with the
  shell around it: 4% for the find itself), at least 1 s.

Each record is five NUL-terminated fields: event, type, size, mtime, path (`./` +
relative), type/size/mtime/path as in the listing (`listing.py`). Events:
- `w`: the file was closed after writing or renamed into place: complete;
- `s`: seen (a file found in a new folder, or by the find detector): complete once two looks
  agree or it is older than `settle`;
- `b`: written, and the file's bytes follow (a push: the python3 watcher reads a small
  completed file right away and sends it behind its record, field 2 the container's clock
  before the read, so live mode has it one round trip sooner; see `PUSH_MAX`);
- `d`: deleted or moved away;
- `h`: the watcher is established (field 2 names it); `o`: inotify's queue overflowed
  (changes were lost: reconcile); `x`: a watcher failed (field 2: why); `k`: alive.
The script prints nothing else; what it prints is parsed as untrusted all the same (the
records are bounded, their names checked as a listing's are). When the channel closes, the
script's stdin ends and it kills its whole process group: nothing is left running.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Protocol

from forge_syncd.paths import unsafe_reason
from forge_syncd.remote.types import (
    Listing,
    ListingMethod,
    RemoteFile,
    WatchEvent,
    WatchRecord,
)
from forge_syncd.transports.shell.listing import _parse_record


class PushStore(Protocol):
    """Where a watcher's pushed files are kept for the fetch (`transports/pushed.py`)."""

    def put(self, file: RemoteFile, content: bytes, read_after_ns: int) -> None: ...


MAX_RECORD = 8192  # five fields; a path is at most PATH_MAX (4096) bytes


MAX_MESSAGE = 300

# The largest file the python3 watcher sends right behind its record (a typical SD image is
# 1-2 MB); a larger one is fetched as before. 0 turns pushing off (local folders: nothing
# to gain).
PUSH_MAX = 4 * 1024 * 1024

# The python3 watcher reads a written file once its mtime is this old (ns; the racy-copy
# rule's tick, `mtimes.TICK_NS`, and a millisecond), waiting up to PUSH_WAIT_NS for it;
# a file that would need longer (a whole-second mtime, a clock ahead) is not pushed.
PUSH_AFTER_NS = 21_000_000
PUSH_WAIT_NS = 60_000_000


RECORD = re.compile(rb"([a-z])\0([^\0]*)\0([^\0]*)\0([^\0]*)\0([^\0]*)\0")


# inotify, from <sys/inotify.h>.
_PYTHON_WATCHER = r"""
import ctypes, errno, os, select, struct, sys
ACCESS_MASK = 0x8 | 0x80 | 0x100 | 0x200 | 0x40  # CLOSE_WRITE MOVED_TO CREATE DELETE MOVED_FROM
ISDIR, OVERFLOW, IGNORED, DONT_FOLLOW, ONLYDIR = 0x40000000, 0x4000, 0x8000, 0x2000000, 0x1000000
import time
out = sys.stdout.buffer
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0o2000000)
if fd < 0:
    out.write(b"x\0inotify_init1: " + os.strerror(ctypes.get_errno()).encode() + b"\0\0\0\0")
    out.flush(); sys.exit(4)
paths = {}
def emit(ev, path):
    try:
        st = os.lstat(path)
    except OSError:
        if ev == b"d":
            out.write(b"d\0\0\0\0" + path + b"\0")
        return
    fmt = st.st_mode & 0o170000
    if fmt == 0o040000:
        return
    kind = b"f" if fmt == 0o100000 else b"l" if fmt == 0o120000 else b"p"
    ns = st.st_mtime_ns
    out.write(b"%s\0%s\0%d\0%d.%09d\0%s\0" % (ev, kind, st.st_size, ns // 10**9, ns % 10**9, path))
def push(path):
    # A small regular file whose name is still the file read, unchanged while read: its
    # record and bytes. Else False (the caller sends a plain `w`). Never opens anything
    # but a regular file (opening a device may act).
    try:
        if os.lstat(path).st_mode & 0o170000 != 0o100000:
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000 or st.st_size > PUSHMAX:
            return False
        ns = st.st_mtime_ns
        wait = ns + (10**9 if ns % 10**9 == 0 else 1) + PUSHAFTER - time.time_ns()
        if wait > PUSHWAIT:
            return False
        if wait > 0:
            time.sleep(wait / 1e9)
        start = time.time_ns()
        chunks, left = [], st.st_size + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1048576))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        after = os.fstat(fd)
        now = os.lstat(path)
    except OSError:
        return False
    finally:
        os.close(fd)
    if len(data) != st.st_size or (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
        st.st_size, ns, st.st_ctime_ns) or (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
        return False
    out.write(b"b\0%d\0%d\0%d.%09d\0%s\0" % (start, st.st_size, ns // 10**9, ns % 10**9, path))
    out.write(data)
    return True
def watch(top, report):
    stack = [top]
    while stack:
        folder = stack.pop()
        wd = libc.inotify_add_watch(fd, folder, ACCESS_MASK | DONT_FOLLOW | ONLYDIR)
        if wd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOSPC, errno.ENOMEM):
                out.write(b"x\0inotify_add_watch: " + os.strerror(err).encode() + b"\0\0\0\0")
                out.flush(); sys.exit(5)
            continue
        paths[wd] = folder
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            name = folder + b"/" + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append(name)
            elif report:
                emit(b"s", name)
for top in [a.encode("utf-8", "surrogateescape") for a in sys.argv[1:]]:
    watch(top, False)
out.write(b"h\0python3\0\0\0\0"); out.flush()
stdin = sys.stdin.buffer.fileno()
while True:
    ready, _, _ = select.select([fd, stdin], [], [], KEEPALIVE)
    if not ready:
        out.write(b"k\0\0\0\0\0"); out.flush(); continue
    if stdin in ready and not os.read(stdin, 4096):
        sys.exit(0)
    if fd not in ready:
        continue
    data = os.read(fd, 65536)
    at = 0
    while at < len(data):
        wd, mask, cookie, size = struct.unpack_from("iIII", data, at)
        name = data[at + 16:at + 16 + size].rstrip(b"\0")
        at += 16 + size
        if mask & OVERFLOW:
            out.write(b"o\0\0\0\0\0"); continue
        if mask & IGNORED:
            paths.pop(wd, None); continue
        folder = paths.get(wd)
        if folder is None or not name:
            continue
        path = folder + b"/" + name
        if mask & ISDIR:
            if mask & (0x100 | 0x80):
                watch(path, True)
        elif mask & (0x8 | 0x80):
            if not (PUSHMAX and push(path)):
                emit(b"w", path)
        elif mask & (0x200 | 0x40):
            emit(b"d", path)
    out.flush()
"""


# One inotifywait event (`EVENTS/./path`) as records: a file closed after writing or moved
# into place is stat-ed; a new folder (watched by inotifywait from now on) is searched for
# files written before its watch was placed; Q_OVERFLOW (no path) says events were lost.
_INOTIFYWAIT_EVENT = r"""events=${1%%/*}; path=${1#*/}
case ,$events, in
*,Q_OVERFLOW,*) printf 'o\0\0\0\0\0' ;;
*,ISDIR,*) case ,$events, in *,CREATE,*|*,MOVED_TO,*)
  find -P "$path" ! -type d -printf 's\0%y\0%s\0%T@\0%p\0' 2>/dev/null ;; esac ;;
*,CREATE,*) ;;
*) find -P "$path" -maxdepth 0 ! -type d -printf 'w\0%y\0%s\0%T@\0%p\0' 2>/dev/null ;;
esac
"""


# The find detector: files whose inode changed (written, renamed, chmod-ed) since the look
# before the last one, so each change is reported by two looks in a row.
_FIND_DETECTOR = r"""
ns() {
  t=$(date +%s%N 2>/dev/null)
  case $t in *[!0-9]*|'') echo $(( $(date +%s) * 1000000000 ));; *) echo "$t";; esac
}
printf 'h\0find\0\0\0\0'
before=$(( $(date +%s) - 1 )); last=$before; period_ms=1000
while :; do
  s=$(( period_ms / 1000 )); f=$(( period_ms % 1000 ))
  sleep "$s.$(printf %03d "$f")" 2>/dev/null || sleep $(( s + 1 ))
  now=$(date +%s); t0=$(ns)
  find -P "$@" ! -type d -newerct "@$before" -printf 's\0%y\0%s\0%T@\0%p\0' 2>/dev/null
  t1=$(ns); cost_ms=$(( (t1 - t0) / 1000000 ))
  period_ms=$(( cost_ms * 24 )); [ "$period_ms" -ge 1000 ] || period_ms=1000
  [ "$period_ms" -le 60000 ] || period_ms=60000
  before=$(( last - 1 )); last=$now
  printf 'k\0\0\0\0\0'
done
"""


def watcher_script(
    root: str, folders: tuple[str, ...], keepalive_s: float, push_max: int = 0
) -> str:
    """Given a root, its folders (empty: the whole root), how often an idle watcher says it
    is alive and the largest file to push (0: none), return the sh script that runs the
    first watcher the container has. Pushing, python3 comes first (only it pushes), else
    inotifywait."""
    every = f"{max(1.0, keepalive_s):g}"
    python = (
        _PYTHON_WATCHER.replace("KEEPALIVE", every)
        .replace("PUSHMAX", str(max(0, push_max)))
        .replace("PUSHAFTER", str(PUSH_AFTER_NS))
        .replace("PUSHWAIT", str(PUSH_WAIT_NS))
    )
    # fd 7: the channel's stdin, for the python watcher to see it end (a background list
    # gets /dev/null as its stdin).
    lines = [f"cd -- {shlex.quote(root)} || exit 3", "exec 7<&0", "set --"]
    if folders:
        quoted = " ".join(shlex.quote(folder) for folder in folders)
        lines.append(f'for d in {quoted}; do if [ -d "$d" ]; then set -- "$@" "./$d"; fi; done')
        lines.append("[ \"$#\" -gt 0 ] || { printf 'x\\0no folder to watch\\0\\0\\0\\0'; exit 0; }")
    else:
        lines.append("set -- .")
    inotifywait = (
        "if command -v inotifywait >/dev/null 2>&1; then\n"
        # inotifywait prints nothing while nothing changes: say we are alive meanwhile.
        f"  ( while sleep {every}; do printf 'k\\0\\0\\0\\0\\0'; done ) & alive=$!\n"
        # inotifywait's events go to `find` (fd 5); its messages to a reader that turns
        # "Watches established." into the header and a failure into an `x` record.
        "  { { inotifywait -m -r -e close_write,moved_to,create --format '%e/%w%f%0'"
        ' --no-newline -- "$@" 2>&1 >&5 5>&- | while IFS= read -r line; do case $line in'
        " 'Watches established.'*) printf 'h\\0inotifywait\\0\\0\\0\\0';;"
        " 'Setting up watches.'*) ;;"
        " *) printf 'x\\0%.200s\\0\\0\\0\\0' \"$line\";; esac; done >&6; } 5>&1 |"
        f" xargs -0 -r -n 1 sh -c {shlex.quote(_INOTIFYWAIT_EVENT)} sh; }} 6>&1\n"
        '  kill "$alive" 2>/dev/null\n'
        "fi\n"
    )
    python3 = (
        "if command -v python3 >/dev/null 2>&1; then\n"
        f'  python3 -c {shlex.quote(python)} "$@" <&7\n'
        "fi\n"
    )
    inotify = python3 + inotifywait if push_max > 0 else inotifywait + python3
    lines.append(
        "{\n"
        f"{inotify}"
        "if find . -maxdepth 0 -newerct @0 >/dev/null 2>&1; then\n"
        f"{_FIND_DETECTOR}"
        "fi\n"
        "printf 'x\\0no watcher: no inotifywait, python3 or GNU find\\0\\0\\0\\0'\n"
        "} </dev/null &\n"
        # Until the channel closes (our stdin ends); then nothing of ours stays behind.
        "cat >/dev/null\n"
        "kill 0\n"
    )
    return "\n".join(lines) + "\n"


# The script's one-letter events, in the package's words.
EVENTS = {
    b"w": WatchEvent.WRITTEN,
    b"s": WatchEvent.SEEN,
    b"d": WatchEvent.DELETED,
    b"h": WatchEvent.STARTED,
    b"o": WatchEvent.OVERFLOW,
    b"x": WatchEvent.FAILED,
    b"k": WatchEvent.ALIVE,
}


def parse_records(
    data: bytes | bytearray, push_max: int = PUSH_MAX
) -> tuple[list[WatchRecord], int, list[str]]:
    """Given watcher output, return its complete records, how many bytes they took (the
    rest is an unfinished record, kept for the next read) and problems found (one reason
    per bad record or stretch of unparsable bytes). A `b` record's bytes come with its
    WRITTEN record (`content`, `read_after_ns`) when they are at most `push_max` and the
    file is one the listing rules take. Pure; trusts nothing: a record that does not parse
    is reported and skipped."""
    records: list[WatchRecord] = []
    problems: list[str] = []
    end = 0
    waiting = 0  # bytes of a pushed file still to come
    while (match := RECORD.search(data, end)) is not None:
        if match.start() != end:
            problems.append("unparsable watcher output")
        end = match.end()
        code, kind, size, mtime, path = match.groups()
        content = None
        if code == b"b":
            length = int(size) if size.isdigit() and len(size) <= 12 else -1
            if not 0 <= length <= push_max or not kind.isdigit() or len(kind) > 20:
                problems.append("malformed pushed file")  # its bytes: unparsable from here
                continue
            if len(data) - end < length:
                waiting = length - (len(data) - end)
                end = match.start()
                break
            content = bytes(data[end : end + length])
            end += length
            records.extend(_written(size, mtime, path, content, int(kind)))
            continue
        event = EVENTS.get(code)
        if event in (WatchEvent.STARTED, WatchEvent.FAILED):
            text = kind[:MAX_MESSAGE].decode("utf-8", "replace")
            text = "".join(c if c.isprintable() else "?" for c in text)
            records.append(WatchRecord(event, message=text))
        elif event in (WatchEvent.OVERFLOW, WatchEvent.ALIVE):
            records.append(WatchRecord(event))
        elif event is WatchEvent.DELETED:
            name = path[2:] if path.startswith(b"./") else b""
            if name and unsafe_reason(name) is None:  # else nothing of ours: dropped
                records.append(WatchRecord(event, path=name))
        elif event in (WatchEvent.WRITTEN, WatchEvent.SEEN):
            records.extend(_written(size, mtime, path, None, 0, event, kind))
        else:
            problems.append("unknown watcher record")
    tail = len(data) - end
    if tail > MAX_RECORD + (waiting and push_max):
        problems.append("watcher record too long")
        end = len(data)
    return records, end, problems


def _written(
    size: bytes,
    mtime: bytes,
    path: bytes,
    content: bytes | None,
    read_after_ns: int,
    event: WatchEvent = WatchEvent.WRITTEN,
    kind: bytes = b"f",
) -> list[WatchRecord]:
    """The record of a file written or seen (with its pushed bytes, if any), or why the
    listing rules refuse it; a pushed file whose bytes are not its size is dropped."""
    listing = Listing(method=ListingMethod.WATCH)
    _parse_record((kind, size, mtime, path), listing)
    if listing.files:
        file = listing.files[0]
        if content is not None and len(content) != file.size:
            content = None
        return [WatchRecord(event, file=file, content=content, read_after_ns=read_after_ns)]
    if listing.skipped:
        skipped = listing.skipped[0]
        return [WatchRecord(WatchEvent.REFUSED, path=skipped.path, message=skipped.reason)]
    return []


class WatchOutput:
    """A watcher's output as it comes, whatever carries it: complete records out, the rest
    kept for the next read; the backend the watcher named in its start record, and so how
    long it may stay silent before it counts as gone."""

    def __init__(
        self, keepalive_s: float, pushed: PushStore | None = None, push_max: int = 0
    ) -> None:
        """`keepalive_s`: how often the watcher says it is alive when idle; `pushed`: where
        files the watcher pushes go (None: pushing off), `push_max` the largest taken."""
        self.keepalive_s = keepalive_s
        self.backend = ""
        self.received = 0  # bytes, for live mode's budget
        self.pending = bytearray()
        self.pushed = pushed
        self.push_max = push_max if pushed is not None else 0

    @property
    def silence_s(self) -> float:
        """Four keepalives of an inotify watcher (each says it is alive every keepalive when
        idle); the find detector, and a watcher still placing its watches, may take a minute
        between records (the detector's period is capped at 60 s)."""
        if self.backend in ("inotifywait", "python3"):
            return 4 * self.keepalive_s
        return max(4 * self.keepalive_s, 130.0)

    def take(self, data: bytes) -> tuple[list[WatchRecord], list[str]]:
        """Add `data` to what is pending; return the complete records and the problems.
        Pushed bytes go to `pushed` (the transport's fetch takes them from there) and do not
        count as `received` (live mode's budget is for records; a pushed file is bounded
        by PUSH_MAX, and the store by its size)."""
        self.pending += data
        records, used, problems = parse_records(self.pending, self.push_max)
        if used:
            del self.pending[:used]
        for record in records:
            if record.event is WatchEvent.STARTED:
                self.backend = record.message
            if record.content is not None and record.file is not None:
                self.received -= len(record.content)
                if self.pushed is not None:
                    self.pushed.put(record.file, record.content, record.read_after_ns)
        return [
            dataclasses.replace(record, content=None, pushed=True)
            if record.content is not None
            else record
            for record in records
        ], problems
