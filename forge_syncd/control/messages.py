"""The shapes of what the control socket sends, where they are built away from it.

TypedDicts: plain dicts at runtime (json.dumps sends them as they are), checked by mypy where
they are made.
"""

from __future__ import annotations

from typing import TypedDict


class DecisionRow(TypedDict):
    """One cleanup decision, as a cleanup's `runs` entry lists it (`decisions`)."""

    path: str  # for display: UTF-8 where it is, backslash escapes where not
    size: int
    action: str  # purge | keep
    reason: str  # "" for purge; else why it is kept


class ReasonCount(TypedDict):
    """Files and bytes for one reason: a cleanup's `kept`, a sync's `not_copied`."""

    reason: str
    files: int
    bytes: int
