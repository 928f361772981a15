"""Every use of paramiko's private parts, in one place, checked when this module is imported.

We touch paramiko's internals for measured reasons: a channel's incoming buffer copies every
byte twice (`ChunkPipe` replaces it), paramiko's own rekeying races with data in flight, and
its SFTP client has no readdir that returns names as raw bytes; and its SFTP prefetch thread is
known by name, so that its expected end is not logged as a crash. Other modules call the small
functions below and never a private name. If an installed paramiko lacks one of these parts,
importing this module raises ImportError naming the part, the installed version and the
supported range, instead of failing later in the middle of a transfer.

`ChunkPipe` lives here, not with the exec I/O of `connection.py`: its interface is whatever
paramiko's Channel calls on its private `in_buffer`, and the import check compares the two.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from types import ModuleType
from typing import Any

import paramiko
import paramiko.buffered_pipe
import paramiko.channel
import paramiko.packet
import paramiko.sftp
import paramiko.transport
from paramiko.message import Message
from paramiko.sftp_attr import SFTPAttributes

from forge_syncd import logs

# The paramiko range pyproject.toml allows: CI tests its lowest (scripts/check-min-paramiko)
# and newest (scripts/check) release; tests/unit/test_paramiko_patch.py keeps the two equal.
SUPPORTED = ">=3.4,<6"
# The method paramiko's SFTP prefetch thread runs: a thread is named after its target.
PREFETCH_THREAD = "_prefetch_thread"
SFTP_COMMANDS = ("CMD_OPENDIR", "CMD_READDIR", "CMD_CLOSE", "CMD_HANDLE", "CMD_NAME")


def paramiko_version() -> str:
    """Return the installed paramiko's version ("unknown" when it cannot be told)."""
    try:
        return importlib.metadata.version("paramiko")
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(paramiko, "__version__", "unknown"))


class ChunkPipe:
    """paramiko's BufferedPipe (a channel's incoming buffer, same interface and locking)
    without its two copies of every byte (into an `array` as it arrives, out of it when
    read), which cost the process's one GIL ~0.3 s per GB: chunks are kept as they arrived
    and handed out whole, or joined up to the size asked for (one copy)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._event: threading.Event | None = None
        self._closed = False
        self._buffer: deque[bytes] = deque()
        self._size = 0

    def set_event(self, event: threading.Event) -> None:
        with self._lock:
            self._event = event
            if self._closed or self._buffer:
                event.set()
            else:
                event.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cv.notify_all()
            if self._event is not None:
                self._event.set()

    def feed(self, data: bytes) -> None:
        with self._lock:
            if self._event is not None:
                self._event.set()
            self._buffer.append(data if isinstance(data, bytes) else bytes(data))
            self._size += len(data)
            self._cv.notify_all()

    def read_ready(self) -> bool:
        with self._lock:
            return bool(self._buffer)

    def read(self, nbytes: int, timeout: float | None = None) -> bytes:
        """Given a byte count and a timeout, return up to that many bytes (b"" once closed
        and empty). Raise paramiko's PipeTimeout when nothing arrives in time."""
        with self._lock:
            if not self._buffer:
                if self._closed:
                    return b""
                if timeout == 0.0:
                    raise paramiko.buffered_pipe.PipeTimeout()
                while not self._buffer and not self._closed:
                    then = time.time()
                    self._cv.wait(timeout)
                    if timeout is not None:
                        timeout -= time.time() - then
                        if timeout <= 0.0:
                            raise paramiko.buffered_pipe.PipeTimeout()
                if not self._buffer:
                    return b""
            first = self._buffer[0]
            if len(first) > nbytes:
                out = first[:nbytes]
                self._buffer[0] = first[nbytes:]
            else:
                parts = [self._buffer.popleft()]
                total = len(first)
                while self._buffer and total + len(self._buffer[0]) <= nbytes:
                    total += len(self._buffer[0])
                    parts.append(self._buffer.popleft())
                out = parts[0] if len(parts) == 1 else b"".join(parts)
            self._size -= len(out)
            if not self._buffer and self._event is not None and not self._closed:
                self._event.clear()
            return out

    def empty(self) -> bytes:
        with self._lock:
            out = b"".join(self._buffer)
            self._buffer.clear()
            self._size = 0
            if self._event is not None and not self._closed:
                self._event.clear()
            return out

    def __len__(self) -> int:
        return self._size


def install_chunk_pipe(channel: paramiko.Channel) -> None:
    """Given a channel nothing has arrived on yet, make `ChunkPipe` its stdout buffer."""
    channel.in_buffer = ChunkPipe()  # type: ignore[assignment]


