"""The global cap's fair shares (pure): `limits: {bwlimit}` split between the containers
transferring now, max-min fair (water-filling): a container that wants less than an equal
share (its own limit, or what it managed lately) keeps what it wants, and the rest is split
equally between the others."""

from __future__ import annotations

from collections.abc import Mapping


def fair_shares(cap: int, wants: Mapping[str, float | None]) -> dict[str, float]:
    """Given the global cap (bytes/s) and what each active container wants (bytes/s; None:
    as much as it can get), return each one's share; the shares add up to at most `cap`."""
    shares: dict[str, float] = {}
    left = float(cap)
    inf = float("inf")
    waiting = sorted(wants, key=lambda name: inf if (want := wants[name]) is None else want)
    while waiting:
        equal = left / len(waiting)
        name = waiting[0]
        want = wants[name]
        if want is not None and want < equal:
            shares[name] = want
            left -= want
            waiting.pop(0)
            continue
        for name in waiting:
            shares[name] = equal
        break
    return shares
