"""Bandwidth limits (`sync.bwlimit`, `limits: {bwlimit}`): rclone's timetable form, its
boundaries applied to a running transfer with an injected clock, the global cap's fair
shares, the `auto` limit's response to queueing delay, and how status shows them."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from forge_syncd.cli.commands.status import limit_lines
from forge_syncd.config import Config, ConfigError, load_config
from forge_syncd.config.bwlimit import parse_bwlimit
from forge_syncd.config.summary import summarize_config
from forge_syncd.limits.auto import AutoRate
from forge_syncd.limits.bucket import TokenBucket
from forge_syncd.limits.registry import MIN_FLIGHT, READER_ACTIVE_S, Limits
from forge_syncd.limits.shares import fair_shares

MiB = 1024 * 1024
MONDAY = datetime(2026, 12, 7)  # a Monday


class FakeTime:
    """A monotonic clock and a local wall clock that move only when `sleep` is called."""

    def __init__(self, wall: datetime) -> None:
        self.now = 1000.0
        self.start_wall = wall
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start_wall + timedelta(seconds=self.now - 1000.0)

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds

    def limits(self) -> Limits:
        return Limits(self.clock, self.wall, self.sleep, sample=False)


def test_timetable_in_rclones_form_gives_the_rate_of_each_moment() -> None:
    """ "08:00,5MiB/s 23:00,off" limits from 08:00 to 23:00 every day and not before 08:00
    (the last entry wraps round from the day before); rclone's units (512K, 10M, a bare
    number in KiB/s), `off`, day entries and its upload:download pairs (the download rate)
    are read as rclone reads them."""
    daily = parse_bwlimit("08:00,5MiB/s 23:00,off")
    at = [
        daily.rate_at(MONDAY.replace(hour=h, minute=m))
        for h, m in ((7, 59), (8, 0), (22, 59), (23, 0))
    ]
    assert at == [None, 5 * MiB, 5 * MiB, None]
    weekly = parse_bwlimit("Mon-00:00,512 Sat-10:00,10M:1M;Sun-20:00,off")
    assert weekly.rate_at(MONDAY) == 512 * 1024
    assert weekly.rate_at(MONDAY + timedelta(days=5, hours=10)) == MiB  # Saturday 10:00
    assert weekly.rate_at(MONDAY + timedelta(days=6, hours=21)) is None  # Sunday night
    assert parse_bwlimit("10M").rate_at(MONDAY) == 10 * MiB
    assert parse_bwlimit(4096).rate_at(MONDAY) == 4096
    assert parse_bwlimit("auto").auto and parse_bwlimit(False).rate_at(MONDAY) is None


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("25:00,1MiB/s", "HH:MM"),
        ("Xyz-10:00,1M", "a day is one of"),
        ("10:00,fast", "timetable"),
        ("fast", "expected a rate"),
        (
            " ".join(f"{h % 24:02d}:{m:02d},1M" for h in range(24) for m in range(0, 60, 10)),
            "at most",
        ),
    ],
)
def test_a_bad_bwlimit_is_refused_saying_the_form(text: str, said: str) -> None:
    """A timetable with a bad time, day or rate, or too many entries, is a ValueError that
    says what is expected (the config reports it with its line)."""
    with pytest.raises(ValueError, match=said):
        parse_bwlimit(text)


def test_a_timetable_boundary_applies_to_a_transfer_waiting_on_its_limit() -> None:
    """A transfer held at 1 MiB/s at 22:59:50 by "08:00,1MiB/s 23:00,off" goes on at full
    speed at 23:00 (the boundary), not after the wait the old rate set: no restart, no
    new transfer needed."""
    time = FakeTime(MONDAY.replace(hour=22, minute=59, second=50))
    limits = time.limits()
    limiter = limits.limiter("forge-a", parse_bwlimit("08:00,1MiB/s 23:00,off"), 0.025)
    limiter.consume(MiB)  # the one-second burst
    limiter.consume(100 * MiB)  # 100 s at 1 MiB/s; the limit lifts in 10
    assert 9.0 <= time.slept <= 10.5
    assert limiter.current_rate() is None
    limiter.consume(100 * MiB)
    assert time.slept <= 10.5


def test_a_bucket_delivers_its_rate_over_time() -> None:
    """Over 30 simulated seconds a bucket at 5 MiB/s lets through 5 MiB a second (plus its
    one-second burst), whatever the read size."""
    time = FakeTime(MONDAY)
    bucket = TokenBucket(lambda: 5 * MiB, time.clock, time.sleep)
    taken = 0
    while time.now - 1000.0 < 30:
        bucket.consume(300_000)
        taken += 300_000
    assert taken == pytest.approx(31 * 5 * MiB, rel=0.01)


def test_a_reload_changes_the_limiter_a_running_transfer_reads_through() -> None:
    """The limiter of a container is one object across reloads: a new `bwlimit` (or none)
    is what the running transfer's next read meets."""
    time = FakeTime(MONDAY)
    limits = time.limits()
    running = limits.limiter("forge-a", parse_bwlimit("1MiB/s"), 0.025)
    assert limits.limiter("forge-a", parse_bwlimit("8MiB/s"), 0.025) is running
    assert running.current_rate() == 8 * MiB
    limits.limiter("forge-a", None, 0.025)
    assert running.current_rate() is None


