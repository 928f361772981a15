"""What `forge-syncctl cleanup` says about the containers a cleanup without NAME leaves out
(the daemon's selection itself is pinned end to end in tests/e2e/test_one_process_per_state.py)."""

from __future__ import annotations

import io

from forge_syncd.cli.commands.runs import show_skipped
from forge_syncd.cli.term import Out


def shown(result: dict[str, object]) -> str:
    out = io.StringIO()
    show_skipped(Out(stdout=out, stderr=io.StringIO()), result)
    return out.getvalue()


def test_none_enabled_says_so_and_how_to_force_one() -> None:
    """When no container has cleanup enabled, one line says so, names them and points at
    --force."""
    text = shown({"queued": [], "skipped": [{"container": "forge-a", "reason": "cleanup off"}]})
    assert text == (
        "no container has cleanup enabled (forge-a: cleanup off in the config); name one with"
        " --force to clean it up anyway\n"
    )


def test_each_skipped_container_gets_a_line_with_its_reason() -> None:
    """Beside runs, each container left out is named with its reason (escaped: names are
    printed as plain text)."""
    result = {
        "runs": [{"container": "a"}],
        "skipped": [
            {"container": "b", "reason": "cleanup off"},
            {"container": "[bold]c", "reason": "cleanup off"},
        ],
    }
    assert shown(result) == (
        "b: skipped, cleanup off in its config\n[bold]c: skipped, cleanup off in its config\n"
    )
    assert shown({"runs": [{"container": "a"}], "skipped": []}) == ""
