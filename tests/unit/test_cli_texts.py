"""What forge-syncctl says, checked without a daemon: the drain report (a hint per reason,
a verdict line of fixed shape), run summaries, help and usage errors."""

from __future__ import annotations

import re
import subprocess

import pytest

from forge_syncd.cleanup.rules import NOT_MIRRORED
from forge_syncd.cli import drainreport
from forge_syncd.cli.commands import parser
from forge_syncd.cli.summary import dry_run_line, not_copied_lines, run_line
from forge_syncd.library.safety import CopyStatus
from tests.support.cli import BIN


def report(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "container": "forge-a",
        "safe": True,
        "files": 41,
        "bytes": 62_000_000,
        "unsafe_count": 0,
        "unsafe": [],
        "error": None,
        "sync": "success",
        "purged": None,
    }
    return {**base, **fields}


def test_every_drain_reason_has_its_hint() -> None:
    """Each reason drain.py can give has a hint and a label of its own (none falls back to
    the refused listing's)."""
    reasons = [
        CopyStatus.EXCLUDED.value,
        CopyStatus.TOO_LARGE.value,
        CopyStatus.WRITING.value,
        CopyStatus.NOT_SYNCED.value,
        CopyStatus.COPY_MISSING.value,
        CopyStatus.COPY_DIFFERS.value,
        CopyStatus.CHANGED.value,
        CopyStatus.BYTES_DIFFER.value,
        CopyStatus.UNHASHED.value,
        CopyStatus.UNCONFIRMED.value,
        NOT_MIRRORED,  # cleanup.require_mirror
    ]
    assert set(reasons) == set(drainreport.HINTS) == set(drainreport.LABELS)


def test_drain_verdict_is_one_parseable_line_last() -> None:
    """Regression (issue 25, item 5): "15 files are not safe (14 files, 0.02 GiB verified)"
    was hard to parse and came first. The files come first, then what to do about each
    reason (the stray `notes.md` and `model.safetensors`), then one verdict line:
    "NAME: NOT safe to destroy: N files not safe; M files, SIZE verified"."""
    unsafe = [
        {"path": "day/notes.md", "reason": CopyStatus.EXCLUDED.value, "size": 5},
        {
            "path": "big/model.safetensors",
            "reason": CopyStatus.EXCLUDED.value,
            "size": 2**30,
        },
        {"path": "day/clip.mp4", "reason": CopyStatus.TOO_LARGE.value, "size": 3 * 2**30},
        {"path": "day/now.png", "reason": CopyStatus.WRITING.value, "size": 100},
    ]
    lines = drainreport.report_lines(
        report(safe=False, files=14, bytes=21_000_000, unsafe_count=15, unsafe=unsafe)
    )
    assert lines[0] == "  day/notes.md: excluded by include/exclude, but present"
    assert lines[4] == "  ... and 11 more"
    assert lines[5] == "what to do:"
    assert lines[6] == (
        "  2 files that include/exclude do not take: if they matter, add a pattern to"
        ' sync.include (e.g. "*.md", "*.safetensors") and drain again; if not, delete them'
        " on the box"
    )
    assert lines[7].startswith("  1 file over max_file_size (the largest 3.00 GiB): raise")
    assert lines[8] == (
        "  1 file still being written: wait until the box stops generating, then drain again"
    )
    assert (
        lines[-1] == "forge-a: NOT safe to destroy: 15 files not safe; 14 files, 20.0 MiB verified"
    )
    verdict = re.fullmatch(
        r"(\S+): NOT safe to destroy: (\d+) files? not safe; (\d+) files?, (.+) verified", lines[-1]
    )
    assert verdict is not None and verdict.groups() == ("forge-a", "15", "14", "20.0 MiB")


