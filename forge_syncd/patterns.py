"""Shell-glob matching for `include`, `exclude` and `preserve`, on raw byte paths.

A pattern without `/` is matched against the file name; a pattern with `/` against the path
relative to the container's root, where `**` spans folders (`keep/**`, `**/grids/*.png`).
Matching is case-sensitive, as in the shell and rsync.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forge_syncd.config.model import ContainerConfig


@lru_cache(maxsize=1024)
def compile_glob(pattern: str) -> re.Pattern[bytes]:
    """Given a glob, return a compiled regex over bytes that matches what the glob does."""
    source = os.fsencode(pattern)
    out = bytearray()
    i = 0
    while i < len(source):
        char = source[i : i + 1]
        if source.startswith(b"**/", i):
            out += b"(?:.*/)?"
            i += 3
        elif source.startswith(b"**", i):
            out += b".*"
            i += 2
        elif char == b"*":
            out += b"[^/]*"
            i += 1
        elif char == b"?":
            out += b"[^/]"
            i += 1
        elif char == b"[":
            i = _bracket(source, i, out)
        else:
            out += re.escape(char)
            i += 1
    return re.compile(b"(?s:" + bytes(out) + b")\\Z")


def _bracket(source: bytes, start: int, out: bytearray) -> int:
    """Translate a `[...]` class starting at `start`; return the index after it."""
    end = start + 1
    if end < len(source) and source[end : end + 1] in (b"!", b"^"):
        end += 1
    if end < len(source) and source[end : end + 1] == b"]":
        end += 1
    while end < len(source) and source[end : end + 1] != b"]":
        end += 1
    if end >= len(source):
        out += b"\\["
        return start + 1
    body = source[start + 1 : end].replace(b"\\", b"\\\\")
    if body[:1] in (b"!", b"^"):
        body = b"^" + body[1:]
    out += b"[" + body + b"]"
    return end + 1


def glob_matches(pattern: str, path: bytes) -> bool:
    """Return True if `path` (relative, `/`-separated bytes) matches `pattern`."""
    subject = path if "/" in pattern else path.rsplit(b"/", 1)[-1]
    return compile_glob(pattern).match(subject) is not None


def any_matches(patterns: Iterable[str], path: bytes) -> bool:
    return any(glob_matches(pattern, path) for pattern in patterns)


@lru_cache(maxsize=256)
def compile_set(patterns: tuple[str, ...]) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """Given globs, return one regex for the name-only globs and one for the path globs
    (a poll tests every remote file: one match per kind instead of one per glob)."""
    never = re.compile(b"(?!)")

    def union(globs: list[str]) -> re.Pattern[bytes]:
        if not globs:
            return never
        return re.compile(b"|".join(b"(?:" + compile_glob(g).pattern + b")" for g in globs))

    return (union([p for p in patterns if "/" not in p]), union([p for p in patterns if "/" in p]))


def set_matches(patterns: tuple[str, ...], path: bytes) -> bool:
    """Like any_matches, for a tuple of globs compiled once."""
    by_name, by_path = compile_set(patterns)
    name = path.rsplit(b"/", 1)[-1]
    return by_name.match(name) is not None or by_path.match(path) is not None


@dataclass(frozen=True)
class Scope:
    """What a container syncs: the files inside its `folders` (empty: the whole root) that
    `include` takes and `exclude` does not (exclude wins). The one home of that rule: a
    sync, a live watcher, a cleanup and a drain all ask it."""

    include: tuple[str, ...]
    exclude: tuple[str, ...]
    folders: tuple[str, ...] = ()

    @classmethod
    def of(cls, container: ContainerConfig) -> Scope:
        """Given a container's config, return its scope."""
        return cls(container.sync.include, container.sync.exclude, container.folders)

    def wants(self, path: bytes) -> bool:
        """Return whether include/exclude take `path` (a listing covers `folders` already)."""
        return set_matches(self.include, path) and not set_matches(self.exclude, path)

    def covers(self, path: bytes) -> bool:
        """Return whether `path` is inside the synced `folders`: what a listing covers."""
        return within_folders(path, self.folders)

    def holds(self, path: bytes) -> bool:
        """Return whether `path` is one this container syncs: covered and wanted (for paths
        that come without a listing: a live watcher's)."""
        return self.covers(path) and self.wants(path)


def within_folders(path: bytes, folders: tuple[str, ...]) -> bool:
    """Given a path relative to the container's root and its `folders` (empty: the whole
    root), return whether the path is one of them or inside one: what a listing covers."""
    if not folders:
        return True
    return any(
        path == folder or path.startswith(folder + b"/")
        for folder in (os.fsencode(name) for name in folders)
    )
