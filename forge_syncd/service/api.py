"""The control methods of SPEC, answered from the running daemon's state.

Each method checks its params (a wrong one is `bad_params`, an unknown container
`not_found`) and returns a JSON-able result. `sync` and `cleanup` queue runs; with
`"wait": true` they run them in the caller's connection thread (after any running job of
the container) and return the outcomes, so `forge-syncctl ... --wait` gets the result and
exit code while it shows progress from a `watch` connection. `find` searches the catalog
of the first sink that keeps one (see `find_query` for its params).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from forge_syncd import __version__
from forge_syncd.control.messages import DrainReportJson
from forge_syncd.control.methods import check_handlers
from forge_syncd.control.protocol import (
    BAD_PARAMS,
    CLEANUP_DISABLED,
    INTERNAL,
    NOT_FOUND,
    PROTOCOL_VERSION,
    Request,
    RequestError,
)
from forge_syncd.jobs.kinds import Job
from forge_syncd.jobs.record import outcome_dict
from forge_syncd.limits.registry import LIMITS
from forge_syncd.onboard.add import add_box
from forge_syncd.onboard.remove import remove_box
from forge_syncd.onboard.request import Refused
from forge_syncd.service.dedupe import DedupeMethod
from forge_syncd.service.find import CatalogFinder
from forge_syncd.service.results import iso_utc
from forge_syncd.service.runner import ContainerRunner
from forge_syncd.service.status import watch_status
from forge_syncd.text import no_such

if TYPE_CHECKING:
    from forge_syncd.service.view import DaemonView

WATCH_TICK_S = 0.5
# The socket listens before the containers are added (it is what stops a second daemon on
# the same state): a request that comes meanwhile waits until they are, at most this long.
STARTING_WAIT_S = 30.0
MAX_HISTORY = 1000


def _param(request: Request, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = request.params.get(name, default)
    if value is default:
        return value
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise RequestError(BAD_PARAMS, f"param {name!r} has the wrong type", request.id)
    return value


_name = attrgetter("name")


class ControlApi:
    """Answers control requests from the running daemon's state (`view.DaemonView`)."""

    def __init__(self, daemon: DaemonView) -> None:
        self.daemon = daemon
        self.methods: dict[str, Callable[[Request], Any]] = {
            "hello": self.hello,
            "status": self.status,
            "sync": self.sync,
            "cleanup": self.cleanup,
            "cancel": self.cancel,
            "pause": self.pause,
            "resume": self.resume,
            "reload": self.reload,
            "history": self.history,
            "watch": self.watch,
            "drain": self.drain,
            "find": CatalogFinder(daemon).find,
            "add": self.add,
            "remove": self.remove,
            "dedupe": DedupeMethod(daemon).dedupe,
        }
        check_handlers(self.methods, "ControlApi")

    def __call__(self, request: Request) -> Any:
        if not self.daemon.started.wait(STARTING_WAIT_S):
            raise RequestError(INTERNAL, "the daemon is still starting; try again", request.id)
        return self.methods[request.method](request)

    # -- helpers ---------------------------------------------------------------------
    def _runner(self, request: Request, name: Any) -> ContainerRunner:
        if not isinstance(name, str):
            raise RequestError(BAD_PARAMS, "container must be a string", request.id)
        runner = self.daemon.runners.get(name)
        if runner is None:
            raise RequestError(
                NOT_FOUND, no_such("container", name, self.daemon.runners), request.id
            )
        return runner

    def _runners(self, request: Request) -> list[ContainerRunner]:
        names = _param(request, "containers", list, [])
        if not names:
            return list(self.daemon.runners.values())
        return [self._runner(request, name) for name in names]

    def _one(self, request: Request) -> ContainerRunner:
        return self._runner(request, request.params.get("container"))

    # -- methods ---------------------------------------------------------------------
    def hello(self, request: Request) -> dict[str, Any]:
        return {"protocol": PROTOCOL_VERSION, "version": __version__}

    def status(self, request: Request) -> dict[str, Any]:
        daemon = self.daemon
        return {
            "daemon": {
                "version": __version__,
                "started_at": iso_utc(daemon.started_at),
                "pid": os.getpid(),
            },
            "containers": [daemon.status(r) for r in sorted(daemon.runners.values(), key=_name)],
            "sinks": daemon.dispatcher.status(),
            "limits": {"bwlimit": LIMITS.status()},
        }

    def sync(self, request: Request) -> dict[str, Any]:
        return self._run(request, Job.SYNC, self._runners(request))

    def cleanup(self, request: Request) -> dict[str, Any]:
        """Clean up now. Without `containers`, only those whose config enables cleanup;
        the others are listed in `skipped` ({"container", "reason"}). A container named
        whose cleanup is off is refused (`cleanup_disabled`) unless `force` is true or it
        is a `dry_run` (which deletes nothing)."""
        dry_run = _param(request, "dry_run", bool, None)
        force = _param(request, "force", bool, False)
        named = bool(_param(request, "containers", list, []))
        runners = self._runners(request)
        off = [r for r in runners if not r.config.cleanup.enabled]
        if named and off and not (force or dry_run):
            names = ", ".join(repr(r.name) for r in off)
            raise RequestError(
                CLEANUP_DISABLED,
                f"cleanup is off in the config of {names}: run it anyway with"
                " `forge-syncctl cleanup --force NAME`, see what it would delete with --dry-run",
                request.id,
            )
        skipped = [] if named else [{"container": r.name, "reason": "cleanup off"} for r in off]
        chosen = runners if named else [r for r in runners if r.config.cleanup.enabled]
        kwargs = {} if dry_run is None else {"dry_run": dry_run}
        return {**self._run(request, Job.CLEANUP, chosen, **kwargs), "skipped": skipped}

    def _run(
        self, request: Request, job: Job, runners: list[ContainerRunner], **kwargs: Any
    ) -> dict[str, Any]:
        wait = _param(request, "wait", bool, False)
        kwargs["trigger"] = "manual"
        if not wait:
            for runner in runners:
                self.daemon.scheduler.run_now(runner, job, **kwargs)
            return {"queued": [r.name for r in runners]}
        with ThreadPoolExecutor(max_workers=max(1, len(runners))) as pool:
            outcomes = list(pool.map(lambda r: r.run(job, **kwargs), runners))
        return {
            "runs": [outcome_dict(r.name, job, o) for r, o in zip(runners, outcomes, strict=True)]
        }

    def drain(self, request: Request) -> DrainReportJson:
        """Run a drain now, in this connection's thread (after any running job of the
        container); return its report (`drain.DrainReport.to_json`)."""
        runner = self._one(request)
        purge = _param(request, "purge", bool, False)
        report = runner.drain(purge)
        if report is None:
            raise RequestError(NOT_FOUND, f"container {runner.name!r} was removed", request.id)
        return report.to_json()

    def add(self, request: Request) -> dict[str, Any]:
        """Add a box (`onboard.add.add_box`): each call answers the next step, `confirm_host_key`,
        `login_refused`, `choose` or `added`; errors `bad_params`, `exists`, `host_key`,
        `failed`."""
        try:
            return add_box(self.daemon, request.params)
        except Refused as exc:
            raise RequestError(exc.code, exc.message, request.id) from None

    def remove(self, request: Request) -> dict[str, Any]:
        """Remove a box `add` added (`onboard.remove.remove_box`)."""
        try:
            return remove_box(self.daemon, request.params)
        except Refused as exc:
            raise RequestError(exc.code, exc.message, request.id) from None

    def cancel(self, request: Request) -> dict[str, Any]:
        runner = self._one(request)
        if running := runner.running:
            runner.cancel.set()
        return {"container": runner.name, "cancelled": running}

    def pause(self, request: Request) -> dict[str, Any]:
        """Stop scheduling the container (a running job finishes); answer what it does now
        (`_now`)."""
        runner = self._one(request)
        runner.paused = True
        self.daemon.scheduler.pause(runner.name)
        return self._now(runner)

    def resume(self, request: Request) -> dict[str, Any]:
        """Schedule the container again; answer what it does now (`_now`)."""
        runner = self._one(request)
        runner.paused = False
        self.daemon.scheduler.resume(runner.name)
        return self._now(runner)

    def _now(self, runner: ContainerRunner) -> dict[str, Any]:
        """`{"container", "state", "running"` (the job running, or null), `"watch"`,
        `"watch_status"`, `"next_sync_at"`, `"next_cleanup_at"}`."""
        status = self.daemon.status(runner)
        keys = ("state", "watch", "watch_status", "next_sync_at", "next_cleanup_at")
        return {"container": runner.name, "running": runner.running} | {
            key: status[key] for key in keys
        }

    def reload(self, request: Request) -> dict[str, Any]:
        return self.daemon.reload()

    def history(self, request: Request) -> dict[str, Any]:
        name = _param(request, "container", str, None)
        if name is not None and name not in self.daemon.runners:
            known = self.daemon.manifest.runs.containers()
            if name not in known:
                choices = known | set(self.daemon.runners)
                raise RequestError(NOT_FOUND, no_such("container", name, choices), request.id)
        limit = _param(request, "limit", int, 20)
        if not 1 <= limit <= MAX_HISTORY:
            raise RequestError(BAD_PARAMS, f"limit must be 1..{MAX_HISTORY}", request.id)
        return {"runs": [run.__dict__ for run in self.daemon.manifest.runs.recent(name, limit)]}

    def watch(self, request: Request) -> Iterator[dict[str, Any]]:
        """Stream progress of every running job, every half second, until the client goes
        (`containers`: only those). Each event: `{"event": "progress", "ts", "containers":
        [watched(...)]}`."""
        names = _param(request, "containers", list, [])
        stop = self.daemon.stop_requested

        def events() -> Iterator[dict[str, Any]]:
            while not stop.is_set():
                runners = [
                    r for r in list(self.daemon.runners.values()) if not names or r.name in names
                ]
                yield {
                    "event": "progress",
                    "ts": iso_utc_now(),
                    "containers": [watched(self.daemon, r) for r in runners],
                }
                time.sleep(WATCH_TICK_S)

        return events()


def watched(daemon: DaemonView, runner: ContainerRunner) -> dict[str, Any]:
    """One container in a `watch` event: `{"name", "state", "progress"}` (SPEC), and
    `"finished"` (the final progress of its job that ended last: a bar ends at it),
    `"watch_status"`, `"next_sync_at"` (what an idle view says it waits for)."""
    moment = daemon.scheduler.next_run(runner.name, Job.SYNC)
    return {
        "name": runner.name,
        "state": runner.state,
        "progress": runner.progress.snapshot(),
        "finished": runner.progress.finished(),
        "watch_status": watch_status(runner),
        "next_sync_at": iso_utc(moment) if moment else None,
    }


def iso_utc_now() -> str:
    return iso_utc(datetime.now(UTC))