def test_drain_safe_and_purged_lines() -> None:
    """A safe box: one line, binary units; the purge's line follows it."""
    purged = {"result": "success", "files": 41, "bytes": 62_000_000, "error": None}
    assert drainreport.report_lines(report(purged=purged)) == [
        "forge-a: safe to destroy: 41 files, 59.1 MiB verified",
        "forge-a: purge success: 41 files, 59.1 MiB deleted from the container",
    ]
    assert drainreport.report_lines(report(files=1, bytes=10)) == [
        "forge-a: safe to destroy: 1 file, 10 B verified"
    ]


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({}, True),
        ({"purged": {"result": "success", "files": 41, "bytes": 9, "error": None}}, True),
        ({"purged": {"result": "cancelled", "files": 3, "bytes": 9, "error": None}}, True),
        ({"purged": {"result": "failure", "files": 3, "bytes": 9, "error": "gone"}}, False),
        ({"safe": False, "unsafe_count": 1}, False),
        ({"safe": False, "error": "the container cannot be reached"}, False),
    ],
)
def test_drain_exits_0_only_when_safe_and_the_purge_did_not_fail(
    fields: dict[str, object], ok: bool
) -> None:
    """The one exit rule of `forge-syncctl drain` and `forge-syncd --once --drain`: 0 only
    when every file is verified (`safe`) and a purge, when asked for, did not fail."""
    assert drainreport.drain_exit_ok(report(**fields)) is ok


def test_run_lines_say_what_was_copied_and_what_was_left_and_why() -> None:
    """Regression (issue 25, item 4): `success, 0 files synced` did not say that a file was
    left as still being written or too large. The summary counts with plurals and says
    what each reason means and what to do."""
    run = {
        "container": "forge-a",
        "job": "sync",
        "result": "success",
        "files": 1,
        "bytes": 2 * 2**20,
        "error": None,
        "duration_s": 72.4,
        "not_copied": [
            {"reason": "settling", "files": 2, "bytes": 400 * 1024},
            {"reason": "too_large", "files": 1, "bytes": 19 * 2**20},
        ],
    }
    assert run_line(run) == "forge-a: sync success, 1 file, 2.0 MiB synced in 1m 12s"
    assert not_copied_lines(run) == [
        "  not copied: 2 files (400.0 KiB), still being written (modified within settle):"
        " the next sync takes them",
        "  not copied: 1 file (19.0 MiB), larger than max_file_size: raise"
        " sync.max_file_size to sync it",
    ]
    failed = {**run, "result": "failure", "files": 0, "bytes": 0, "error": "connect refused"}
    assert run_line(failed, "connect") == (
        "forge-a: sync failure, 0 files, 0 B synced in 1m 12s (connect: connect refused)"
    )


def test_dry_run_counts_what_it_keeps_and_why() -> None:
    """Regression (issue 25, item 11): a dry run did not count what it keeps. Its line says
    "would delete" and what it keeps, by reason, with `older_than` as written (30d)."""
    run = {
        "container": "forge-a",
        "job": "cleanup",
        "dry_run": True,
        "decisions": [{"action": "purge", "size": 2048, "path": "a.png", "reason": ""}],
        "kept": [
            {"reason": "too_young", "files": 40, "bytes": 1},
            {"reason": "preserved", "files": 3, "bytes": 1},
            {"reason": "not_synced", "files": 1, "bytes": 1},
        ],
        "older_than_s": 720 * 3600,
        "error": None,
    }
    assert dry_run_line(run) == (
        "forge-a: cleanup dry run: would delete 1 file, 2.0 KiB; would keep 44 files:"
        " 40 newer than 30d, 3 preserved, 1 not synced"
    )