def set_window_step(channel: paramiko.Channel, nbytes: int) -> None:
    """Given a channel, make paramiko give its window back to the sender once `nbytes` were
    read (its default: a tenth of the window, which under a rate limit lets the sender go
    in bursts of up to 800 KiB that queue on the link)."""
    channel.in_window_threshold = nbytes


def cap_window(channel: paramiko.Channel, cap: int) -> None:
    """Given a channel being read, give its sender window back so that it has at most about
    `cap` bytes unread (in flight, or here unread) from now on: less than it was granted
    when `cap` is smaller (window adjusts are held back until enough was read), more when
    it grows (adjusts grant more than was read). paramiko's own adjusts, of what was read,
    are replaced on this channel from the first call."""
    state: _WindowCap | None = getattr(channel, "_forge_window_cap", None)
    if state is None:
        with channel.lock:
            # What the sender may still send or has in flight: the window less what was
            # read and not yet given back.
            state = _WindowCap(channel.in_window_size - channel.in_window_sofar, cap)
            channel.in_window_sofar = 0
            setattr(channel, "_forge_window_cap", state)  # noqa: B010 - ours, on its object
            # paramiko calls it with what was read, and sends the adjust it returns.
            replaced = functools.partial(state.check_add_window, channel)
            setattr(channel, "_check_add_window", replaced)  # noqa: B010
    state.cap = cap


class _WindowCap:
    """The window accounting of a channel under `cap_window`: `outstanding` bytes granted
    and not read yet; an adjust grants what brings it back to `cap`, once that is at least
    the channel's step (`in_window_threshold`)."""

    def __init__(self, outstanding: int, cap: int) -> None:
        self.outstanding = outstanding
        self.cap = cap

    def check_add_window(self, channel: paramiko.Channel, n: int) -> int:
        with channel.lock:
            if channel.closed or channel.eof_received or not channel.active:
                return 0
            self.outstanding -= n
            give = self.cap - self.outstanding
            if give <= 0 or give < min(channel.in_window_threshold, self.cap // 2):
                return 0
            self.outstanding += give
            return give


def set_rekey_limits(transport: paramiko.Transport, limit: int) -> None:
    """Given a transport before its handshake, make paramiko rekey only after `limit` bytes
    or packets each way (the server's own RekeyLimit still applies)."""
    transport.packetizer.REKEY_BYTES = limit
    transport.packetizer.REKEY_PACKETS = limit


def raw_request(sftp: paramiko.SFTPClient, kind: int, *args: Any) -> tuple[int, Message]:
    """Given an SFTP client, a request type (`CMD_*`) and its arguments (bytes go out
    as raw strings), send it and return the reply's type and message. Raise OSError for an
    error status, EOFError for an end-of-listing status."""
    request: Any = getattr(sftp, "_request")  # noqa: B009 - no public raw-bytes request exists
    reply: tuple[int, Message] = request(kind, *args)
    return reply


def attributes_from_message(msg: Message, name: bytes, longname: bytes) -> SFTPAttributes:
    """Given a NAME reply positioned at an entry's attributes, and that entry's name and
    long name, read and return its attributes."""
    from_msg: Any = getattr(SFTPAttributes, "_from_msg")  # noqa: B009 - private, see above
    attributes: SFTPAttributes = from_msg(msg, name, longname)
    return attributes


def is_sftp_prefetch_thread(args: threading.ExceptHookArgs) -> bool:
    """Whether a thread's end is paramiko's SFTP prefetch thread outliving its session when a
    read stops early (a file that changed while read): its "Socket is closed" is expected
    (registered in `logs.expected_thread_ends`)."""
    thread = args.thread.name if args.thread is not None else ""
    return PREFETCH_THREAD in thread and isinstance(args.exc_value, OSError)


def missing_private_parts() -> list[str]:
    """Return the private paramiko parts this module needs that the installed paramiko
    lacks or shapes differently, each named as `Owner.attribute` (empty: all present)."""
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("Channel.in_buffer (a BufferedPipe)", _channel_has_buffer),
        ("buffered_pipe.PipeTimeout", lambda: hasattr(paramiko.buffered_pipe, "PipeTimeout")),
        ("Transport.packetizer", lambda: _assigns(paramiko.transport, "packetizer")),
        ("Packetizer.REKEY_BYTES", lambda: _reads_limit("REKEY_BYTES")),
        ("Packetizer.REKEY_PACKETS", lambda: _reads_limit("REKEY_PACKETS")),
        ("Channel._check_add_window(n) (the adjust it returns is sent)", _add_window_shape),
        ("SFTPClient._request(t, *args)", _request_shape),
        ("SFTPAttributes._from_msg(msg, filename, longname)", _from_msg_shape),
        ("SFTPFile._prefetch_thread (the prefetch thread's name)", _prefetch_thread_named),
        *((f"sftp.{name}", _sftp_command(name)) for name in SFTP_COMMANDS),
    ]
    missing = [part for part, present in checks if not present()]
    missing += [f"Channel.in_buffer.{call}() (ChunkPipe lacks it)" for call in _buffer_calls()]
    return missing


