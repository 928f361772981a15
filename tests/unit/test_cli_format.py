"""How the CLIs write numbers and times for people (`forge_syncd/cli/format.py`) and lay out
tables (`cli/table.py`): binary units, plurals, durations, local times with the zone."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from forge_syncd.cli import format as fmt
from forge_syncd.cli.table import Cell, Column, render
from forge_syncd.cli.term import Out
from forge_syncd.text import no_such, plural


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (20 * 2**20, "20.0 MiB"),
        (int(1.21 * 2**30), "1.21 GiB"),
        (3 * 2**40, "3.00 TiB"),
        (5 * 2**50, "5120.00 TiB"),
    ],
)
def test_sizes_are_in_binary_units(count: int, shown: str) -> None:
    """Sizes are B, KiB, MiB, GiB, TiB (1024 apart), one decimal below GiB, two from it."""
    assert fmt.size(count) == shown


def test_rates_are_binary_like_bwlimit() -> None:
    """A rate reads like `bwlimit` is written (MiB/s), never MB/s: 20 MiB/s is not shown as
    over a 20MiB/s limit."""
    assert fmt.rate(20 * 2**20) == "20.0 MiB/s"
    assert fmt.rate(512) == "512 B/s"


def test_a_pair_of_sizes_shares_the_totals_unit() -> None:
    """A bar's bytes: done and total in the total's unit."""
    assert fmt.size_pair(int(69.8 * 2**20), 148 * 2**20) == "69.8/148.0 MiB"
    assert fmt.size_pair(0, 2 * 2**30) == "0.00/2.00 GiB"
    assert fmt.size_pair(5, 30) == "5/30 B"


@pytest.mark.parametrize(
    ("count", "word", "shown"),
    [(0, "file", "0 files"), (1, "file", "1 file"), (2, "file", "2 files"), (1, "day", "1 day")],
)
def test_plurals(count: int, word: str, shown: str) -> None:
    """Counts come with the right form of their noun ("1 file", never "1 files")."""
    assert plural(count, word) == shown


def test_count_and_size() -> None:
    """A count of files goes with its size: "1 file, 4.2 MiB"."""
    assert fmt.count_size(1, 4404019) == "1 file, 4.2 MiB"
    assert fmt.count_size(3, 0) == "3 files, 0 B"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "0.0s"),
        (4.25, "4.2s"),
        (42.9, "42s"),
        (72, "1m 12s"),
        (3600 * 2 + 5 * 60 + 7, "2h 5m"),
        (86400 * 3 + 3600 * 4, "3d 4h"),
    ],
)
def test_durations(seconds: float, shown: str) -> None:
    """Run lengths read "1m 12s", not "72.00 s"."""
    assert fmt.duration(seconds) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(720 * 3600, "30d"), (3600, "1h"), (90 * 60, "90m"), (45, "45s"), (86400 + 1, "86401s")],
)
def test_config_durations_as_a_user_writes_them(seconds: float, shown: str) -> None:
    """`older_than: 30d` is shown as 30d, not 720h."""
    assert fmt.spec_duration(seconds) == shown


def test_relative_times() -> None:
    """Distances to now: "12 s ago", "3 min ago", "in 4 min", "2 h ago", "3 days ago",
    "now"; nothing is "-"."""
    now = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)

    def stamp(delta: timedelta) -> str:
        return (now + delta).isoformat().replace("+00:00", "Z")

    assert fmt.ago(stamp(timedelta(seconds=-12.5)), now) == "12 s ago"
    assert fmt.ago(stamp(timedelta(minutes=-3, seconds=-59)), now) == "3 min ago"
    assert fmt.ago(stamp(timedelta(minutes=4, seconds=10)), now) == "in 4 min"
    assert fmt.ago(stamp(timedelta(hours=-2, minutes=-50)), now) == "2 h ago"
    assert fmt.ago(stamp(timedelta(days=-3)), now) == "3 days ago"
    assert fmt.ago(stamp(timedelta(days=-800)), now) == "2 years ago"
    assert fmt.ago(stamp(timedelta(milliseconds=300)), now) == "now"
    assert fmt.ago(None, now) == "-"


@pytest.fixture
def zone() -> Iterator[None]:
    """Restore the process's time zone after a test that sets TZ."""
    before = os.environ.get("TZ")
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.usefixtures("zone")
@pytest.mark.parametrize(
    ("tz", "winter", "summer"),
    [
        ("America/New_York", "2026-12-07 09:01 EST", "2026-07-07 10:01 EDT"),
        ("Europe/Berlin", "2026-12-07 15:01 CET", "2026-07-07 16:01 CEST"),
        ("UTC", "2026-12-07 14:01 UTC", "2026-07-07 14:01 UTC"),
    ],
)
def test_times_are_local_with_the_zone_shown(tz: str, winter: str, summer: str) -> None:
    """A daemon time (ISO 8601 UTC) is shown in the zone of TZ, with its name (daylight
    saving included); `--utc` shows UTC whatever TZ says."""
    os.environ["TZ"] = tz
    time.tzset()
    assert fmt.local_time("2026-12-07T14:01:30.533Z") == winter
    assert fmt.local_time("2026-07-07T14:01:30.533Z") == summer
    assert fmt.local_time("2026-12-07T14:01:30.533Z", seconds=True) == winter.replace(
        ":01 ", ":01:30 "
    )
    assert fmt.local_time("2026-12-07T14:01:30.533Z", utc=True) == "2026-12-07 14:01 UTC"
    now = datetime(2026, 12, 7, 14, 4, 30, tzinfo=UTC)
    assert fmt.when("2026-12-07T14:01:30.533Z", now=now) == f"{winter} (2 min ago)"


