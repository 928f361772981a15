"""Reading an exec channel's stdout as a stream: the remote tar's, after the login shell's
preamble and the script's clock record (`transports/shell/tar.py`), counted, bounded by
`bwlimit` and stopped by cancel."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping

import paramiko

from forge_syncd.mtimes import parse_seconds
from forge_syncd.remote.types import FetchItem, OnBytes
from forge_syncd.transports.receive import Cancelled, RateLimiter
from forge_syncd.transports.shell.tarstream import TarError
from forge_syncd.transports.ssh.connection import MAX_PREAMBLE, START_MARKER, after_marker
from forge_syncd.transports.ssh.paramiko_patch import cap_window, set_window_step

RECV_CHUNK = 1024 * 1024

# Before the stream, the container's clock as the script starts tar (`date +%s.%N`), framed:
# no byte of the files is read before it, so a file whose mtime is a clock tick older was
# complete when read (`mtimes.settled_by`).
CLOCK_START = b"\x1eT"
CLOCK_END = b"\x1e"
MAX_CLOCK = 64


class ChannelStream:
    """Buffered file-like reads from a channel (few large recv calls instead of one per
    tar header), counting bytes, honouring bwlimit and cancel."""

    def __init__(
        self,
        channel: paramiko.Channel,
        on_bytes: OnBytes,
        limiter: RateLimiter,
        cancel: threading.Event,
        abort: threading.Event | None = None,
    ) -> None:
        """`abort`: set when the files read can no longer be handed over (the finishing
        thread failed): the stream stops instead of waiting for it for ever."""
        self.channel = channel
        self.on_bytes = on_bytes
        self.limiter = limiter
        self.cancel = cancel
        self.abort = abort or threading.Event()
        self._buffer = b""
        self._offset = 0
        self._started = False
        self._capped = False  # its window was capped (`cap_window`) once
        self.clock_ns: int | None = None  # the container's clock as tar started (CLOCK_START)

    def _skip_preamble(self) -> bytes:
        """Read past what the login shell printed before the script's start marker; return
        the stream bytes that followed it. Raise TarError if no marker comes."""
        seen = b""
        while START_MARKER not in seen:
            chunk = self._receive()
            if not chunk or len(seen) > MAX_PREAMBLE:
                raise TarError("the remote tar never started (no start marker)")
            seen += chunk
        return after_marker(seen)

    def _take_clock(self, data: bytes) -> bytes:
        """Given the bytes after the start marker, read the clock record that leads them
        (into `clock_ns`; None if it is no number) and return what follows it. Raise
        TarError for a record that never ends."""
        while len(data) < len(CLOCK_START):
            chunk = self._receive()
            if not chunk:
                return data
            data += chunk
        if not data.startswith(CLOCK_START):
            return data
        while CLOCK_END not in data[len(CLOCK_START) :]:
            chunk = self._receive()
            if not chunk or len(data) > MAX_CLOCK:
                raise TarError("the remote tar's start was malformed (no clock)")
            data += chunk
        end = data.index(CLOCK_END, len(CLOCK_START))
        if end > MAX_CLOCK:
            raise TarError("the remote tar's start was malformed (clock too long)")
        self.clock_ns = parse_seconds(data[len(CLOCK_START) : end])
        return data[end + len(CLOCK_END) :]

    def read(self, size: int) -> bytes:
        """Return up to `size` bytes; b"" at the end of the stream."""
        if not self._started:
            self._buffer = self._take_clock(self._skip_preamble())
            self._offset, self._started = 0, True
        if self._offset >= len(self._buffer):
            self._buffer, self._offset = self._receive(), 0
        data = self._buffer[self._offset : self._offset + size]
        self._offset += len(data)
        return data

    def _receive(self) -> bytes:
        if self.cancel.is_set():
            raise Cancelled
        if self.abort.is_set():
            raise TarError("stopped: finished files could not be handed over")
        try:
            wanted = self.limiter.read_size(RECV_CHUNK)
            if wanted < RECV_CHUNK:
                set_window_step(self.channel, wanted)  # the sender let go in small steps
            cap = self.limiter.flight_cap(self)
            if cap is not None or self._capped:
                # bwlimit auto: a queue near its target; once auto is off, the whole window
                cap_window(self.channel, self.channel.in_window_size if cap is None else cap)
                self._capped = True
            data = self.channel.recv(wanted)
        except TimeoutError as exc:
            raise TarError("no data for too long: the connection stalled") from exc
        if data:
            self.on_bytes(len(data))
            self.limiter.consume(len(data))
        return data


class ListedField(Mapping[bytes, int]):
    """A read-only view {name: field of its FetchItem} (no copy: 100,000 names are ~10 MB
    a dict)."""

    def __init__(self, items: Mapping[bytes, FetchItem], get: Callable[[FetchItem], int]) -> None:
        self._items = items
        self.get_field = get

    def __getitem__(self, name: bytes) -> int:
        return self.get_field(self._items[name])

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
