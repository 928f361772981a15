"""The commands of forge-syncctl and their options, as `--help` explains them."""

from __future__ import annotations

from typing import Any

from forge_syncd.cli.parser import JSON, NAMES, command, positive


def add_all(commands: Any) -> None:
    """Add every command to the subparsers `commands`."""
    for add in (_status, _sync, _cleanup, _watch, _one_container, _reload, _history):
        add(commands)
    for add in (_drain, _find, _add, _remove):
        add(commands)


def _status(commands: Any) -> None:
    status = command(
        commands,
        "status",
        "show each container: state, live mode, last sync and copy, media at risk, next runs",
        "Show the daemon and one row a container: its state, what live mode does (WATCH),"
        " the last sync and its result, the last sync that copied files, the media only the"
        " container holds (AT RISK: files, size, age of the oldest), the next sync and"
        " cleanup, the last error; then the event sinks' backlog. Rows are in name order.",
    )
    status.add_argument("names", nargs="*", metavar="NAME", help="only these containers")
    status.add_argument("--json", action="store_true", help=JSON)


def _sync(commands: Any) -> None:
    sync = command(
        commands,
        "sync",
        "sync containers now",
        "Queue a sync of each container now (every container without NAME). With --wait,"
        " show its progress and wait for it: then say what was copied and what was left on"
        " the container and why, and exit with the result.",
    )
    sync.add_argument("names", nargs="*", metavar="NAME", help=NAMES)
    sync.add_argument(
        "--wait",
        action="store_true",
        help="show progress until the sync ends; exit 1 if it failed (Ctrl-C stops waiting,"
        " not the sync: exit 130)",
    )
    sync.add_argument("--json", action="store_true", help=JSON)


def _cleanup(commands: Any) -> None:
    cleanup = command(
        commands,
        "cleanup",
        "delete synced, verified media from containers now (or list what would go)",
        "Queue a cleanup now: delete from each container the files older than its"
        " cleanup.older_than that have a verified copy in the library. Without NAME only"
        " the containers whose config enables cleanup; naming one whose cleanup is off"
        " needs --force. --dry-run lists what would be deleted and what is kept, and why,"
        " and deletes nothing.",
    )
    cleanup.add_argument("names", nargs="*", metavar="NAME", help=NAMES)
    cleanup.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted and kept; delete nothing"
    )
    cleanup.add_argument(
        "--wait", action="store_true", help="wait for the cleanup and exit with its result"
    )
    cleanup.add_argument(
        "--force",
        action="store_true",
        help="with NAME: clean up even a container whose config has cleanup off",
    )
    cleanup.add_argument("--json", action="store_true", help=JSON)


def _watch(commands: Any) -> None:
    watch = command(
        commands,
        "watch",
        "show live progress of running jobs until Ctrl-C",
        "Show a progress bar for every running sync, cleanup or drain, and what the daemon"
        " waits for while none runs, until Ctrl-C. Piped, print a line as each job starts"
        " and ends.",
    )
    watch.add_argument("names", nargs="*", metavar="NAME", help=NAMES)
    watch.add_argument(
        "--json", action="store_true", help="print the daemon's progress events as JSON lines"
    )


def _one_container(commands: Any) -> None:
    for name, summary, description in (
        (
            "pause",
            "stop scheduling a container",
            "Stop scheduling the container's syncs and cleanups (a running job finishes)"
            " until `resume`.",
        ),
        ("resume", "schedule a paused container again", "Schedule the container again."),
        (
            "cancel",
            "abort a container's running job",
            "Abort the container's running job: its run ends `cancelled`; nothing partial is kept.",
        ),
    ):
        sub = command(commands, name, summary, description)
        sub.add_argument("name", metavar="NAME", help="the container's name")
        sub.add_argument("--json", action="store_true", help=JSON)


def _reload(commands: Any) -> None:
    reload = command(
        commands,
        "reload",
        "re-read the config (as SIGHUP does)",
        "Re-read the config and its drop-ins: added, removed and changed containers take"
        " effect; a config with errors is refused (they are printed) and the old one keeps"
        " running.",
    )
    reload.add_argument("--json", action="store_true", help=JSON)