def check_private_parts() -> None:
    """Raise ImportError naming the first private paramiko part that is missing, the
    installed paramiko version and the supported range; return if all are there."""
    missing = missing_private_parts()
    if missing:
        raise ImportError(
            f"forge-syncd needs paramiko's private {missing[0]}, missing in paramiko "
            f"{paramiko_version()}; supported: paramiko{SUPPORTED}"
        )


def _channel_has_buffer() -> bool:
    """A bare Channel (no transport: cheap) gets a BufferedPipe `in_buffer` in __init__."""
    pipe = getattr(paramiko.buffered_pipe, "BufferedPipe", None)
    return pipe is not None and isinstance(getattr(paramiko.Channel(0), "in_buffer", None), pipe)


def _buffer_calls() -> list[str]:
    """Return the methods paramiko's channel module calls on `in_buffer` that ChunkPipe
    does not have (none when its source cannot be read: nothing to compare)."""
    source = _source(paramiko.channel)
    calls = set(re.findall(r"\bin_buffer\.(\w+)", source or ""))
    return sorted(call for call in calls if not hasattr(ChunkPipe, call))


def _assigns(module: ModuleType, attribute: str) -> bool:
    source = _source(module)
    return source is None or re.search(rf"\bself\.{attribute}\s*=", source) is not None


def _reads_limit(name: str) -> bool:
    """The Packetizer class has the limit, and (where its source can be read) uses it."""
    packetizer = getattr(paramiko.packet, "Packetizer", None)
    if not isinstance(getattr(packetizer, name, None), int):
        return False
    source = _source(paramiko.packet)
    return source is None or f"self.{name}" in source


def _add_window_shape() -> bool:
    """`cap_window` replaces it: paramiko's channel calls it with the bytes read, sends the
    window adjust it returns, and keeps the window in `in_window_size`/`in_window_sofar`."""
    add = getattr(paramiko.Channel, "_check_add_window", None)
    if not callable(add) or list(inspect.signature(add).parameters) != ["self", "n"]:
        return False
    source = _source(paramiko.channel)
    return source is None or all(
        part in source
        for part in ("ack = self._check_add_window(", "in_window_sofar", "in_window_size")
    )


def _request_shape() -> bool:
    request = getattr(paramiko.SFTPClient, "_request", None)
    if not callable(request):
        return False
    kinds = [p.kind for p in inspect.signature(request).parameters.values()]
    return kinds[-1:] == [inspect.Parameter.VAR_POSITIONAL]


def _from_msg_shape() -> bool:
    from_msg = getattr(SFTPAttributes, "_from_msg", None)
    if not callable(from_msg):
        return False
    names = list(inspect.signature(from_msg).parameters)
    return names[:3] == ["msg", "filename", "longname"]


def _prefetch_thread_named() -> bool:
    """The prefetch thread runs `SFTPFile._prefetch_thread`, which names it
    (`is_sftp_prefetch_thread`)."""
    return callable(getattr(paramiko.SFTPFile, PREFETCH_THREAD, None))


def _sftp_command(name: str) -> Callable[[], bool]:
    return lambda: isinstance(getattr(paramiko.sftp, name, None), int)


def _source(module: ModuleType) -> str | None:
    """Return a module's source text, or None where only bytecode is installed."""
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):
        return None


check_private_parts()  # before the names below, which would fail less clearly
logs.expected_thread_ends.append(is_sftp_prefetch_thread)

# The SFTP request and reply types `raw_request` speaks (paramiko.sftp is undocumented).
CMD_OPENDIR: int = paramiko.sftp.CMD_OPENDIR
CMD_READDIR: int = paramiko.sftp.CMD_READDIR
CMD_CLOSE: int = paramiko.sftp.CMD_CLOSE
CMD_HANDLE: int = paramiko.sftp.CMD_HANDLE
CMD_NAME: int = paramiko.sftp.CMD_NAME
