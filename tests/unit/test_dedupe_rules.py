"""The remote-hash shortcut's pure parts (sync/shortcut.py) and the read-only mode of a
hard-linked file (library/share.py)."""

from __future__ import annotations

from typing import get_args

from hypothesis import given
from hypothesis import strategies as st

from forge_syncd.config.model import Dedupe
from forge_syncd.config.schema import DEDUPE
from forge_syncd.library.share import readonly_mode
from forge_syncd.remote.types import RemoteFile
from forge_syncd.sync.shortcut import unchanged, worth_hashing

files = st.builds(
    RemoteFile,
    st.binary(min_size=1, max_size=8),
    st.integers(0, 2**40),
    st.integers(-(2**62), 2**62),
)


@given(st.lists(files, max_size=20), st.integers(-5, 2**41))
def test_only_files_of_at_least_the_minimum_size_are_hashed(
    listed: list[RemoteFile], min_size: int
) -> None:
    """`worth_hashing` keeps exactly the files of `dedupe_min_size` bytes or more (and never
    an empty file, whatever the setting), in order."""
    kept = worth_hashing(listed, min_size)
    assert kept == [f for f in listed if f.size >= max(1, min_size)]


@given(st.lists(files, max_size=20, unique_by=lambda f: f.path), st.data())
def test_a_file_counts_as_unchanged_only_when_listed_again_the_same(
    hashed: list[RemoteFile], data: st.DataObject
) -> None:
    """After hashing, a file takes the shortcut only if the new listing has it with the
    same size and mtime: another size or mtime, or no entry, sends it to the transfer."""
    relisted = [
        f
        if data.draw(st.booleans())
        else RemoteFile(f.path, f.size + data.draw(st.integers(0, 1)), f.mtime_ns + 1)
        for f in hashed
        if data.draw(st.booleans())
    ]
    same = unchanged(hashed, relisted)
    assert same == {f.path for f in relisted if f in hashed}


def test_a_hard_linked_files_mode_loses_every_write_bit() -> None:
    """`hardlink` mode: 0640 becomes 0440, 0660 0440, 0644 0444; other bits stay."""
    assert readonly_mode(0o100640) == 0o440
    assert readonly_mode(0o660) == 0o440
    assert readonly_mode(0o644) == 0o444
    assert readonly_mode(0o4755) == 0o4555


def test_the_schema_offers_exactly_the_dedupe_modes() -> None:
    """`library.dedupe` accepts exactly the modes the model knows: auto, hardlink, off."""
    assert get_args(Dedupe) == DEDUPE == ("auto", "hardlink", "off")
