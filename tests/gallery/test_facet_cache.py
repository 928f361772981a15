"""The facet counts' cache (`FacetCache`): counted once for callers arriving together, kept
when a recount fails, recounted in the background once old."""

from __future__ import annotations

import threading
from typing import Any

from forge_syncd.gallery.source import FacetCache
from tests.support.daemon import wait_until


def test_callers_arriving_while_the_first_count_runs_wait_for_it_instead_of_counting_again() -> (
    None
):
    """The gallery's worker counts at start; a page opened meanwhile must not start a
    second count of 350,000 rows beside it (each takes seconds): it gets the same one."""
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def count() -> dict[str, Any]:
        calls.append(1)
        started.set()
        release.wait(10)
        return {"total": len(calls)}

    cache = FacetCache(count)
    got: list[dict[str, Any]] = []
    first = threading.Thread(target=lambda: got.append(cache.get()))
    first.start()
    assert started.wait(10)
    others = [threading.Thread(target=lambda: got.append(cache.get())) for _ in range(3)]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert len(calls) == 1
    assert got == [{"total": 1}] * 4


def test_old_counts_are_served_while_one_background_thread_recounts_and_an_error_keeps_them() -> (
    None
):
    results: list[dict[str, Any] | Exception] = [{"n": 1}, RuntimeError("db down"), {"n": 3}]
    calls: list[int] = []

    def count() -> dict[str, Any]:
        calls.append(1)
        result = results[len(calls) - 1]
        if isinstance(result, Exception):
            raise result
        return result

    cache = FacetCache(count, ttl_s=0.0)
    assert cache.get() == {"n": 1}
    assert cache.get() == {"n": 1}  # old: served, the recount (which fails) in the background
    wait_until(lambda: len(calls) == 2 and not cache._counting.locked(), timeout=10)
    assert cache.get() == {"n": 1}  # the failed recount kept the last counts
    wait_until(lambda: len(calls) == 3 and not cache._counting.locked(), timeout=10)
    assert cache.get() == {"n": 3}
