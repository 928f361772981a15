"""What the control methods answer, as types: TypedDicts at the protocol's edge, so the
daemon that builds an answer and the CLI that reads it are checked against one shape.
The README's tables describe them to people; names are added, never renamed. Pure and
light: forge-syncctl imports it.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class UnsafeFileJson(TypedDict):
    """A file a drain found not safe to lose: `path` relative to the container's root,
    escaped where not UTF-8 (`paths.display`); why; its size in bytes (None: not listed)."""

    path: str
    reason: str
    size: int | None


class ReleasedFileJson(TypedDict):
    """A file the user deleted from the library on purpose (`on_local_delete: forget`),
    unchanged on the container: listed apart, it does not make a drain unsafe."""

    path: str
    size: int


class PurgeJson(TypedDict):
    """The purge run of `drain --purge`."""

    result: str  # success, failure, cancelled
    files: int
    bytes: int
    error: str | None


class DrainReportJson(TypedDict):
    """`drain`'s answer, and `--json`'s output (README "Before you destroy a box")."""

    container: str
    safe: bool  # every file in scope has a verified library copy, and no error came
    files: int  # verified
    bytes: int
    unsafe_count: int  # all counted
    unsafe: list[UnsafeFileJson]  # at most drain.MAX_LISTED
    released_count: NotRequired[int]  # deleted from the library on purpose (forget): not unsafe
    released: NotRequired[list[ReleasedFileJson]]  # at most drain.MAX_LISTED
    error: str | None  # why the drain could not judge
    sync: str | None  # the final sync's result
    purged: PurgeJson | None  # None without --purge, or when nothing was verified


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
