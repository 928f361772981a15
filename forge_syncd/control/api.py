"""The control methods of SPEC, answered from the running daemon's state.

Each method checks its params (a wrong one is `bad_params`, an unknown container
`not_found`) and returns a JSON-able result. `sync` and `cleanup` queue runs; with
`"wait": true` they run them in the caller's connection thread (after any running job of
the container) and return the outcomes, so `forge-syncctl ... --wait` gets the result and
exit code while it shows progress from a `watch` connection.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from forge_syncd import __version__
from forge_syncd.control.protocol import (
    BAD_PARAMS,
    NOT_FOUND,
    PROTOCOL_VERSION,
    Request,
    RequestError,
)
from forge_syncd.job import RunOutcome
from forge_syncd.runner import ContainerRunner, iso_utc

if TYPE_CHECKING:
    from forge_syncd.daemon import Daemon

WATCH_TICK_S = 0.5
MAX_HISTORY = 1000


def _param(request: Request, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = request.params.get(name, default)
    if value is default:
        return value
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise RequestError(BAD_PARAMS, f"param {name!r} has the wrong type", request.id)
    return value


def outcome_dict(name: str, job: str, outcome: RunOutcome | None) -> dict[str, Any]:
    if outcome is None:
        return {
            "container": name,
            "job": job,
            "result": "cancelled",
            "files": 0,
            "bytes": 0,
            "error": "container removed",
        }
    result = {
        "container": name,
        "job": job,
        "run_id": outcome.run_id,
        "result": outcome.result,
        "files": outcome.files,
        "bytes": outcome.bytes,
        "error": outcome.error,
        "duration_s": outcome.duration_s,
    }
    if "decisions" in outcome.details:
        result["dry_run"] = outcome.details.get("dry_run", False)
        result["decisions"] = outcome.details["decisions"]
    return result


class ControlApi:
    """Answers control requests for one Daemon."""

    def __init__(self, daemon: Daemon) -> None:
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
        }

    def __call__(self, request: Request) -> Any:
        return self.methods[request.method](request)

    # -- helpers ---------------------------------------------------------------------
    def _runner(self, request: Request, name: Any) -> ContainerRunner:
        if not isinstance(name, str):
            raise RequestError(BAD_PARAMS, "container must be a string", request.id)
        runner = self.daemon.runners.get(name)
        if runner is None:
            raise RequestError(NOT_FOUND, f"no container {name!r}", request.id)
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
            "containers": [daemon.container_status(r) for r in list(daemon.runners.values())],
            "sinks": daemon.dispatcher.status(),
        }

    def sync(self, request: Request) -> dict[str, Any]:
        return self._run(request, "sync")

    def cleanup(self, request: Request) -> dict[str, Any]:
        dry_run = _param(request, "dry_run", bool, None)
        return self._run(request, "cleanup", dry_run=dry_run)

    def _run(self, request: Request, job: str, **kwargs: Any) -> dict[str, Any]:
        runners = self._runners(request)
        wait = _param(request, "wait", bool, False)
        if job == "cleanup":
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if not wait:
            for runner in runners:
                self.daemon.scheduler.run_now(runner, job, **kwargs)
            return {"queued": [r.name for r in runners]}
        with ThreadPoolExecutor(max_workers=max(1, len(runners))) as pool:
            outcomes = list(pool.map(lambda r: r.run(job, **kwargs), runners))
        return {
            "runs": [outcome_dict(r.name, job, o) for r, o in zip(runners, outcomes, strict=True)]
        }

    def drain(self, request: Request) -> dict[str, Any]:
        """Run a drain now, in this connection's thread (after any running job of the
        container); return its report (`drain.DrainReport.as_dict`)."""
        runner = self._one(request)
        purge = _param(request, "purge", bool, False)
        report = runner.drain(purge)
        if report is None:
            raise RequestError(NOT_FOUND, f"container {runner.name!r} was removed", request.id)
        return report.as_dict()

    def cancel(self, request: Request) -> dict[str, Any]:
        runner = self._one(request)
        running = runner.running
        if running:
            runner.cancel.set()
        return {"container": runner.name, "cancelled": running}

    def pause(self, request: Request) -> dict[str, Any]:
        runner = self._one(request)
        runner.paused = True
        self.daemon.scheduler.pause(runner.name)
        return {"container": runner.name, "state": runner.state}

    def resume(self, request: Request) -> dict[str, Any]:
        runner = self._one(request)
        runner.paused = False
        self.daemon.scheduler.resume(runner.name)
        return {"container": runner.name, "state": runner.state}

    def reload(self, request: Request) -> dict[str, Any]:
        return self.daemon.reload()

    def history(self, request: Request) -> dict[str, Any]:
        name = _param(request, "container", str, None)
        if name is not None and name not in self.daemon.runners:
            known = {r.container for r in self.daemon.manifest.runs(name, 1)}
            if not known:
                raise RequestError(NOT_FOUND, f"no container {name!r}", request.id)
        limit = _param(request, "limit", int, 20)
        if not 1 <= limit <= MAX_HISTORY:
            raise RequestError(BAD_PARAMS, f"limit must be 1..{MAX_HISTORY}", request.id)
        return {"runs": [run.__dict__ for run in self.daemon.manifest.runs(name, limit)]}

    def watch(self, request: Request) -> Iterator[dict[str, Any]]:
        """Stream progress of every running job, every half second, until the client goes."""
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
                    "containers": [
                        {"name": r.name, "state": r.state, "progress": r.progress.snapshot()}
                        for r in runners
                    ],
                }
                time.sleep(WATCH_TICK_S)

        return events()


def iso_utc_now() -> str:
    return iso_utc(datetime.now(UTC))