def test_fair_shares_split_the_cap_max_min() -> None:
    """The global cap is split equally between the containers transferring; one that wants
    less (its own limit) keeps that and the rest goes to the others; the shares never add up
    to more than the cap."""
    assert fair_shares(10, {"a": None, "b": None}) == {"a": 5, "b": 5}
    assert fair_shares(10, {"a": 2, "b": None, "c": None}) == {"a": 2, "b": 4, "c": 4}
    assert fair_shares(10, {"a": 20, "b": 1}) == {"a": 9, "b": 1}
    assert fair_shares(10, {}) == {}


def test_the_global_cap_is_shared_by_the_containers_transferring() -> None:
    """With `limits: {bwlimit: 10MiB/s}`, one container transferring alone gets the whole
    cap; two get 5 MiB/s each; a container's own smaller limit still holds and leaves the
    rest to the other; one idle for over a second no longer counts."""
    time = FakeTime(MONDAY)
    limits = time.limits()
    limits.configure(parse_bwlimit("10MiB/s"))
    a = limits.limiter("a", None, 0.025)
    b = limits.limiter("b", None, 0.025)
    a.consume(1)
    assert a.current_rate() == 10 * MiB
    b.consume(1)
    assert (a.current_rate(), b.current_rate()) == (5 * MiB, 5 * MiB)
    limits.limiter("b", parse_bwlimit("2MiB/s"), 0.025)
    assert (a.current_rate(), b.current_rate()) == (8 * MiB, 2 * MiB)
    time.sleep(1.5)
    a.consume(1)
    assert a.current_rate() == 10 * MiB
    assert limits.status() == {"setting": "10MiB/s", "rate_bps": 10 * MiB}


class VirtualTime:
    """A clock shared by threads that moves only when every thread sleeps: then to the
    earliest wake-up (a discrete-event simulation of threads waiting on their limits)."""

    def __init__(self, threads: int) -> None:
        self.now = 0.0
        self.threads = threads
        self.wakes: dict[int, float] = {}
        self.cond = threading.Condition()

    def clock(self) -> float:
        return self.now

    def _advance(self) -> None:
        if self.wakes and len(self.wakes) == self.threads:
            self.now = min(self.wakes.values())
            self.cond.notify_all()

    def sleep(self, seconds: float) -> None:
        me = threading.get_ident()
        with self.cond:
            self.wakes[me] = wake = self.now + seconds
            self._advance()
            while self.now < wake:
                self.cond.wait()
            del self.wakes[me]

    def done(self) -> None:
        with self.cond:
            self.threads -= 1
            self._advance()