def test_help_explains_every_command_and_option_and_the_exit_codes() -> None:
    """Regression (issue 25, item 7): help was bare. Every command has a summary and a
    description, every option (NAME, --json, --wait, --limit...) a help text, and every
    help ends with the exit codes."""
    top = parser()
    (commands,) = [a for a in top._actions if a.dest == "command"]
    assert "130" in (top.epilog or "")
    for name, sub in commands.choices.items():  # type: ignore[attr-defined]
        assert sub.description, name
        assert "exit codes:" in (sub.epilog or ""), name
        for action in sub._actions:
            assert action.help, (name, action.dest)
    helps = {a.metavar or a.dest: a for a in commands._choices_actions}  # type: ignore[attr-defined]
    assert all(a.help for a in helps.values())


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["stauts"], "(did you mean 'status'?)"),
        (["histroy"], "(did you mean 'history'?)"),
        (["status", "--jsn"], "(did you mean --json?)"),
        (["history", "--limit", "0"], "argument --limit: expected a whole number from 1 to 1000"),
        (["find", "--limit", "x"], "argument --limit: expected a whole number from 1 to 1000"),
        (["cleanup", "--force"], "cleanup --force needs the NAME"),
        (["--socket", "a", "status", "--config", "b"], "--socket and --config"),
    ],
)
def test_usage_errors_name_the_option_and_suggest(argv: list[str], said: str) -> None:
    """A mistyped command or option gets a did-you-mean; a bad value names its option;
    exit 2, no traceback."""
    done = subprocess.run(
        [str(BIN / "forge-syncctl"), *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done
    assert said in done.stderr and "Traceback" not in done.stderr


def test_version() -> None:
    """`forge-syncctl --version` prints its name and version."""
    done = subprocess.run(
        [str(BIN / "forge-syncctl"), "--version"], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "forge-syncctl 0.1.0\n")


def test_the_readme_command_table_names_every_command() -> None:
    """Regression (issue 25, item 7): the README's command table omitted `find`. Every
    command forge-syncctl has is a row of the table in the README's forge-syncctl section,
    and every option of it is shown there."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## forge-syncctl\n") :]
    table = section[: section.index("**Exit codes:**")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    (commands,) = [a for a in parser()._actions if a.dest == "command"]
    for name, sub in commands.choices.items():  # type: ignore[attr-defined]
        row = next(
            (r for r in rows if re.match(rf"\| `{name}\b|\| `\w+ NAME` / `{name}\b", r)), None
        )
        assert row is not None, name
        for action in sub._actions:
            for option in action.option_strings:
                if option in ("-h", "--help", "--socket", "--config", "--utc"):
                    continue
                assert option in row, (name, option)


def test_add_reports_the_first_sync_the_daemon_recorded_as_adds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In live mode the watcher's reconciling run (0 files) follows the first sync at once,
    and status shows the latest run: `add` reports the first sync since it added the box
    (38 files) — the one recorded with trigger `add` when the daemon records triggers, else
    the oldest since the add — not the latest one, nor a run of an earlier box of the name."""
    from pathlib import Path

    from forge_syncd.cli.commands import onboard

    def run(started: str, files: int, trigger: str | None) -> dict[str, object]:
        return {"job": "sync", "started_at": started, "finished_at": "x", "files": files} | (
            {"trigger": trigger} if trigger else {}
        )

    since = "2026-12-07T10:00:00.000000Z"
    newest_first = [
        run("2026-12-07T10:00:05.000000Z", 0, "live"),
        run("2026-12-07T10:00:02.000000Z", 38, "add"),
        run("2026-12-07T10:00:01.000000Z", 0, "live"),  # the watcher came first
        run("2026-12-01T09:00:00.000000Z", 7, "add"),  # a box of that name, earlier
    ]
    monkeypatch.setattr(onboard, "call", lambda *_args: {"runs": newest_first})
    first = onboard._oldest_sync_since_added(Path("/nowhere"), "box1", since)
    assert first is not None and first["files"] == 38
    untriggered = [{k: v for k, v in r.items() if k != "trigger"} for r in newest_first[:2]]
    monkeypatch.setattr(onboard, "call", lambda *_args: {"runs": untriggered})
    first = onboard._oldest_sync_since_added(Path("/nowhere"), "box1", since)
    assert first is not None and first["files"] == 38


def test_released_files_are_listed_apart_and_keep_the_box_safe() -> None:
    """Files deleted from the library on purpose (`on_local_delete: forget`) are counted on
    a line of their own, not as unsafe: the verdict stays "safe to destroy"."""
    lines = drainreport.report_lines(report(safe=True, files=3, bytes=3000, released_count=2))
    assert lines == [
        "  2 files deleted from the library on purpose (on_local_delete: forget): not kept,"
        " gone with the box",
        "forge-a: safe to destroy: 3 files, 2.9 KiB verified",
    ]