def table(tty_width: int | None, rows: list[list[Cell | str]]) -> list[str]:
    stdout = io.StringIO()
    out = Out(stdout=stdout, stderr=io.StringIO())
    out.tty, out.color = tty_width is not None, False
    if tty_width is not None:
        os.environ["COLUMNS"] = str(tty_width)
    try:
        return render(
            out, [Column("NAME"), Column("N", right=True), Column("ERROR", cut=True)], rows
        )
    finally:
        os.environ.pop("COLUMNS", None)


def test_piped_tables_are_never_cut() -> None:
    """Regression (issue 25, item 2): piped output was cut to 80 columns with ellipses and
    wrapped cells. Piped, every row is whole, on one line, aligned, with no trailing
    spaces."""
    error = "127.0.0.1:56013: Connection refused " * 5
    lines = table(None, [["forge-a", "72", ""], ["comfy-1", "0", error.strip()]])
    assert lines == [
        "NAME      N  ERROR",
        "forge-a  72",
        f"comfy-1   0  {error.strip()}",
    ]
    assert not any("…" in line for line in lines)


def test_terminal_tables_fit_by_cutting_the_error_column() -> None:
    """On a terminal narrower than the table, the error column gives way (ending in "…"),
    the others stay whole; wide characters count twice."""
    lines = table(40, [["forge-a", "7", "x" * 80], ["写真", "1", "short"]])
    assert all(len(line) <= 40 for line in lines[:2])
    assert lines[1].startswith("forge-a  7  xxx") and lines[1].endswith("…")
    assert lines[2] == "写真     1  short"


def test_cells_show_remote_text_escaped_and_colour_only_on_request() -> None:
    """Control characters in a cell are shown escaped; colour codes are only added on a
    colour terminal, after the widths are measured."""
    stdout = io.StringIO()
    out = Out(stdout=stdout, stderr=io.StringIO())
    out.color = True
    lines = render(out, [Column("A"), Column("B")], [[Cell("x\x1b[2J", "red"), "y"]])
    assert lines[1] == "\x1b[31mx\\x1b[2J\x1b[0m  y"
    out.color = False
    assert render(out, [Column("A"), Column("B")], [[Cell("x", "red"), "y"]])[1] == "x  y"


def test_no_such_names_the_choices_and_the_nearest() -> None:
    """An unknown name gets the names there are and the nearest one."""
    assert no_such("container", "forge-b", ["forge-a", "comfy-1"]) == (
        "no container 'forge-b' (did you mean 'forge-a'? containers: comfy-1, forge-a)"
    )
    assert no_such("container", "zzz", ["forge-a"]) == "no container 'zzz' (containers: forge-a)"
    assert no_such("container", "x", []) == "no container 'x' (there is none)"