def test_two_containers_under_the_cap_get_equal_bytes_whatever_their_read_sizes() -> None:
    """Two containers transferring at once under a 10 MiB/s cap, one in 64 KiB reads and
    one in 1 MiB reads, each get half the cap over 20 simulated seconds (within 10%), and
    together no more than the cap plus one second's burst each."""
    time = VirtualTime(threads=2)
    limits = Limits(time.clock, lambda: MONDAY, time.sleep, sample=False)
    limits.configure(parse_bwlimit("10MiB/s"))
    got = {"small": 0, "big": 0}

    def transfer(name: str, size: int) -> None:
        limiter = limits.limiter(name, None, 0.025)
        while time.clock() < 20:
            limiter.consume(size)
            got[name] += size
        time.done()

    threads = [
        threading.Thread(target=transfer, args=("small", 64 * 1024)),
        threading.Thread(target=transfer, args=("big", MiB)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert got["small"] + got["big"] <= (20 + 2) * 10 * MiB
    assert got["small"] == pytest.approx(20 * 5 * MiB, rel=0.1)
    assert got["big"] == pytest.approx(20 * 5 * MiB, rel=0.1)


def test_auto_grows_while_the_queue_is_empty_and_backs_off_when_it_builds() -> None:
    """`auto` raises its rate while the round trip stays at its base (and the rate is
    used), holds it when the transfer does not use it, and cuts it multiplicatively (at
    most by half, once a round trip) once the round trip rises past base + auto_delay."""
    time = FakeTime(MONDAY)
    auto = AutoRate(0.025, time.clock)
    start = auto.rate
    for _ in range(10):
        auto.observe(0.100, used=True)
    grown = auto.rate
    assert grown > 3 * start
    auto.observe(0.100, used=False)
    assert auto.rate == grown  # not used: not grown
    auto.observe(0.200, used=True)  # 100 ms of queue (4x the target): one sample is noise
    assert auto.rate == grown
    auto.observe(0.200, used=True)  # two are a queue: halved
    assert auto.delay_s == pytest.approx(0.1) and auto.rate == pytest.approx(grown / 2)
    auto.observe(0.200, used=True)  # left before the cut could show: no second cut
    assert auto.rate == pytest.approx(grown / 2)
    time.sleep(0.2)  # a round trip later: the queue is still there
    auto.observe(0.200, used=True)
    assert auto.rate == pytest.approx(grown / 4)
    assert auto.base_s() == pytest.approx(0.100)


def test_auto_limits_only_a_transport_that_times_round_trips() -> None:
    """A container on `auto` whose transport times no round trip (local folders, Docker) is
    not held back; one whose transport does starts at 1 MiB/s and follows the samples."""
    time = FakeTime(MONDAY)
    limiter = time.limits().limiter("forge-a", parse_bwlimit("auto"), 0.025)
    assert limiter.current_rate() is None
    limiter.set_rtt_source(lambda: 0.05)
    assert limiter.current_rate() == MiB
    limiter.observe_rtt(0.05)
    assert limiter.status()["rtt_s"] == 0.05


def test_auto_caps_what_each_stream_lets_its_sender_have_unread() -> None:
    """Under `auto` a stream may let its sender have the rate times the base round trip
    plus the target unread (a receive rate alone cannot hold a queue down: above the link's
    rate the sender's whole window would wait in the link's queue), shared by the streams
    reading now, never under MIN_FLIGHT; without `auto`, or before a round trip is timed,
    no cap."""
    time = FakeTime(MONDAY)
    limits = time.limits()
    fixed_rate = limits.limiter("fixed", parse_bwlimit("8MiB/s"), 0.025)
    assert fixed_rate.flight_cap("a stream") is None
    limiter = limits.limiter("forge-a", parse_bwlimit("auto"), 0.025)
    one, two = object(), object()
    assert limiter.flight_cap(one) is None  # no round trip timed: not limited by auto
    limiter.set_rtt_source(lambda: 0.05)
    assert limiter.flight_cap(one) is None  # no sample yet: no base delay
    limiter.observe_rtt(0.05)
    assert limiter.auto is not None
    rate, base = int(limiter.auto.rate), 0.05
    assert limiter.flight_cap(one) == max(MIN_FLIGHT, int(rate * (base + 0.025)))
    limiter.auto.rate = 40 * MiB
    assert limiter.flight_cap(one) == int(40 * MiB * 0.075)
    assert limiter.flight_cap(two) == int(40 * MiB * 0.075 / 2)  # two streams share it
    time.sleep(READER_ACTIVE_S + 0.1)
    assert limiter.flight_cap(two) == int(40 * MiB * 0.075)  # the other stopped reading
    limiter.auto.rate = 64 * 1024
    assert limiter.flight_cap(two) == MIN_FLIGHT


def test_limits_config_and_auto_delay(tmp_path: Path) -> None:
    """`limits: {bwlimit}` takes a rate or a timetable (not `auto`, a container's own);
    `sync.auto_delay` takes milliseconds; a bad timetable is reported with its key;
    `--check-config` names the global cap."""

    def load(text: str) -> Config:
        path = tmp_path / "c.yaml"
        path.write_text("media_root: /m\ncontainers: []\n" + text)
        return load_config(path)

    config = load(
        'limits: {bwlimit: "08:00,5MiB/s 23:00,off"}\ndefaults: {sync: {bwlimit: auto, auto_delay: 40ms}}\n'
    )
    assert config.limits.bwlimit == parse_bwlimit("08:00,5MiB/s 23:00,off")
    assert "limits: bwlimit 08:00,5MiB/s 23:00,off (all containers together)" in (
        summarize_config(config)
    )
    with pytest.raises(ConfigError, match="not auto"):
        load("limits: {bwlimit: auto}\n")
    with pytest.raises(ConfigError, match="auto_delay"):
        load("defaults: {sync: {auto_delay: 1h}}\n")
    with pytest.raises(ConfigError, match=r"bwlimit.*HH:MM"):
        load('defaults: {sync: {bwlimit: "24:00,1M"}}\n')


def test_status_shows_each_limit_and_the_global_cap() -> None:
    """Under the status table: the global cap and each container's limit now, with the
    setting as written, what it receives and its round trip; nothing when no limit is
    set."""
    cap = {"setting": "50MiB/s", "rate_bps": 50 * MiB}
    containers = [
        {
            "name": "forge-a",
            "bwlimit": {
                "setting": "08:00,5MiB/s 23:00,off",
                "rate_bps": 5 * MiB,
                "measured_bps": 5 * MiB,
                "rtt_s": 0.1034,
            },
        },
        {
            "name": "forge-b",
            "bwlimit": {"setting": None, "rate_bps": None, "measured_bps": 0, "rtt_s": None},
        },
    ]
    assert limit_lines(cap, containers) == [
        "bwlimit: all containers 50.0 MiB/s (50MiB/s); forge-a 5.0 MiB/s"
        " (08:00,5MiB/s 23:00,off), receiving 5.0 MiB/s, round trip 103 ms"
    ]
    assert limit_lines({"setting": None, "rate_bps": None}, containers[1:]) == []