def _history(commands: Any) -> None:
    history = command(
        commands,
        "history",
        "list past runs, newest first",
        "List past runs, newest first: when each started, the container, the job, what"
        " started it (TRIGGER: scheduled, manual, live, dry-run, drain, add, once), its"
        " result, files, size, duration and error. Works without the daemon: then it reads"
        " the manifest in state_dir.",
    )
    history.add_argument("name", nargs="?", metavar="NAME", help="only this container's runs")
    history.add_argument(
        "--limit",
        type=positive(1, 1000),
        default=20,
        metavar="N",
        help="at most N runs (1-1000, default 20)",
    )
    history.add_argument("--json", action="store_true", help=JSON)


def _drain(commands: Any) -> None:
    drain = command(
        commands,
        "drain",
        "before destroying a box: sync, verify every file by sha256, report",
        "Before you destroy a rented box: a final sync, then the sha256 of every file on the"
        " container and of its library copy. Exit 0 and `safe to destroy` only when every"
        " file has a verified copy; else exit 1, each file that is not safe, why, and what to"
        " do about it.",
    )
    drain.add_argument("name", metavar="NAME", help="the container's name")
    drain.add_argument(
        "--purge",
        action="store_true",
        help="then delete every verified file from the container (preserve is honoured,"
        " older_than is not)",
    )
    drain.add_argument("--json", action="store_true", help=JSON)


def _find(commands: Any) -> None:
    find = command(
        commands,
        "find",
        "search the media catalog, newest first",
        "Search the catalog (a `catalog` or `postgres` sink must be configured): one line a"
        " file, newest first. Every option given must match. Works without the daemon: then"
        " it reads the catalog the config names.",
    )
    find.add_argument("--prompt", metavar="TEXT", help="every word of TEXT is in the prompt")
    find.add_argument("--model", metavar="M", help="the model's name contains M (any case)")
    find.add_argument("--seed", type=int, metavar="N", help="exactly this seed")
    find.add_argument("--lora", metavar="L", help="a LoRA's name contains L (any case)")
    find.add_argument("--container", metavar="NAME", help="only this container's files")
    find.add_argument("--since", metavar="DUR", help="modified in the last DUR (7d, 12h, 600)")
    find.add_argument(
        "--limit",
        type=positive(1, 1000),
        default=50,
        metavar="N",
        help="at most N files (1-1000, default 50)",
    )
    find.add_argument("--json", action="store_true", help=JSON)


def _add(commands: Any) -> None:
    add = command(
        commands,
        "add",
        "add a box: confirm its host key, log in, detect its front end, first sync",
        "Add a box through the daemon: show its host key to confirm, test the login, detect"
        " Forge or ComfyUI and its output folder, write <state_dir>/containers.d/NAME.yaml,"
        " apply it, and show the first sync.",
    )
    add.add_argument("name", metavar="NAME", help="the container's name (also its library folder)")
    add.add_argument("target", metavar="TARGET", help="ssh://[user@]host[:port]")
    add.add_argument(
        "--kind",
        choices=("auto", "forge", "comfyui", "generic"),
        default="auto",
        help="what runs there (default auto: detect it)",
    )
    add.add_argument("--root", metavar="PATH", help="the box's output folder (no detection)")
    add.add_argument(
        "--fingerprint", metavar="SHA256:…", help="the host key you expect (ssh-keygen -lf)"
    )
    add.add_argument("--yes", action="store_true", help="trust the host key shown (scripts)")
    add.add_argument(
        "--no-wait",
        action="store_true",
        help="return once added, without waiting for its first sync",
    )


def _remove(commands: Any) -> None:
    remove = command(
        commands,
        "remove",
        "stop syncing a box `add` added (its library and history stay)",
        "Remove a box `add` added: its drop-in is deleted and the config reloaded; its"
        " library folder and history stay. Refused while the box holds media not yet in"
        " the library, unless --force.",
    )
    remove.add_argument("name", metavar="NAME", help="the container's name")
    remove.add_argument(
        "--force", action="store_true", help="even while the box holds media not yet in the library"
    )
    remove.add_argument("--json", action="store_true", help=JSON)
